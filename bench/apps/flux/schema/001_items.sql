-- The one table every stack of the benchmark reads and writes, with 10,000 seed rows
-- in 50 categories (200 rows each), so a filtered select always finds more than 20.
CREATE TABLE items (
    id bigserial PRIMARY KEY,
    name text NOT NULL,
    category text NOT NULL,
    price numeric(10, 2) NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX items_category_idx ON items (category);

INSERT INTO items (name, category, price)
SELECT 'item ' || g, 'c' || (g % 50), ((g % 1000) + 1) / 10.0
FROM generate_series(1, 10000) AS g;
