-- Stored attributes of objects: one JSON object per object (`type:id`) of an OpenFGA store,
-- which AuthZEN evaluations merge into `subject.properties` / `resource.properties`. Deleting
-- a store deletes its attributes (in the same transaction). Times are INTEGER microseconds
-- since the Unix epoch, as since 0005.

CREATE TABLE object_attributes (
    store_id    TEXT NOT NULL REFERENCES fga_stores (id),
    object      TEXT NOT NULL CHECK (length(object) BETWEEN 3 AND 2049),
    attributes  TEXT NOT NULL CHECK (json_valid(attributes) AND json_type(attributes) = 'object'
                                     AND length(attributes) <= 16384),
    updated_at  INTEGER NOT NULL,
    PRIMARY KEY (store_id, object)
) STRICT;
