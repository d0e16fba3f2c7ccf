#!/usr/bin/env python3
"""The chaos bench's publisher: posts batches of events to replayd's
POST /v1/events on any of the given replicas, without pause, and appends the
id of every event the daemon acknowledged (ACCEPTED, or DUPLICATE for a batch
sent again after an unanswered try) to the acked file.

A batch that gets no answer (connection refused or dropped, timeout, 503) is
sent again, to the next replica, until it is answered or the publisher is
stopped; ids of a batch still unanswered at the stop are not acknowledged
(they may or may not be stored). Stops on SIGTERM/SIGINT or after
--max-seconds, then prints one JSON line with its counts.
"""
import argparse
import http.client
import json
import signal
import sys
import time


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--targets", required=True, help="host:port,host:port (HTTP ports)")
    parser.add_argument("--acked", required=True, help="file to append acknowledged ids to")
    parser.add_argument("--source", default="chaos")
    parser.add_argument("--prefix", default="e", help="event ids are PREFIX-N")
    parser.add_argument("--rate", type=float, default=100, help="events per second")
    parser.add_argument("--batch", type=int, default=10)
    parser.add_argument("--keys", type=int, default=200)
    parser.add_argument("--timeout", type=float, default=5, help="seconds per request")
    parser.add_argument("--max-seconds", type=float, default=3600)
    args = parser.parse_args()

    stopping = False

    def stop(*_):
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)

    targets = [t.rsplit(":", 1) for t in args.targets.split(",")]
    connections = [None] * len(targets)
    counts = {"batches": 0, "sent_events": 0, "acked": 0, "accepted": 0, "duplicate": 0,
              "rejected": 0, "unanswered_tries": 0, "unacked_at_stop": 0}
    rejected_samples = []
    acked_file = open(args.acked, "a")
    started = time.monotonic()
    deadline = started + args.max_seconds
    next_batch_at = started
    target = 0
    n = 0

    def post(index, body):
        if connections[index] is None:
            host, port = targets[index]
            connections[index] = http.client.HTTPConnection(host, int(port), timeout=args.timeout)
        conn = connections[index]
        try:
            conn.request("POST", "/v1/events", body, {"Content-Type": "application/json"})
            response = conn.getresponse()
            data = response.read()
        except (OSError, http.client.HTTPException):
            conn.close()
            connections[index] = None
            return None
        if response.status != 200:
            return None
        return json.loads(data)["results"]

    while not stopping and time.monotonic() < deadline:
        ids = [f"{args.prefix}-{n + i}" for i in range(args.batch)]
        events = [{"source": args.source, "event_id": event_id, "sequence": n + i,
                   "key": f"k{(n + i) % args.keys}", "type": "chaos.tick",
                   "payload": {"n": n + i}} for i, event_id in enumerate(ids)]
        n += args.batch
        body = json.dumps({"events": events})
        counts["batches"] += 1
        counts["sent_events"] += len(ids)
        results = None
        while not stopping and time.monotonic() < deadline:
            results = post(target, body)
            if results is not None:
                break
            counts["unanswered_tries"] += 1
            target = (target + 1) % len(targets)
            time.sleep(0.05)
        if results is None:
            counts["unacked_at_stop"] += len(ids)
            break
        acked = []
        for result in results:
            status = result["status"]
            event_id = ids[result["index"]]
            if status in ("ACCEPTED", "DUPLICATE"):
                acked.append(event_id)
                counts["accepted" if status == "ACCEPTED" else "duplicate"] += 1
            else:
                counts["rejected"] += 1
                if len(rejected_samples) < 5:
                    rejected_samples.append({"event_id": event_id, **result})
        if acked:
            acked_file.write("".join(f"{event_id}\n" for event_id in acked))
            acked_file.flush()
            counts["acked"] += len(acked)
        target = (target + 1) % len(targets)
        next_batch_at += args.batch / args.rate
        delay = next_batch_at - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        else:
            next_batch_at = time.monotonic()  # behind after an outage: no burst to catch up

    acked_file.close()
    counts["seconds"] = round(time.monotonic() - started, 1)
    counts["rejected_samples"] = rejected_samples
    print(json.dumps(counts), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
