-- Each machine's rolling-window KPIs as of its newest KPI sample, kept by the KPI refresh, so that
-- /kpi/current answers "now" with one row per machine instead of replaying each window.
CREATE TABLE kpi_current (
    machine_id integer PRIMARY KEY REFERENCES machines,
    at_ms bigint NOT NULL,     -- the newest KPI sample's source time: the window ends there
    body jsonb NOT NULL        -- kpi.current_body: the window's figures, MTTR, MTBF, faults, warnings
);
