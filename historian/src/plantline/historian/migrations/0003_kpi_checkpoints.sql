-- Each machine's KPI engine (its own configuration) every 15 s of its samples, as the KPI refresh
-- carries it from one to the next: /kpi/current at a past time restores the newest one at or
-- before it and replays only the samples after it.
CREATE TABLE kpi_checkpoints (
    machine_id integer NOT NULL REFERENCES machines,
    ts timestamptz NOT NULL,      -- the engine has taken every KPI sample before this instant, none after
    config text NOT NULL,         -- the key of the configuration it ran with (plantline.connectors.kpi.config_key)
    state bytea NOT NULL,         -- KpiEngine.checkpoint()
    PRIMARY KEY (machine_id, ts)
);
