-- Recall@20 of the trigram-corrected full-text search (fuzzy.sql) on one query set (psql
-- variables `kind`, `max_n`), counted as recall_trgm.sql counts it.
SELECT 'fuzzy' AS method, :'kind' AS kind,
       count(*) FILTER (WHERE hit) AS found, count(*) AS queries,
       round(100.0 * count(*) FILTER (WHERE hit) / count(*), 1) AS recall_pct,
       count(*) FILTER (WHERE n_hits = 0) AS empty
FROM bench_queries bq
CROSS JOIN LATERAL (
    SELECT coalesce(bool_or(bq.performer_id = ANY (r.performer_ids)), false) AS hit,
           count(*) AS n_hits
    FROM (
        SELECT e.performer_ids
        FROM events e, fuzzy_tsquery(bq.q, bq.kind = 'prefix') AS query
        WHERE e.search_tsv @@ query
        ORDER BY ts_rank(e.search_tsv, query) DESC, e.starts_at_ms
        LIMIT 20
    ) r
) x
WHERE bq.kind = :'kind' AND bq.n <= :max_n;
