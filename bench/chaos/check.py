#!/usr/bin/env python3
"""The chaos bench's checker. Reads what bench/chaos/run.sh left in --dir
(acked.txt, publisher.json, cycles.jsonl, replays.json, downstream-stats.json,
downstream-requests.json) and the log through psql, prints the details of any
finding on stderr and, last on stdout, the JSON figure. Exit 1 when an
acknowledged event is missing from the log (lost), the downstream created a
record twice for one idempotency key (duplicates), an event the log records
delivered has no record downstream, delivery did not settle, or a replay is
not in an end state."""
import argparse
import collections
import json
import os
import subprocess
import sys

SOURCE = "chaos"
END_STATES = {"REPLAY_COMPLETED", "REPLAY_CANCELLED", "REPLAY_FAILED"}


def load(directory, name):
    with open(os.path.join(directory, name)) as f:
        return json.load(f)


def psql_rows(dsn, sql):
    out = subprocess.run(["psql", "-tA", "-F", "\t", dsn, "-c", sql], check=True,
                         capture_output=True, text=True).stdout
    return [line.split("\t") for line in out.splitlines() if line]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--dsn", required=True)
    parser.add_argument("--dir", required=True)
    parser.add_argument("--cycles", type=int, required=True)
    parser.add_argument("--pg-restarts", type=int, required=True)
    parser.add_argument("--chaos-seconds", type=int, required=True)
    parser.add_argument("--settled", required=True)
    parser.add_argument("--settle-seconds", type=int, required=True)
    parser.add_argument("--seed", required=True)
    parser.add_argument("--replay-rate", type=float, required=True)
    parser.add_argument("--lookup", default="on")
    parser.add_argument("--live-from", required=True,
                        help="events ingested from then on are delivered live only")
    args = parser.parse_args()
    d = args.dir

    with open(os.path.join(d, "acked.txt")) as f:
        acked = [line.strip() for line in f if line.strip()]
    acked_set = set(acked)
    publisher = load(d, "publisher.json")
    with open(os.path.join(d, "cycles.jsonl")) as f:
        cycles = [json.loads(line) for line in f if line.strip()]

    events = {row[0]: row[1] for row in psql_rows(
        args.dsn, f"SELECT event_id, outcome FROM events WHERE source = '{SOURCE}'")}
    outcomes = collections.Counter(events.values())

    lost = sorted(acked_set - events.keys(), key=lambda i: int(i.rsplit("-", 1)[1]))
    if lost:
        keys = set(row[0] for row in psql_rows(
            args.dsn, f"SELECT event_id FROM event_keys WHERE source = '{SOURCE}'"))
        print(f"LOST: {len(lost)} acknowledged events are not in the log; first: "
              + ", ".join(f"{i}{' (key row present)' if i in keys else ''}" for i in lost[:20]),
              file=sys.stderr)

    # Records the downstream created, per idempotency key (non-idempotent mode:
    # every create of a key makes a record).
    requests = load(d, "downstream-requests.json")
    stats = load(d, "downstream-stats.json")
    created = collections.defaultdict(list)
    for r in requests:
        if r["record_id"] is not None:
            created[r["idempotency_key"]].append(r)
    duplicate_keys = {k: rs for k, rs in created.items() if len(rs) > 1}
    duplicates = sum(len(rs) - 1 for rs in duplicate_keys.values())
    if duplicates != stats["duplicates"]:
        print(f"the request log counts {duplicates} duplicates, the downstream's stats "
              f"{stats['duplicates']}", file=sys.stderr)
        duplicates = max(duplicates, stats["duplicates"])
    for key, rs in list(duplicate_keys.items())[:20]:
        print(f"DUPLICATE: {key} created {len(rs)} times: " + "; ".join(
            f"seq {r['seq']} {r['record_id']} attempt {r['attempt']} replay {r['replay_id']} "
            f"at {r['arrival_us']} dropped {r['dropped']}" for r in rs), file=sys.stderr)

    delivered = [i for i, o in events.items() if o in ("succeeded", "already_processed")]
    not_downstream = sorted(i for i in delivered if f"{SOURCE}:{i}" not in created)
    if not_downstream:
        print(f"DELIVERED WITHOUT A RECORD: {len(not_downstream)}; first: "
              + ", ".join(not_downstream[:20]), file=sys.stderr)

    # Ingest to delivery of live events: a replica killed with claims in hand
    # strands their events until the claims' lease expires.
    latency = [float(row[0]) for row in psql_rows(args.dsn, f"""
        SELECT extract(epoch FROM processed_at - ingested_at) FROM events
         WHERE source = '{SOURCE}' AND ingested_at >= '{args.live_from}'
           AND processed_at IS NOT NULL ORDER BY 1""")]
    latency_s = {"p50": round(latency[len(latency) // 2], 3) if latency else None,
                 "p99": round(latency[len(latency) * 99 // 100], 3) if latency else None,
                 "max": round(latency[-1], 3) if latency else None}
    for event_id, key, ingested_at, processed_at, waited in psql_rows(args.dsn, f"""
            SELECT event_id, key, ingested_at, processed_at,
                   round(extract(epoch FROM processed_at - ingested_at)::numeric, 1)
              FROM events WHERE source = '{SOURCE}' AND ingested_at >= '{args.live_from}'
               AND processed_at IS NOT NULL ORDER BY processed_at - ingested_at DESC LIMIT 3"""):
        attempts = psql_rows(args.dsn, f"""
            SELECT a.attempt, a.trigger, a.started_at, a.outcome, a.worker, coalesce(a.error, '')
              FROM delivery_attempts a JOIN events e ON e.position = a.event_position
               AND e.ingested_at = a.event_ingested_at
             WHERE e.source = '{SOURCE}' AND e.event_id = '{event_id}' ORDER BY a.attempt""")
        print(f"slow: {event_id} (key {key}) ingested {ingested_at}, delivered {processed_at} "
              f"({waited} s); attempts: " + "; ".join(" ".join(a) for a in attempts),
              file=sys.stderr)

    replays = load(d, "replays.json")["replays"]
    # What happened to each replay on the way (start, takeover, resume, ...).
    audit = collections.defaultdict(dict)
    try:
        for replay_id, action, count in psql_rows(
                args.dsn, "SELECT replay_id, action, count(*) FROM replay_audit "
                          "WHERE replay_id IS NOT NULL GROUP BY 1, 2 ORDER BY 1, 2"):
            audit[replay_id][action] = int(count)
    except subprocess.CalledProcessError as e:
        print(f"reading replay_audit failed: {e.stderr.strip()}", file=sys.stderr)
    replay_rows = [{"id": r["replay_id"], "state": r["state"], "total": int(r["total"]),
                    "delivered": int(r["delivered"]), "skipped": int(r["skipped"]),
                    "failed": int(r["failed"]), "audit": audit.get(r["replay_id"], {})}
                   for r in replays]
    not_ended = [r for r in replay_rows if r["state"] not in END_STATES]
    if not_ended:
        print(f"REPLAYS NOT ENDED: {not_ended}", file=sys.stderr)
    settled = args.settled == "true"
    undelivered = outcomes["pending"] + outcomes["retrying"]

    figure = {
        "bench": "chaos",
        "cycles": len(cycles),
        "acked": len(acked_set),
        "lost": len(lost),
        "duplicates": duplicates,
        "kills": len(cycles),
        "pg_restarts": args.pg_restarts,
        "events_in_log": len(events),
        "stored_unacked": len(events.keys() - acked_set),
        "delivered": len(delivered),
        "delivered_not_downstream": len(not_downstream),
        "failed_at_end": outcomes["failed"],
        "undelivered": undelivered,
        "outcomes": dict(outcomes),
        "downstream": {"requests": stats["requests"], "records": stats["records"],
                       "dropped_answers": sum(1 for r in requests if r["dropped"]),
                       "lookups": stats["lookups"]},
        "live_delivery_latency_s": latency_s,
        "replays": replay_rows,
        "replay_rate": args.replay_rate,
        "replays_ended": not not_ended,
        "settled": settled,
        "settle_s": args.settle_seconds,
        "chaos_s": args.chaos_seconds,
        "publisher": {k: publisher[k] for k in ("acked", "duplicate", "rejected",
                                                "unanswered_tries", "unacked_at_stop", "seconds")},
        "lookup": args.lookup,
        "seed": args.seed,
    }
    if len(cycles) != args.cycles:
        print(f"{len(cycles)} of {args.cycles} cycles ran", file=sys.stderr)
    print(json.dumps(figure))
    failed = (lost or duplicates or not_downstream or not settled or not_ended
              or len(cycles) != args.cycles)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
