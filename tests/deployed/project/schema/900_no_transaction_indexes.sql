-- flux:no-transaction
-- Two statements outside a transaction (CREATE INDEX CONCURRENTLY cannot run inside one): issue #12, item 8.
CREATE INDEX CONCURRENTLY IF NOT EXISTS orders_status_created_idx ON orders (status, created_at);
CREATE INDEX CONCURRENTLY IF NOT EXISTS order_items_product_idx ON order_items (product_id);
