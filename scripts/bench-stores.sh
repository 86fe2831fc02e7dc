#!/usr/bin/env bash
# End to end, MLLP -> store -> RabbitMQ (confirmed) -> delivered, in one run:
# the embedded SQLite store, then 1, 2 and 3 instances on one PostgreSQL.
#
#   cargo build --release && scripts/bench-stores.sh            # all four
#   N=50000 RUNS="sqlite pg1" scripts/bench-stores.sh            # a subset
#
# Each run gets a fresh RabbitMQ vhost (cgt-bench) and a fresh store (a new
# SQLite file, or database cgthub_bench dropped and created again), and the
# load generator spreads its connections over every instance.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
BIN=${CGTHUB_BIN:-$ROOT/target/release/cgthub}
N=${N:-100000}
C=${C:-8}
W=${W:-32}
PG=${PG:-postgres://postgres@127.0.0.1:5432}
RUNS=${RUNS:-"sqlite pg1 pg2 pg3"}
VHOST=cgt-bench
WORK=$(mktemp -d)
PIDS=()

stop() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
    PIDS=()
}
trap 'stop; rabbitmqctl -q delete_vhost "$VHOST" >/dev/null 2>&1 || true; rm -rf "$WORK"' EXIT

fresh_vhost() {
    rabbitmqctl -q delete_vhost "$VHOST" >/dev/null 2>&1 || true
    rabbitmqctl -q add_vhost "$VHOST" >/dev/null
    rabbitmqctl -q set_permissions -p "$VHOST" guest '.*' '.*' '.*' >/dev/null
}

fresh_pg() {
    psql -q "$PG/postgres" -c 'DROP DATABASE IF EXISTS cgthub_bench WITH (FORCE)' \
        -c 'CREATE DATABASE cgthub_bench' >/dev/null
}

# run LABEL INSTANCES STORE_URL
run() {
    local label=$1 n=$2 url=$3 to="" drain=""
    fresh_vhost
    mkdir -p "$WORK/$label"
    for i in $(seq 1 "$n"); do
        (cd "$WORK/$label" &&
            CGTHUB__INSTANCE__ID="hub-$i" \
            CGTHUB__HTTP__ADDR="127.0.0.1:1819$i" \
            CGTHUB__MLLP__ADDR="127.0.0.1:1259$i" \
            CGTHUB__STORE__URL="$url" \
            CGTHUB__AMQP__URL="amqp://guest:guest@127.0.0.1:5672/$VHOST" \
            CGTHUB__PATHS__ROUTES="$ROOT/routes/rabbitmq" \
            CGTHUB__PATHS__MAPPINGS="$ROOT/mappings" \
            CGTHUB__LOG__LEVEL=warn \
            exec "$BIN" serve --config "$ROOT/config/rabbitmq.toml" \
            >"$WORK/$label/hub-$i.log" 2>&1) &
        PIDS+=($!)
        to="$to${to:+,}127.0.0.1:1259$i"
        drain="$drain${drain:+,}127.0.0.1:1819$i"
        # One at a time: the first migrates the schema.
        for _ in $(seq 1 100); do
            curl -fs "127.0.0.1:1819$i/healthz" >/dev/null 2>&1 && break
            sleep 0.1
        done
    done
    echo "== $label: $n instance(s), $url"
    "$BIN" bench mllp --to "$to" -c "$C" -w "$W" -n "$N" --drain "$drain"
    stop
}

for r in $RUNS; do
    case $r in
    sqlite) run sqlite 1 "sqlite://$WORK/sqlite/data/cgthub.db" ;;
    pg[1-9]) fresh_pg; run "$r" "${r#pg}" "$PG/cgthub_bench" ;;
    *) echo "unknown run $r" >&2; exit 2 ;;
    esac
done
