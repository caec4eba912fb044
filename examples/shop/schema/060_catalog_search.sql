-- Product search and the sales report.
--
-- search_products filters on a full-text document (name and description, English stemming) OR on
-- tags; sales_report reads product_sales, a GROUP BY view the engine reads like a table. The
-- (product_id, id DESC) index serves "latest lines of a product".

ALTER TABLE products ADD COLUMN description text NOT NULL DEFAULT '';
ALTER TABLE products ADD COLUMN tags text[] NOT NULL DEFAULT '{}';
ALTER TABLE products ADD COLUMN search tsvector
    GENERATED ALWAYS AS (to_tsvector('english', name || ' ' || description)) STORED;
CREATE INDEX products_search_idx ON products USING gin (search);
CREATE INDEX products_tags_idx ON products USING gin (tags);

UPDATE products SET description = d.description, tags = d.tags
FROM (VALUES
    ('KB-01', 'Tactile switches, aluminium frame, USB-C', ARRAY['input', 'desk']),
    ('MS-02', 'Quiet clicks, two-month battery', ARRAY['input', 'wireless']),
    ('MN-27', '4K panel with a height-adjustable stand', ARRAY['display', 'desk']),
    ('HD-05', 'Over-ear headphones with active noise cancelling', ARRAY['audio', 'wireless']),
    ('CB-10', 'Braided cable, charges laptops at 100 W', ARRAY['cables']),
    ('DK-03', 'One cable to a monitor, keyboard and network', ARRAY['desk', 'cables'])
) AS d (sku, description, tags)
WHERE products.sku = d.sku;

CREATE INDEX order_items_product_id_idx ON order_items (product_id, id DESC);

CREATE VIEW product_sales AS
    SELECT p.id AS product_id, p.sku, p.name, count(DISTINCT i.order_id)::bigint AS orders,
           sum(i.quantity)::bigint AS units, sum(i.quantity * i.unit_price) AS revenue
    FROM products p
    JOIN order_items i ON i.product_id = p.id
    JOIN orders o ON o.id = i.order_id AND o.status <> 'cancelled'
    GROUP BY p.id, p.sku, p.name;
