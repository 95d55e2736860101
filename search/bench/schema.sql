-- The catalog of the search benchmark, as exported by `search_bench` (BENCH_EXPORT_DIR),
-- with the two usual PostgreSQL search columns computed on load: one text of the fields
-- tantivy matches with typos (for pg_trgm) and a weighted tsvector of every text field.

CREATE EXTENSION IF NOT EXISTS pg_trgm;
CREATE EXTENSION IF NOT EXISTS pg_prewarm;

-- array_to_string is only STABLE; over text[] it cannot change, so this wrapper may be
-- IMMUTABLE and used in generated columns.
CREATE FUNCTION names_text(names text[]) RETURNS text
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
    RETURN array_to_string(names, ' ');

CREATE TABLE events (
    event_id        text PRIMARY KEY,
    name            text NOT NULL,
    performers      text[] NOT NULL,
    performer_ids   text[] NOT NULL,
    venue_name      text NOT NULL,
    city            text NOT NULL,
    country         text NOT NULL,
    category        text NOT NULL,
    description     text NOT NULL,
    starts_at_ms    bigint NOT NULL,
    min_price_minor bigint NOT NULL,
    max_price_minor bigint NOT NULL,
    available       bigint NOT NULL,
    total           bigint NOT NULL,
    -- The fields tantivy matches with typos (all text fields but the description).
    search_text     text GENERATED ALWAYS AS (
        names_text(performers) || ' ' || name || ' ' || category || ' ' || venue_name
        || ' ' || city || ' ' || country) STORED,
    -- Every text field, weighted like tantivy's field weights: performers A, name B,
    -- category/venue/city/country C, description D. 'simple': no stemming, no stopwords
    -- (tantivy's analyzer has neither).
    search_tsv      tsvector GENERATED ALWAYS AS (
        setweight(to_tsvector('simple', names_text(performers)), 'A')
        || setweight(to_tsvector('simple', name), 'B')
        || setweight(to_tsvector('simple', category || ' ' || venue_name || ' ' || city
                                 || ' ' || country), 'C')
        || setweight(to_tsvector('simple', description), 'D')) STORED
);

-- The query sets exactly as the Rust bench runs them.
CREATE TABLE bench_queries (
    kind         text NOT NULL,
    n            int NOT NULL,
    q            text NOT NULL,
    performer_id text NOT NULL,
    PRIMARY KEY (kind, n)
);

-- The searches, as an application would write them. Single-SELECT SQL functions: the
-- planner inlines them into the calling query, so they plan exactly like the SELECT typed
-- in place (EXPLAIN shows the index scans, no function scan).

-- What every search returns: the first 20 hits.
CREATE TYPE event_hit AS (event_id text, name text, performers text[], performer_ids text[],
                          venue_name text, city text, starts_at_ms bigint);

-- Typo-tolerant: trigram word similarity of `q` to any stretch of search_text, at least
-- pg_trgm.word_similarity_threshold, best first. `prefix` changes nothing (a prefix is
-- already a partial match).
CREATE FUNCTION search_trgm(q text, prefix boolean)
    RETURNS SETOF event_hit
    LANGUAGE sql STABLE PARALLEL SAFE
AS $$
    SELECT e.event_id, e.name, e.performers, e.performer_ids, e.venue_name, e.city,
           e.starts_at_ms
    FROM events e
    WHERE q <% e.search_text
    ORDER BY word_similarity(q, e.search_text) DESC, e.starts_at_ms
    LIMIT 20
$$;

-- The words of `q` as a tsquery, all required ('a' & 'b'), the last one as a prefix when
-- `prefix`: what an application builds from user input.
CREATE FUNCTION words_tsquery(q text, prefix boolean) RETURNS tsquery
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN to_tsquery('simple', array_to_string(array(
        SELECT quote_literal(w) FROM regexp_split_to_table(lower(q), '[^[:alnum:]]+') AS w
        WHERE w <> ''), ' & ') || CASE WHEN prefix THEN ':*' ELSE '' END);

-- Full text: events whose tsvector matches `query`, by ts_rank (weights A-D as above).
-- Callers compute the query in FROM, `FROM to_tsquery(...) AS query, search_fulltext(query)`
-- (the documentation's idiom), so that it is computed once, not once per row looked at.
CREATE FUNCTION search_fulltext(query tsquery)
    RETURNS SETOF event_hit
    LANGUAGE sql STABLE PARALLEL SAFE
AS $$
    SELECT e.event_id, e.name, e.performers, e.performer_ids, e.venue_name, e.city,
           e.starts_at_ms
    FROM events e
    WHERE e.search_tsv @@ query
    ORDER BY ts_rank(e.search_tsv, query) DESC, e.starts_at_ms
    LIMIT 20
$$;

-- Exact words (the last as a prefix for type-ahead): no typo tolerance.
CREATE FUNCTION search_tsv(q text, prefix boolean)
    RETURNS SETOF event_hit
    LANGUAGE sql STABLE PARALLEL SAFE
AS $$ SELECT s.* FROM words_tsquery(q, prefix) AS query, search_fulltext(query) AS s $$;
