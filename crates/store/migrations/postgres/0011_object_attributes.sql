-- Stored attributes of objects: one JSON object per object (`type:id`) of an OpenFGA store,
-- which AuthZEN evaluations merge into `subject.properties` / `resource.properties`. Deleting
-- a store deletes its attributes (in the same transaction).

CREATE TABLE object_attributes (
    store_id    TEXT COLLATE "C" NOT NULL REFERENCES fga_stores (id),
    object      TEXT COLLATE "C" NOT NULL CHECK (length(object) BETWEEN 3 AND 2049),
    attributes  JSONB NOT NULL CHECK (jsonb_typeof(attributes) = 'object'),
    updated_at  TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (store_id, object)
);
