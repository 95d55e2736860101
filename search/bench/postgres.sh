#!/usr/bin/env bash
# The PostgreSQL side of the search benchmark: the same synthetic catalog and the same
# query sets as `cargo bench -p boxoffice-search` (search/benches/search_bench.rs), searched
# three ways (schema.sql, fuzzy.sql): pg_trgm word similarity (typo-tolerant), a weighted
# tsvector (exact words), and the tsvector on trigram-corrected words.
#
# Installs PostgreSQL if missing, starts a throwaway server (temp data dir, free loopback
# port, run as an unprivileged user), loads the export with COPY, builds a GIN trigram index,
# a GIN tsvector index and a word list, then reports load and build times, sizes, memory, recall@20 and
# pgbench latency percentiles and throughput for 1 and 2 clients. Stops the server and
# removes its data dir on exit. Prints figures; asserts nothing.
#
#   search/bench/postgres.sh                      # 1,000,000 events
#   BENCH_EVENTS=100000 PG_SECONDS=5 search/bench/postgres.sh
#
# Environment: BENCH_EVENTS (default 1000000), BENCH_SEED, BENCH_QUERIES (as for the Rust
# bench), EXPORT_DIR (default /tmp/boxoffice-search-export-<events>-<seed>-<queries>;
# exported by the Rust bench when events.tsv is missing), PG_SECONDS per pgbench phase (default 20),
# PG_TRGM_THRESHOLDS (pg_trgm.word_similarity_threshold values to measure the trigram
# search at, default "0.3 0.6": 0.3 for the recall closest to tantivy's, 0.6 is
# PostgreSQL's default), PG_TRGM_RECALL_QUERIES (recall of the trigram search on the first
# N queries of each set only, default all: at 1M events a query can take seconds),
# PG_SHARED_BUFFERS (default 4GB), PG_WORK_MEM (default 64MB), PG_CLASSES (the query classes
# of search_bench/classes.rs measured beside the three original sets: recall of every
# method, and one-client throughput of the trigram and trigram-corrected searches; default
# all six, "" for none).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
events=${BENCH_EVENTS:-1000000}
seconds=${PG_SECONDS:-20}
thresholds=${PG_TRGM_THRESHOLDS:-0.3 0.6}
shared_buffers=${PG_SHARED_BUFFERS:-4GB}
work_mem=${PG_WORK_MEM:-64MB}
export_dir=${EXPORT_DIR:-/tmp/boxoffice-search-export-$events-${BENCH_SEED:-default}-${BENCH_QUERIES:-default}}
trgm_recall_queries=${PG_TRGM_RECALL_QUERIES:-1000000000}
classes=${PG_CLASSES-join split phonetic two-slips short venue-word}

