#!/usr/bin/env python3
"""The storage schema's own intake ceiling, without the hub.

Inserts N messages in 200-row transactions (WAL, synchronous=FULL) into the
shipped schema (message + event + outbox row each, then the outbox marked
delivered), and into a leaner layout (one row per message with its events
inline, a delivery queue whose rows are deleted). No parsing, mapping or
network: an upper bound for the store's design, for comparing layouts.

    python3 hub-core/benches/sqlite_ceiling.py [DIR]
"""
import hashlib
import os
import sqlite3
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SCHEMA = open(os.path.join(HERE, "..", "migrations", "sqlite", "0001_store.sql")).read()
LEAN = """CREATE TABLE m (id INTEGER PRIMARY KEY, connector TEXT, partner TEXT, message_id TEXT,
  payload BLOB, status TEXT, received_at TEXT, events TEXT);
CREATE UNIQUE INDEX m_dedup ON m (connector, partner, message_id) WHERE status NOT IN ('dead','rejected');
CREATE TABLE o (id INTEGER PRIMARY KEY, message_row INTEGER, sink TEXT);"""
PAYLOAD = os.urandom(1228).hex().encode()[:2456]  # ~ a 12-OBX ORU
BODY = '{"schema":"cgt.event/v1","x":"' + "a" * 1900 + '"}'  # ~ its event
NOW = "2026-11-23T00:00:00.000Z"


def run(folder, name, schema, lean, n=30000, batch=200):
    path = os.path.join(folder, f"ceiling_{'lean' if lean else 'shipped'}.db")
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(path + suffix):
            os.remove(path + suffix)
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.executescript(schema)
    started, mid, done = time.time(), 0, 0
    for _ in range(n // batch):
        msgs, events, queue = [], [], []
        for _ in range(batch):
            mid += 1
            eid = f"{mid:032x}"
            if lean:
                msgs.append((mid, "hl7v2", "HOSPITAL", f"B{mid}", PAYLOAD, "routed", NOW, "[" + BODY + "]"))
                queue.append((mid, "results_file"))
            else:
                sha = hashlib.sha256(str(mid).encode()).hexdigest()
                msgs.append((mid, "hl7v2", "HOSPITAL", f"B{mid}", "x", PAYLOAD, sha, "routed",
                             None, None, None, NOW, "o", NOW))
                events.append((eid, mid, "qc.result_reported", None, "LAB", "p", NOW, NOW, BODY, "routed"))
                queue.append((eid, "r", "results_file", "pending", 0, NOW, NOW))
        db.execute("BEGIN")
        if lean:
            db.executemany("INSERT INTO m (id,connector,partner,message_id,payload,status,received_at,events) "
                           "VALUES (?,?,?,?,?,?,?,?)", msgs)
            db.executemany("INSERT INTO o (message_row,sink) VALUES (?,?)", queue)
        else:
            db.executemany("INSERT INTO messages (id,connector,partner,message_id,content_type,payload,sha256,"
                           "status,error_code,error,stage,received_at,origin,updated_at) "
                           "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?) ON CONFLICT DO NOTHING", msgs)
            db.executemany("INSERT INTO events (event_id,message_row,kind,coi,order_id,product,occurred_at,"
                           "recorded_at,body,routing) VALUES (?,?,?,?,?,?,?,?,?,?)", events)
            db.executemany("INSERT INTO outbox (event_id,route,sink,state,attempts,next_attempt_at,created_at) "
                           "VALUES (?,?,?,?,?,?,?)", queue)
        db.execute("COMMIT")
        # The relay confirms the batch.
        db.execute("BEGIN")
        if lean:
            db.execute("DELETE FROM o WHERE id <= ?", (done + batch,))
        else:
            db.execute("UPDATE outbox SET state='delivered', delivered_at=? WHERE state='pending' AND id <= ?",
                       (NOW, done + batch))
        db.execute("COMMIT")
        done += batch
    print(f"{name:70s} {n / (time.time() - started):8.0f} intakes/s")


if __name__ == "__main__":
    folder = sys.argv[1] if len(sys.argv) > 1 else "/tmp"
    run(folder, "shipped schema (message + event + outbox rows, outbox updated)", SCHEMA, False)
    run(folder, "lean layout (one row per message, queue rows deleted)", LEAN, True)
