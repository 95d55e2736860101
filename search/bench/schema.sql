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

-- The query sets exactly as the Rust bench runs them. `tsq` is the same words as a
-- to_tsquery string ('a' & 'b', the last one as a prefix for type-ahead queries), built
-- the way an application would build it from user input.
CREATE TABLE bench_queries (
    kind         text NOT NULL,
    n            int NOT NULL,
    q            text NOT NULL,
    performer_id text NOT NULL,
    tsq          text,
    PRIMARY KEY (kind, n)
);
