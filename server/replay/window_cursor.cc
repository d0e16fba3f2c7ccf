#include "server/replay/window_cursor.h"

#include <algorithm>
#include <tuple>

namespace replayd {
namespace {

bool Before(const ReplayCursor& a, const ReplayCursor& b) {
  return std::tie(a.ingested_at, a.position) < std::tie(b.ingested_at, b.position);
}

bool Same(const ReplayCursor& a, const ReplayCursor& b) {
  return a.ingested_at == b.ingested_at && a.position == b.position;
}

}  // namespace

void WindowCursor::Dispatched(const ReplayCursor& at) {
  order_.push_back({at, false});
  ++in_flight_;
}

void WindowCursor::Skipped(const ReplayCursor& at) {
  order_.push_back({at, true});
  Advance();
}

bool WindowCursor::Done(const ReplayCursor& at) {
  // The slots are in window order: search, don't scan.
  auto it =
      std::lower_bound(order_.begin(), order_.end(), at,
                       [](const Slot& slot, const ReplayCursor& c) { return Before(slot.at, c); });
  if (it == order_.end() || !Same(it->at, at) || it->done) return false;
  it->done = true;
  --in_flight_;
  Advance();
  return true;
}

void WindowCursor::Advance() {
  while (!order_.empty() && order_.front().done) {
    cursor_ = order_.front().at;
    order_.pop_front();
  }
}

}  // namespace replayd
