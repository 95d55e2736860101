-- Recall@20 of one search function (psql variable `search`: search_trgm, search_tsv or
-- search_fuzzy) on one query set (`kind`), over its first `max_n` queries, counted as the
-- Rust bench counts it: a query is found when any of its first 20 hits lists the intended
-- performer.
SELECT :'search' AS search, :'kind' AS kind,
       count(*) FILTER (WHERE hit) AS found, count(*) AS queries,
       round(100.0 * count(*) FILTER (WHERE hit) / count(*), 1) AS recall_pct,
       count(*) FILTER (WHERE n_hits = 0) AS empty
FROM bench_queries bq
CROSS JOIN LATERAL (
    SELECT coalesce(bool_or(bq.performer_id = ANY (r.performer_ids)), false) AS hit,
           count(*) AS n_hits
    FROM :search(bq.q, bq.kind = 'prefix') r
) x
WHERE bq.kind = :'kind' AND bq.n <= :max_n;
