-- Written by send_invoice (async, from the queue) and flaky_webhook (retries demo).

CREATE TABLE IF NOT EXISTS invoices (
    id bigserial PRIMARY KEY,
    order_id bigint NOT NULL REFERENCES orders (id) ON DELETE CASCADE,
    amount numeric(12, 2) NOT NULL DEFAULT 0,
    status text NOT NULL DEFAULT 'sent',
    created_at timestamptz NOT NULL DEFAULT now(),
    -- at-least-once delivery: a repeated send_invoice must not bill twice
    CONSTRAINT invoices_order_id_key UNIQUE (order_id)
);

CREATE TABLE IF NOT EXISTS webhook_attempts (
    id bigserial PRIMARY KEY,
    webhook_id text NOT NULL,
    attempted_at timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX IF NOT EXISTS webhook_attempts_webhook_id_idx ON webhook_attempts (webhook_id);
