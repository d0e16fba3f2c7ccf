-- wrk script: POST a small replayd envelope to /records with a fresh
-- Idempotency-Key per request, so every request takes the create path.
--   wrk -t2 -c32 -d5s -s post.lua http://127.0.0.1:PORT

local threads_started = 0

function setup(thread)
  threads_started = threads_started + 1
  thread:set("thread_id", threads_started)
end

local sent = 0

function request()
  sent = sent + 1
  local event_id = string.format("t%d-%d", thread_id or 0, sent)
  local body = string.format(
    '{"source":"bench","event_id":"%s","sequence":%d,"key":"k-%d",' ..
    '"type":"bench.created","occurred_at":"2024-01-01T00:00:00Z",' ..
    '"ingested_at":"2024-01-01T00:00:00Z","payload":{"n":%d}}',
    event_id, sent, sent % 64, sent)
  return wrk.format("POST", "/records", {
    ["Content-Type"] = "application/json",
    ["Idempotency-Key"] = "bench:" .. event_id,
    ["X-Attempt"] = "1",
  }, body)
end
