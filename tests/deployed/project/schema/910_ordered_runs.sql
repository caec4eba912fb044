-- Written by the deployed tier's ordered_step (FIFO per account): one row per attempt, in the order they ran.
CREATE TABLE IF NOT EXISTS ordered_runs (
    id bigserial PRIMARY KEY,
    account text NOT NULL,
    seq integer NOT NULL,
    attempt integer NOT NULL,
    job_id text NOT NULL,
    ran_at timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX IF NOT EXISTS ordered_runs_account_idx ON ordered_runs (account, id);
