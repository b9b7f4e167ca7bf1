-- Version 5 converts SQLite's remaining TEXT times to INTEGER microseconds; PostgreSQL has
-- stored TIMESTAMPTZ from the start. Nothing changes here: the version exists so that both
-- backends report the same schema version (Health::expected_version).
SELECT 1;
