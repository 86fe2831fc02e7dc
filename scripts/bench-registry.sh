#!/usr/bin/env bash
# What the identity registry costs end to end (MLLP -> SQLite -> JSONL,
# the embedded default): the same load against
#   base   a build without the registry (BASE_BIN, e.g. commit 6558e27),
#   empty  this build, the registry holding only the bench's own therapy,
#   1m     this build, 1,000,000 identifiers of 250,000 therapies preloaded,
# alternated ROUNDS times. Every result names the bench order's MRN, order
# and specimen, so each one is looked up, gets its COI and is routed.
#
#   cargo build --release
#   git worktree add /tmp/base 6558e27 && (cd /tmp/base && cargo build --release)
#   BASE_BIN=/tmp/base/target/release/cgthub scripts/bench-registry.sh
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
BIN=${CGTHUB_BIN:-$ROOT/target/release/cgthub}
BASE_BIN=${BASE_BIN:-}
# The base build's own config and routes (its config refuses newer keys).
BASE_ROOT=${BASE_ROOT:-/tmp/base}
N=${N:-100000}
C=${C:-8}
W=${W:-32}
ROUNDS=${ROUNDS:-2}
RUNS=${RUNS:-"base empty 1m"}
WORK=$(mktemp -d)
PID=""
trap '[ -n "$PID" ] && kill "$PID" 2>/dev/null; rm -rf "$WORK"' EXIT

start() { # BIN DIR ROOT
    local root=${3:-$ROOT} extra=()
    [ "$root" = "$ROOT" ] && extra=(CGTHUB__SINKS__ALERTS_FILE__PATH="$2/out/alerts.jsonl"
        CGTHUB__SINKS__THERAPY_FILE__PATH="$2/out/therapy.jsonl")
    (cd "$2" && exec env "${extra[@]}" CGTHUB__DATA_DIR="$2/data" \
        CGTHUB__HTTP__ADDR=127.0.0.1:18190 CGTHUB__MLLP__ADDR=127.0.0.1:12590 \
        CGTHUB__STORE__URL="sqlite://$2/data/cgthub.db" \
        CGTHUB__PATHS__ROUTES="$root/routes" CGTHUB__PATHS__MAPPINGS="$root/mappings" \
        CGTHUB__SINKS__ORDERS_FILE__PATH="$2/out/orders.jsonl" \
        CGTHUB__SINKS__RESULTS_FILE__PATH="$2/out/results.jsonl" \
        CGTHUB__SINKS__PATIENTS_FILE__PATH="$2/out/patients.jsonl" \
        CGTHUB__LOG__LEVEL=warn \
        "$1" serve --config "$root/config/cgthub.toml" >"$2/hub.log" 2>&1) &
    PID=$!
    for _ in $(seq 1 200); do
        curl -fs 127.0.0.1:18190/healthz >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    echo "the hub did not start:" >&2; cat "$2/hub.log" >&2; exit 1
}

stop() { kill "$PID"; wait "$PID" 2>/dev/null || true; PID=""; }

# utime + stime of the hub, in clock ticks.
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$PID/stat"; }

# 250,000 therapies with an order, an MRN hash, a specimen and a batch each.
preload() { # DB
    python3 - "$1" <<'PY'
import sqlite3, sys, hashlib
db = sqlite3.connect(sys.argv[1])
now = "2026-12-01T00:00:00.000Z"
db.execute("INSERT INTO messages (id, connector, partner, message_id, content_type, payload, sha256, status, received_at, origin, updated_at) VALUES (1000000000, 'hl7v2', 'PRELOAD', 'PRELOAD', 'x', x'', '', 'routed', ?, 'preload', ?)", (now, now))
def therapies():
    for i in range(250_000):
        coi = "CHX000026%06d" % i
        yield (coi, "CART-19", "ORD%07d" % i, "active", "order.placed", 1000000000, now, now)
def idents():
    for i in range(250_000):
        coi = "CHX000026%06d" % i
        mrn = hashlib.sha256(b"HOSP|M%07d" % i).hexdigest()
        for kind, auth, value, key in (
            ("order", "", "ORD%07d" % i, None),
            ("mrn", "HOSP", "", mrn),
            ("specimen", "LAB", "SPEC%07d" % i, None),
            ("batch", "", "B%07d" % i, None),
        ):
            k = "%s|%s|%s" % (kind, auth, key or value)
            yield (k, kind, auth, value, coi, "hl7v2/PRELOAD", None, 1000000000, now)
db.executemany("INSERT INTO therapies (coi, product, order_id, state, milestones, message_row, created_at, updated_at) VALUES (?,?,?,?,?,?,?,?)", therapies())
db.executemany("INSERT INTO identifiers (key, kind, authority, value, coi, asserted_by, message_id, message_row, created_at) VALUES (?,?,?,?,?,?,?,?,?)", idents())
db.commit()
print("preloaded", db.execute("SELECT COUNT(*) FROM identifiers").fetchone()[0], "identifiers of",
      db.execute("SELECT COUNT(*) FROM therapies").fetchone()[0], "therapies")
PY
}

run() { # LABEL ROUND
    local dir="$WORK/$1-$2" bin=$BIN root=$ROOT
    mkdir -p "$dir/out"
    case $1 in
    base) [ -n "$BASE_BIN" ] || { echo "base: set BASE_BIN" >&2; return; }; bin=$BASE_BIN; root=$BASE_ROOT ;;
    1m) start "$bin" "$dir"; stop; preload "$dir/data/cgthub.db" ;;
    esac
    start "$bin" "$dir" "$root"
    echo "== $1 (round $2)"
    local before after
    before=$(cpu_ticks)
    "$BIN" bench mllp --to 127.0.0.1:12590 -c "$C" -w "$W" -n "$N" --drain 127.0.0.1:18190
    after=$(cpu_ticks)
    # The hub's own CPU time (user + system) per message: steadier than
    # throughput on a shared machine.
    echo "  hub CPU: $(( (after - before) * 1000000 / $(getconf CLK_TCK) / N )) us per message"
    stop
    # What reached the results sink, and with which COI: every result must
    # have been reconciled and routed, none held.
    python3 - "$dir/out/results.jsonl" "$dir/data/cgthub.db" <<'PY'
import json, sqlite3, sys, collections
cois = collections.Counter(json.loads(l).get("coi") for l in open(sys.argv[1]))
db = sqlite3.connect(sys.argv[2])
held = db.execute("SELECT COUNT(*) FROM sqlite_master WHERE name = 'holds'").fetchone()[0] and \
    db.execute("SELECT COUNT(*) FROM holds").fetchone()[0]
print("  results sink: %d events, by COI %s; held: %s" % (sum(cois.values()), dict(cois), held))
PY
}

for round in $(seq 1 "$ROUNDS"); do
    for r in $RUNS; do run "$r" "$round"; done
done
