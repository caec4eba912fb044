-- One column per supported type, for the round-trip property test.
CREATE TABLE samples (
    id bigserial PRIMARY KEY,
    i2 smallint,
    i4 integer,
    i8 bigint,
    f8 double precision,
    num numeric,
    txt text,
    vc varchar(50),
    flag boolean,
    ts timestamptz,
    d date,
    j jsonb,
    js json,
    b bytea,
    u uuid,
    arr text[],
    iarr integer[]
);

-- A view whose rows take a second each: how the tests make a statement exceed its timeout.
CREATE VIEW slow_rows AS SELECT 1 AS id, pg_sleep(1)::text AS slept;
