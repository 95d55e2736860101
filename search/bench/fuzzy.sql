-- Typo tolerance the way the pg_trgm documentation suggests pairing it with full-text
-- search ("Text Search Integration"): a table of every distinct word of the tsvectors with
-- a trigram index; each query word of 4+ letters is expanded with its 3 most similar words
-- (pg_trgm.similarity_threshold), and the expanded tsquery runs on the tsvector index.

CREATE TABLE words AS SELECT word FROM ts_stat('SELECT search_tsv FROM events');
CREATE INDEX words_trgm ON words USING gist (word gist_trgm_ops);
ANALYZE words;

-- 'Savuel Harirson' -> ('savuel' | 'samuel') & ('harirson' | 'harrison'); with `prefix`
-- the last word's alternatives match as prefixes.
CREATE FUNCTION fuzzy_tsquery(q text, prefix boolean DEFAULT false) RETURNS tsquery
    LANGUAGE sql STABLE PARALLEL SAFE
AS $$
    SELECT to_tsquery('simple', string_agg(alternatives, ' & ' ORDER BY i))
    FROM (
        SELECT i, '(' || string_agg(DISTINCT quote_literal(w)
                    || CASE WHEN prefix AND is_last THEN ':*' ELSE '' END, ' | ') || ')'
                  AS alternatives
        FROM (
            SELECT t.i, t.i = max(t.i) OVER () AS is_last, t.term
            FROM regexp_split_to_table(lower(q), '[^[:alnum:]]+') WITH ORDINALITY AS t(term, i)
            WHERE t.term <> ''
        ) terms
        CROSS JOIN LATERAL (
            SELECT terms.term
            UNION ALL
            (SELECT d.word FROM words d
             WHERE length(terms.term) > 3 AND d.word % terms.term
             ORDER BY d.word <-> terms.term
             LIMIT 3)
        ) AS c(w)
        GROUP BY i
    ) per_word
$$;

-- Full text on the trigram-corrected words.
CREATE FUNCTION search_fuzzy(q text, prefix boolean)
    RETURNS SETOF event_hit
    LANGUAGE sql STABLE PARALLEL SAFE
AS $$ SELECT s.* FROM fuzzy_tsquery(q, prefix) AS query, search_fulltext(query) AS s $$;
