-- A small, deterministic data set so every function has something to show on first run.

INSERT INTO users (email, name) VALUES
    ('ada@example.com', 'Ada Lovelace'),
    ('grace@example.com', 'Grace Hopper'),
    ('alan@example.com', 'Alan Turing'),
    ('edsger@example.com', 'Edsger Dijkstra'),
    ('barbara@example.com', 'Barbara Liskov');

INSERT INTO products (sku, name, price, stock) VALUES
    ('KB-01', 'Mechanical keyboard', 89.00, 40),
    ('MS-02', 'Wireless mouse', 24.50, 120),
    ('MN-27', '27" monitor', 279.99, 15),
    ('HD-05', 'Noise-cancelling headphones', 149.00, 30),
    ('CB-10', 'USB-C cable (2 m)', 9.99, 500),
    ('DK-03', 'Laptop dock', 119.00, 25);

-- 24 orders spread over the users, each with one to three lines.
INSERT INTO orders (user_id, customer_email, status, created_at)
SELECT u.id, u.email,
       (ARRAY['pending', 'paid', 'shipped', 'cancelled'])[1 + (n % 4)],
       timestamptz '2024-06-01 09:00:00+00' + make_interval(hours => n * 7)
FROM generate_series(1, 24) AS n
JOIN users u ON u.id = 1 + (n % 5);

INSERT INTO order_items (order_id, product_id, quantity, unit_price)
SELECT o.id, p.id, 1 + ((o.id + line) % 3), p.price
FROM orders o
CROSS JOIN generate_series(0, 2) AS line
JOIN products p ON p.id = 1 + ((o.id * 7 + line * 3) % 6)
WHERE line <= o.id % 3;

UPDATE orders o
SET total = s.total
FROM (SELECT order_id, sum(quantity * unit_price) AS total FROM order_items GROUP BY order_id) s
WHERE s.order_id = o.id;
