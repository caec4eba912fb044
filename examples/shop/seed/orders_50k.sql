-- 50,000 more orders (no items), to make an unindexed filter slow enough to notice:
--   flux db migrate && psql "$DATABASE_URL" -f seed/orders_50k.sql    (or: python seed/seed.py)
-- then call GET /orders?customer_email=ada@example.com a few times and run `flux db suggest`.

INSERT INTO orders (user_id, customer_email, status, total, created_at)
SELECT u.id,
       'customer' || n || '@example.com',
       (ARRAY['pending', 'paid', 'shipped', 'cancelled'])[1 + (n % 4)],
       round((5 + (n * 37) % 500)::numeric, 2),
       timestamptz '2023-01-01 00:00:00+00' + make_interval(mins => n * 13)
FROM generate_series(1, 50000) AS n
JOIN users u ON u.id = 1 + (n % 5);

ANALYZE orders;
