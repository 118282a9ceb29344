-- The running size behind --max-store-bytes, spread over 64 slot rows instead of the one
-- `pulse_store` row every write had to update (writes queued on its lock; more replicas could not
-- help). See src/store/postgres/slots.rs for the protocol; in short:
--
-- - A write adds its size to ONE slot (its connection's: pg_backend_pid() % 64), if that keeps the
--   slot within its cap; concurrent writers on other connections update other rows.
-- - The caps add up to the limit, so the slots' total stays within it whatever the mix.
-- - When a slot's cap is used up, the writer locks every slot row in slot order, checks the exact
--   total against the limit, refuses (507) or spreads the free space over the caps again.
--
-- The 64 in this file and SLOTS in slots.rs are the same number.

CREATE TABLE pulse_store_slots (
    slot   INT    PRIMARY KEY CHECK (slot >= 0 AND slot < 64),
    -- The bytes written through this slot, minus those freed through it: can be below 0 (a row
    -- written through one slot and deleted through another); only the total means anything.
    bytes  BIGINT NOT NULL,
    -- How far `bytes` may grow without looking at the other slots. NULL: not at all (never
    -- rebalanced yet, or the store is over a limit lowered since its rows were written); the
    -- writer takes the slow path, which rebalances.
    cap    BIGINT
);

-- The existing total moves to slot 0; the caps are set by the first rebalance (at start).
INSERT INTO pulse_store_slots (slot, bytes, cap)
SELECT s, CASE WHEN s = 0 THEN COALESCE((SELECT bytes FROM pulse_store WHERE id = 1), 0) ELSE 0 END, NULL
FROM generate_series(0, 63) AS s;

-- The limit the caps add up to: the --max-store-bytes of the replica that last started (or came
-- back after losing the database), written under every slot's lock. NULL until then.
CREATE TABLE pulse_store_limit (
    id         INT    PRIMARY KEY CHECK (id = 1),
    max_bytes  BIGINT
);
INSERT INTO pulse_store_limit (id, max_bytes) VALUES (1, NULL);

-- `pulse_store` stays (a release before this one, rolled back to, still finds it) but is no longer
-- kept up to date. Note on such a rollback: its total is the one of this migration's time.
COMMENT ON TABLE pulse_store IS 'Unused since migration 2 (pulse_store_slots); kept for rollbacks';
