-- Side check for bench/RESULTS.md ("Import (issue 6)", tried and not kept): the cost of
-- 300,000 inserts with two single-column trigram GIN indexes against one two-column one,
-- alternated (two, two-column, two-column, two). Run in a scratch database:
--   createdb -h 127.0.0.1 -U postgres scratch_trgm
--   psql -h 127.0.0.1 -U postgres -d scratch_trgm -f bench/trigram_indexes.sql
-- The four INSERT timings are the figures.
\timing on
DROP TABLE IF EXISTS t1, t2;
CREATE EXTENSION IF NOT EXISTS pg_trgm;
CREATE TABLE t1 (id bigserial primary key, email text unique, name text);
CREATE INDEX t1_e ON t1 USING gin (email gin_trgm_ops);
CREATE INDEX t1_n ON t1 USING gin (name gin_trgm_ops);
CREATE TABLE t2 (id bigserial primary key, email text unique, name text);
CREATE INDEX t2_en ON t2 USING gin (email gin_trgm_ops, name gin_trgm_ops);
INSERT INTO t1 (email, name) SELECT 'user' || g || '.' || md5(g::text) || '@domain' || (g % 5000) || '.example', 'Jörg Name' || (g % 977) || ' Smith' FROM generate_series(1, 300000) g;
INSERT INTO t2 (email, name) SELECT 'user' || g || '.' || md5(g::text) || '@domain' || (g % 5000) || '.example', 'Jörg Name' || (g % 977) || ' Smith' FROM generate_series(1, 300000) g;
DROP TABLE t1; DROP TABLE t2;
CREATE TABLE t2 (id bigserial primary key, email text unique, name text);
CREATE INDEX t2_en ON t2 USING gin (email gin_trgm_ops, name gin_trgm_ops);
CREATE TABLE t1 (id bigserial primary key, email text unique, name text);
CREATE INDEX t1_e ON t1 USING gin (email gin_trgm_ops);
CREATE INDEX t1_n ON t1 USING gin (name gin_trgm_ops);
INSERT INTO t2 (email, name) SELECT 'user' || g || '.' || md5(g::text) || '@domain' || (g % 5000) || '.example', 'Jörg Name' || (g % 977) || ' Smith' FROM generate_series(1, 300000) g;
INSERT INTO t1 (email, name) SELECT 'user' || g || '.' || md5(g::text) || '@domain' || (g % 5000) || '.example', 'Jörg Name' || (g % 977) || ' Smith' FROM generate_series(1, 300000) g;
