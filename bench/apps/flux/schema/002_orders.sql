-- The `real` scenario: an order references an item; `outbox` is where the hand-written stacks put
-- the job that Flux pushes with ctx.queue.push (they have no queue of their own).
CREATE TABLE orders (
    id bigserial PRIMARY KEY,
    item_id bigint NOT NULL REFERENCES items (id),
    quantity integer NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX orders_item_idx ON orders (item_id, id);

CREATE TABLE outbox (
    id bigserial PRIMARY KEY,
    kind text NOT NULL,
    payload jsonb NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