say() { printf '%s\n' "$*"; }
load() { cut -d' ' -f1-3 /proc/loadavg; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

# --- the data: exactly what the Rust bench indexes and queries -------------------------
if [[ ! -s $export_dir/events.tsv || ! -s $export_dir/queries.tsv ]]; then
    say "exporting $events events to $export_dir (search_bench, BENCH_EXPORT_ONLY=1)"
    (cd "$repo" && BENCH_EVENTS=$events BENCH_EXPORT_DIR=$export_dir BENCH_EXPORT_ONLY=1 \
        cargo bench -q -p boxoffice-search --bench search_bench)
fi
n_queries=$(awk -F'\t' '$1 == "misspelled"' "$export_dir/queries.tsv" | wc -l)

# --- PostgreSQL: installed if missing, a throwaway server (node/bench/pg_server.sh) -----------
# shellcheck source=../../node/bench/pg_server.sh
source "$repo/node/bench/pg_server.sh"
# Reads only after a bulk load: everything in memory, no JIT (its compile time is pure
# overhead on millisecond queries), durability relaxed for the load (the queries are
# read-only, so it changes no query figure).
pg_server_start "shared_buffers = $shared_buffers
work_mem = $work_mem
maintenance_work_mem = 1GB
effective_cache_size = 8GB
random_page_cost = 1.1
jit = off
fsync = off
synchronous_commit = off
full_page_writes = off
max_wal_size = 8GB
autovacuum = off"
bin=$pg_bin
data=$pg_data
say "PostgreSQL: $("$bin/postgres" --version)"
sql() { psql -X -q -v ON_ERROR_STOP=1 -At "$@"; }
say "server: $data/db on 127.0.0.1:$PGPORT, shared_buffers $shared_buffers, work_mem $work_mem"

# --- load and index -------------------------------------------------------------------------
say "load average at start: $(load)"
sql -f "$here/schema.sql"
t=$(now)
sql -c "\\copy events (event_id, name, performers, performer_ids, venue_name, city, country, category, description, starts_at_ms, min_price_minor, max_price_minor, available, total) FROM '$export_dir/events.tsv'"
say "load: COPY of $events events (computing search_text and search_tsv) in $(since "$t") s [load $(load)]"
sql -c "\\copy bench_queries (kind, n, q, performer_id) FROM '$export_dir/queries.tsv'"
t=$(now)
sql -c "CREATE INDEX events_trgm ON events USING gin (search_text gin_trgm_ops)"
say "index: GIN trigram (search_text gin_trgm_ops) built in $(since "$t") s [load $(load)]"
t=$(now)
sql -c "CREATE INDEX events_tsv ON events USING gin (search_tsv)"
say "index: GIN tsvector built in $(since "$t") s [load $(load)]"
t=$(now)
sql -f "$here/fuzzy.sql"
say "index: word list for trigram-corrected full text (fuzzy.sql) in $(since "$t") s [load $(load)]"
t=$(now)
sql -c "VACUUM (ANALYZE) events" -c "VACUUM (ANALYZE) bench_queries"
say "vacuum analyze: $(since "$t") s"
sql -F ': ' <<Q | sed 's/^/size: /'
SELECT 'table (heap + TOAST, with the two computed columns)', pg_size_pretty(pg_table_size('events'))
UNION ALL SELECT 'primary key', pg_size_pretty(pg_relation_size('events_pkey'))
UNION ALL SELECT 'GIN trigram index', pg_size_pretty(pg_relation_size('events_trgm'))
UNION ALL SELECT 'GIN tsvector index', pg_size_pretty(pg_relation_size('events_tsv'))
UNION ALL SELECT 'word list + its GiST trigram index (' || (SELECT count(*) FROM words) || ' words)',
    pg_size_pretty(pg_total_relation_size('words'))
UNION ALL SELECT 'total (table + all indexes)', pg_size_pretty(pg_total_relation_size('events'))
UNION ALL SELECT 'export file (events.tsv)', pg_size_pretty($(stat -c %s "$export_dir/events.tsv")::bigint);
Q
# Warm caches: every page of the table and its indexes into shared_buffers.
sql -c "SELECT sum(pg_prewarm(c)) FROM unnest(array['events', 'events_pkey', 'events_trgm', 'events_tsv', 'bench_queries', 'words', 'words_trgm']::regclass[]) AS c" >/dev/null

# The plans: the functions are inlined, each search is one index scan.
q1=$(sql -c "SELECT q FROM bench_queries WHERE kind = 'misspelled' AND n = 1")
for search in trgm tsv fuzzy; do
    say "plan of search_$search('$q1'):"
    sql -c "EXPLAIN (COSTS OFF) SELECT * FROM search_$search('$q1', false)" | sed 's/^/    /'
done

# --- recall: one pass over each query set ---------------------------------------------------
recall() { # method kind [max_n]
    local t out m k found queries pct empty
    t=$(now)
    out=$(sql -F ' ' -v search="search_$1" -v kind="$2" -v max_n="${3:-1000000000}" \
        -f "$here/recall.sql")
    read -r m k found queries pct empty <<<"$out"
    say "recall@20 $m $k: $found/$queries = $pct% ($empty returned nothing); one pass $(since "$t") s [load $(load)]"
}

# --- throughput and latency: pgbench, fixed duration, per-transaction log ------------------
bench() { # method kind clients
    local options=${PGOPTIONS:-} out tps before
    local logs="$data/pgbench-$1-$2-$3-${options//[^0-9.]/}"
    mkdir -p "$logs"
    # One transaction: draw a query of the set at random, then search for it. -M extended
    # makes :q a bound parameter, planned with its value.
    cat >"$logs/script.pgbench" <<SCRIPT
\\set n random(1, :n_queries)
SELECT q FROM bench_queries WHERE kind = :kind AND n = :n \\gset
SELECT * FROM search_$1(:q, :kind = 'prefix');
SCRIPT
    before=$(load)
    out=$(cd "$logs" && pgbench -n -M extended -T "$seconds" -c "$3" -j "$3" -r -l \
        -D kind="$2" -D n_queries="$(awk -F'\t' -v k="$2" '$1 == k' "$export_dir/queries.tsv" | wc -l)" \
        -f script.pgbench 2>&1) || {
        printf '%s\n' "$out"
        return 1
    }
    tps=$(sed -n 's/^tps = \([0-9.]*\).*/\1/p' <<<"$out")
    # Per-transaction latency in µs is the third field of the log: both statements, the
    # lookup of the query text (its mean is printed below) and the search.
    cat "$logs"/pgbench_log.* | awk '{ print $3 }' | sort -n | awk -v label="$1 $2, $3 client(s)" \
        -v tps="$tps" -v load="$before -> $(load)" '
        { v[NR] = $1 }
        END {
            printf "%s: %d queries = %.1f q/s; p50 %.2f ms, p90 %.2f ms, p99 %.2f ms, max %.2f ms [load %s]\n",
                label, NR, tps, v[int(NR * 0.50) + 1] / 1000, v[int(NR * 0.90) + 1] / 1000,
                v[int(NR * 0.99) + 1] / 1000, v[NR] / 1000, load
        }'
    awk '/FROM bench_queries/ { printf "  of which %s ms on average picking the query from bench_queries\n", $1 }' <<<"$out"
}

# Trigram search (typo-tolerant): at each threshold, recall then timed phases.
for threshold in $thresholds; do
    export PGOPTIONS="-c pg_trgm.word_similarity_threshold=$threshold"
    say "pg_trgm.word_similarity_threshold = $threshold"
    for kind in misspelled exact prefix $classes; do recall trgm "$kind" "$trgm_recall_queries"; done
    for kind in $classes; do bench trgm "$kind" 1; done
    bench trgm misspelled 1
    bench trgm misspelled 2
    bench trgm exact 1
    bench trgm prefix 1
done
unset PGOPTIONS
# Full text, exact words (the last as a prefix for type-ahead): no typo tolerance.
for kind in misspelled exact prefix $classes; do recall tsv "$kind"; done
bench tsv misspelled 1
bench tsv exact 1
bench tsv exact 2
bench tsv prefix 1
# Full text with trigram-corrected words (pg_trgm.similarity_threshold at its default, 0.3).
for kind in misspelled exact prefix $classes; do recall fuzzy "$kind"; done
for kind in $classes; do bench fuzzy "$kind" 1; done
bench fuzzy misspelled 1
bench fuzzy misspelled 2
bench fuzzy exact 1
bench fuzzy prefix 1

# --- memory ---------------------------------------------------------------------------------
pss=0
for pid in $(head -n 1 "$data/db/postmaster.pid") $(pgrep -P "$(head -n 1 "$data/db/postmaster.pid")"); do
    kb=$(awk '/^Pss:/ { print $2 }' "/proc/$pid/smaps_rollup" 2>/dev/null || echo 0)
    pss=$((pss + ${kb:-0}))
done
say "memory: server processes $((pss / 1024)) MiB proportional set size (shared_buffers $shared_buffers reserved, the prewarmed relations resident in it)"
say "load average at end: $(load)"
