-- Related tables for embeds, arrays, JSON, full-text search, aggregates and views.
CREATE TABLE products (
    id serial PRIMARY KEY,
    name text NOT NULL,
    tags text[] NOT NULL DEFAULT '{}',
    attrs jsonb NOT NULL DEFAULT '{}',
    price numeric(10, 2) NOT NULL,
    stock integer NOT NULL DEFAULT 0
);
CREATE INDEX products_search_idx ON products USING gin (to_tsvector('english', name));

CREATE TABLE order_lines (
    id serial PRIMARY KEY,
    order_id integer NOT NULL REFERENCES orders (id) ON DELETE CASCADE,
    product_id integer NOT NULL REFERENCES products (id),
    quantity integer NOT NULL CHECK (quantity > 0)
);
CREATE INDEX order_lines_order_id_idx ON order_lines (order_id, id DESC);

-- A GROUP BY view and a materialized view over it: readable like tables, never indexed by the advisor.
CREATE VIEW product_sales AS
    SELECT p.id AS product_id, p.name, sum(l.quantity)::bigint AS units
    FROM products p JOIN order_lines l ON l.product_id = p.id
    GROUP BY p.id, p.name;
CREATE VIEW big_orders AS SELECT id, user_id, status, total FROM orders WHERE total >= 100;
CREATE MATERIALIZED VIEW product_names AS SELECT id, name FROM products;
