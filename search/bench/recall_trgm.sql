-- Recall@20 of the trigram search on one query set (psql variables `kind`, `max_n`), counted as the
-- Rust bench counts it: a query is found when any of its first 20 hits lists the intended
-- performer.
SELECT 'trgm' AS method, :'kind' AS kind,
       count(*) FILTER (WHERE hit) AS found, count(*) AS queries,
       round(100.0 * count(*) FILTER (WHERE hit) / count(*), 1) AS recall_pct,
       count(*) FILTER (WHERE n_hits = 0) AS empty
FROM bench_queries bq
CROSS JOIN LATERAL (
    SELECT coalesce(bool_or(bq.performer_id = ANY (r.performer_ids)), false) AS hit,
           count(*) AS n_hits
    FROM (
        SELECT e.performer_ids FROM events e
        WHERE bq.q <% e.search_text
        ORDER BY word_similarity(bq.q, e.search_text) DESC, e.starts_at_ms
        LIMIT 20
    ) r
) x
WHERE bq.kind = :'kind' AND bq.n <= :max_n;
