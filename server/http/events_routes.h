// POST /v1/events: webhook-style ingest, the HTTP twin of IngestService/Publish.
#pragma once

#include "server/common/auth.h"
#include "server/ingest/ingester.h"

namespace httplib {
class Server;
}

namespace replayd {

// Body: {"events": [{"source", "event_id", "sequence"?, "key"?, "type"?,
// "occurred_at"? (RFC 3339), "payload": <any JSON>}]}, Content-Type
// application/json. 200 with a result per event; 400 for a body that is not
// such JSON (nothing stored); 415 for another content type; 503 while the
// database is unreachable. Unknown fields of an event reject that event.
void RegisterEventRoutes(httplib::Server& server, Ingester* ingester, const Authenticator* auth);

}  // namespace replayd
