#!/usr/bin/env bash
# Holds per second, boxoffice beside one PostgreSQL node, in one run on one machine.
#
# PostgreSQL (Debian's package, installed if missing, a throwaway server on loopback): one
# node, no replica, every commit fsync'd (fsync = on, synchronous_commit = on). A hold is the
# conditional UPDATE of a free seat, one statement, one round trip, prepared:
#   UPDATE seats SET holder = …, expires_at = now() + 10 min
#    WHERE id = <the next seat> AND (holder IS NULL OR expires_at < now())
# driven by pgbench at 8, 16, 64 and 256 clients. Each transaction takes the next seat of a
# sequence (as `boxoffice bench holds` takes the next seat), so every hold is a real write;
# the run prints how many seats were really taken.
#
# boxoffice: `boxoffice bench holds` (release build) at 64, 256 and 1,024 clients: three
# replicas in one process on loopback, every log append fdatasync'd before it counts.
#
# Then, beside them (not in the ratio): the same holds as `POST /v1/holds` through an API
# node (`--http`, the REST tier's share) and the hot event (`--events 1`: one 50,000-seat
# event, so one group's leader takes every write), both at 256 clients.
#
# Every configuration runs ROUNDS times (default 3), the rounds interleaved (each round runs
# every client count once), and the summary takes the median of each: on a shared 2-core
# machine one run of a configuration differs from the next by up to a third, so a single
# run decides nothing. The REST tier's share is the median of each round's REST figure over
# that round's typed 256-client figure, run just before it. On one machine the HTTP load
# generator takes CPU the tier would otherwise have (`bench holds --http` prints its
# thread's CPU apart), so each round also runs a pinned pair (PINNED=0 skips it): the typed
# client with everything on CPU 0, then the REST tier on CPU 0 with the load generator on
# CPU 1 of its own, as `wrk` on another machine; their ratio is printed too.
#
# Each boxoffice run also prints its replicas' log fsync p99 (from the recorder's
# histogram, `bench holds`' "log fsyncs" line): the tail at 64 clients follows the disk's
# sync latency, which moves from one run to the next on a shared machine.
#
# Prints each run, the medians, the best median of each side and their ratio; asserts
# nothing.
#
#   node/bench/holds_vs_postgres.sh                     # 20 s per run, 3 rounds: ~14 min
#   SECONDS_PER_RUN=10 ROUNDS=1 PG_CLIENTS="16 64" BOX_CLIENTS="256" node/bench/holds_vs_postgres.sh
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
secs=${SECONDS_PER_RUN:-20}
rounds=${ROUNDS:-3}
# The pinned pair (PINNED=0 skips it) needs a second CPU and util-linux's taskset.
pinned=${PINNED:-1}
if (( pinned )) && { (( $(nproc) < 2 )) || ! command -v taskset >/dev/null; }; then
    pinned=0
fi
pg_clients=${PG_CLIENTS:-8 16 64 256}
box_clients=${BOX_CLIENTS:-64 256 1024}
# Enough seats that no run finds the sequence exhausted, even at 50,000 holds/s.
n_seats=${PG_SEATS:-$((50000 * secs * rounds * $(wc -w <<<"$pg_clients") + 100000))}

