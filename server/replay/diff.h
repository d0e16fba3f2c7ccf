// How a diff classifies one event of its window against the downstream's
// record (the table in docs/design/compensate.md). Pure: the diff job gathers
// the facts (the event as logged, the sink's lookup answer), this decides.
#pragma once

#include <optional>
#include <string>

#include "server/delivery/sink.h"
#include "server/model/compensation.h"
#include "server/store/event.h"

namespace replayd {

struct DiffFinding {
  DiffClass diff_class = DiffClass::kInSync;
  std::string detail;  // why diverged (e.g. "version 3, recorded 1"); empty otherwise
};

// `record`: the downstream's record for `e`, nullopt when it holds none. A
// delivered event's record is diverged when its version or update time
// differs from the one recorded at the event's last delivery (compared only
// when both sides have one), or when its data (when the sink exposes it)
// is neither the payload sent nor the whole envelope sent, compared as JSON.
DiffFinding DiffClassify(const StoredEvent& e, const std::optional<DownstreamRecord>& record);

// The entry a diff saves for `e`: its finding, the action proposed for it
// (DefaultAction) and the downstream's record as the diff saw it.
CompensationEntry DiffEntry(const StoredEvent& e, const std::optional<DownstreamRecord>& record);

// Whether `now` (the event as the log holds it now) and `record` (the
// downstream's, nullopt: none) are still as the diff saw them for `entry`'s
// action: create when the log's delivered-ness is unchanged and the
// downstream holds nothing; record when the log still says not delivered and
// the downstream holds the record; overwrite when the downstream's record is
// at the version (else the update time, else the id) the diff saw. Keep and
// none act on nothing: always true.
bool StillAsDiffSaw(const CompensationEntry& entry, const StoredEvent& now,
                    const std::optional<DownstreamRecord>& record);

}  // namespace replayd