say() { printf '%s\n' "$*"; }
load() { cut -d' ' -f1-3 /proc/loadavg; }
# The median of the numbers on stdin, one per line, printed with FORMAT ("-" if none).
median() {
    sort -g | awk -v f="${1:-%.0f}" '{ v[NR] = $1 } END {
        if (NR == 0) print "-"; else printf f "\n", (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
# Figures are kept as lines "<key> <value>" in $results; `figures KEY` prints KEY's values.
results=$(mktemp)
record() { printf '%s %s\n' "$1" "$2" >>"$results"; }
figures() { awk -v k="$1" '$1 == k { print $2 }' "$results"; }

# shellcheck source=pg_server.sh
source "$here/pg_server.sh"

say "== holds: boxoffice beside one PostgreSQL node, $secs s per run =="
say "machine: $(nproc) cores, load average at start: $(load)"

say "building boxoffice (release)"
(cd "$repo" && cargo build -q --release -p boxoffice-node)
boxoffice=${CARGO_TARGET_DIR:-$repo/target}/release/boxoffice

# --- PostgreSQL -------------------------------------------------------------------------------
pg_server_start "shared_buffers = 1GB
max_connections = 300
fsync = on
synchronous_commit = on
full_page_writes = on
max_wal_size = 8GB
checkpoint_timeout = 30min
autovacuum = off
jit = off"
say "PostgreSQL: $("$pg_bin/postgres" --version); fsync on, synchronous_commit on"
sql() { psql -X -q -v ON_ERROR_STOP=1 -At "$@"; }
sql <<SQL
CREATE TABLE seats (id bigint PRIMARY KEY, holder text, expires_at timestamptz);
INSERT INTO seats (id) SELECT generate_series(1, $n_seats);
CREATE SEQUENCE seat_seq;
VACUUM ANALYZE seats;
CHECKPOINT;
SQL
cat >"$pg_data/hold.sql" <<'SQL'
WITH next AS (SELECT nextval('seat_seq') AS id)
UPDATE seats SET holder = 'c' || :client_id, expires_at = now() + interval '10 minutes'
  FROM next
 WHERE seats.id = next.id AND (seats.holder IS NULL OR seats.expires_at < now());
SQL
chmod 644 "$pg_data/hold.sql"
say "seats: $n_seats"

for round in $(seq "$rounds"); do
for c in $pg_clients; do
    held_before=$(sql -c "SELECT count(*) FROM seats WHERE holder IS NOT NULL")
    logs="$pg_data/log-$c"
    mkdir -p "$logs"
    out=$(cd "$logs" && pgbench -n -M prepared -c "$c" -j "$(( c < 4 ? c : 4 ))" -T "$secs" \
        -f "$pg_data/hold.sql" --log --log-prefix=tx 2>&1)
    held_after=$(sql -c "SELECT count(*) FROM seats WHERE holder IS NOT NULL")
    tps=$(awk '/^tps = / { printf "%.0f", $3 }' <<<"$out")
    txs=$(awk '/number of transactions actually processed/ { print $NF }' <<<"$out")
    # pgbench's per-transaction log: the third field is the latency in µs.
    read -r p50 p99 < <(cat "$logs"/tx* | awk '{ print $3 }' | sort -n | awk '
        { v[NR] = $1 } END { if (NR) printf "%.2f %.2f\n", v[int(NR*0.50)+1]/1000, v[int(NR*0.99)+1]/1000; else print "- -" }')
    say "round $round postgres  clients $(printf %5s "$c"): $(printf %7s "$tps") holds/s  p50 $p50 ms  p99 $p99 ms  (seats taken $((held_after - held_before)) of $txs transactions; load $(load))"
    record "pg-$c" "$tps"
    record "pg-p99-$c" "$p99"
    rm -rf "$logs"
done
done
pg_server_stop
trap - EXIT
# PostgreSQL's runs leave the disk writing back its files and the removal of its data
# directory; boxoffice starts on a settled machine, as PostgreSQL did.
sync
sleep 10

# --- boxoffice --------------------------------------------------------------------------------
# One `bench holds` run; prints its line and records its figures under KEY.
box_run() {
    local key=$1 label=$2
    shift 2
    local out lat cpu p99 sync run=("$boxoffice")
    # ON_CPU0=1 runs the process on CPU 0 (the pinned pair; its load generator moves
    # itself to CPU 1).
    [[ -n ${ON_CPU0:-} ]] && run=(taskset -c 0 "$boxoffice")
    out=$("${run[@]}" bench holds "$@" --duration-secs "$secs" 2>/dev/null)
    hps=$(awk '/^holds\/s:/ { print $2 }' <<<"$out")
    lat=$(awk '/^latency p50:/ { print "p50", $3, "ms  p99", $6, "ms" }' <<<"$out")
    p99=$(awk '/^latency p50:/ { print $6 }' <<<"$out")
    cpu=$(awk '/^process CPU:/ { for (i = 1; i < NF; i++) if ($(i + 1) == "µs") print $i, "µs CPU per hold" }' <<<"$out")
    # The replicas' log fsync p99 in the same window: the disk the tail ran on.
    sync=$(awk '/^log fsyncs:/ { for (i = 1; i < NF; i++) if ($i == "p99") print $(i + 1) }' <<<"$out")
    say "round $round boxoffice $label: $(printf %7s "$hps") holds/s  $lat  ($cpu; log fsync p99 ${sync:--} ms; load $(load))"
    record "$key" "$hps"
    record "$key-p99" "$p99"
    record "$key-cpu" "${cpu%% *}"
    [[ -n $sync ]] && record "$key-sync" "$sync"
    return 0
}
for round in $(seq "$rounds"); do
    for c in $box_clients; do
        box_run "box-$c" "clients $(printf %5s "$c")" --concurrency "$c"
        if (( c == 256 )); then
            typed_256=$hps
            # The REST tier right after the typed client it is compared with.
            box_run rest "REST tier, --http, 256 clients" --http --concurrency 256
            share=$(awk -v r="$hps" -v t="$typed_256" 'BEGIN { if (t > 0) printf "%.3f", r / t }')
            [[ -n $share ]] && record rest-share "$share"
            if (( pinned )); then
                # The same pair with the load generator on a CPU of its own, as `wrk` on
                # another machine: the cluster (and API node) on CPU 0, the load generator
                # on CPU 1. Pinned beside pinned, so both sides have one CPU.
                ON_CPU0=1 box_run typed-pinned "typed client, all on CPU 0, 256 clients" --concurrency 256
                typed_pinned=$hps
                ON_CPU0=1 box_run rest-pinned "REST tier on CPU 0, load generator on CPU 1" --http --concurrency 256 --load-generator-cpu 1
                share=$(awk -v r="$hps" -v t="$typed_pinned" 'BEGIN { if (t > 0) printf "%.3f", r / t }')
                [[ -n $share ]] && record rest-share-pinned "$share"
            fi
        fi
    done
    box_run hot "hot event, --events 1 --seats 50000, 256 clients" --events 1 --seats 50000 --concurrency 256
done

say ""
say "== medians of $rounds rounds =="
pg_best=0
for c in $pg_clients; do
    m=$(figures "pg-$c" | median)
    say "postgres  clients $(printf %5s "$c"): $(printf %7s "$m") holds/s  p99 $(figures "pg-p99-$c" | median %.2f) ms"
    [[ $m != - ]] && awk -v m="$m" -v b="$pg_best" 'BEGIN { exit !(m > b) }' && pg_best=$m
done
box_best=0
for c in $box_clients; do
    m=$(figures "box-$c" | median)
    say "boxoffice clients $(printf %5s "$c"): $(printf %7s "$m") holds/s  p99 $(figures "box-$c-p99" | median %.2f) ms  $(figures "box-$c-cpu" | median) µs CPU per hold  log fsync p99 $(figures "box-$c-sync" | median %.2f) ms"
    [[ $m != - ]] && awk -v m="$m" -v b="$box_best" 'BEGIN { exit !(m > b) }' && box_best=$m
done
if [[ -n $(figures rest) ]]; then
    say "boxoffice REST tier, --http, 256 clients: $(figures rest | median) holds/s  p99 $(figures rest-p99 | median %.2f) ms  $(figures rest-cpu | median) µs CPU per hold  log fsync p99 $(figures rest-sync | median %.2f) ms"
    say "REST tier / typed client at 256 clients, median of the rounds' ratios: $(figures rest-share | median %.2f) (each round: $(figures rest-share | tr '\n' ' '))"
    if [[ -n $(figures rest-share-pinned) ]]; then
        say "REST tier on CPU 0 with the load generator on CPU 1 / typed client on CPU 0: $(figures rest-share-pinned | median %.2f) (each round: $(figures rest-share-pinned | tr '\n' ' '))"
    fi
fi
say "boxoffice hot event, --events 1 --seats 50000, 256 clients: $(figures hot | median) holds/s  p99 $(figures hot-p99 | median %.2f) ms  $(figures hot-cpu | median) µs CPU per hold  log fsync p99 $(figures hot-sync | median %.2f) ms"
rm -f "$results"
say "best median: boxoffice $box_best holds/s, PostgreSQL $pg_best holds/s"
awk -v b="$box_best" -v p="$pg_best" 'BEGIN { if (p > 0) printf "ratio boxoffice / PostgreSQL: %.2f\n", b / p }'
