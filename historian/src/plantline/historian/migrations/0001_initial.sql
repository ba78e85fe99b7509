-- The historian's first schema: machines and their series, samples partitioned by day, the edge's
-- KPI snapshots, machine states and faults, rollups with their watermarks.

CREATE TABLE machines (
    id integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    group_id text NOT NULL,
    edge_node_id text NOT NULL,
    device_id text NOT NULL,
    site text NOT NULL,
    line text NOT NULL,
    counter_bits smallint NOT NULL DEFAULT 32,
    UNIQUE (group_id, edge_node_id, device_id)
);
CREATE INDEX machines_site_line ON machines (site, line, device_id);

-- One series per machine and signal (Sparkplug metric name); datatype is the Sparkplug code.
CREATE TABLE series (
    id integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    machine_id integer NOT NULL REFERENCES machines,
    signal text NOT NULL,
    datatype smallint NOT NULL,
    UNIQUE (machine_id, signal)
);

-- Every sample once: the key (series, source timestamp) makes re-deliveries and replays land once.
-- quality: 0 good, 1 uncertain, 2 bad. value holds numbers and booleans (1/0); text_value strings.
CREATE TABLE samples (
    series_id integer NOT NULL,
    ts timestamptz NOT NULL,
    value double precision,
    text_value text,
    quality smallint NOT NULL,
    PRIMARY KEY (series_id, ts)
) PARTITION BY RANGE (ts);

-- Each committed ingest batch, and per series the span of the rows it added: the rollups refresh
-- those spans only (a watermark per rollup), never the whole table.
CREATE TABLE ingest_batches (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    committed_at timestamptz NOT NULL DEFAULT now(),
    messages integer NOT NULL,
    received integer NOT NULL,
    inserted integer NOT NULL,
    oldest_ts timestamptz
);
CREATE TABLE dirty_spans (
    batch_id bigint NOT NULL,
    series_id integer NOT NULL,
    from_ts timestamptz NOT NULL,
    to_ts timestamptz NOT NULL,
    PRIMARY KEY (batch_id, series_id)
);

CREATE TABLE rollup_watermarks (
    name text PRIMARY KEY,
    batch_id bigint NOT NULL DEFAULT 0,
    refreshed_at timestamptz
);
INSERT INTO rollup_watermarks (name) VALUES ('rollup_1m'), ('rollup_5m'), ('rollup_1h'), ('kpi_minutes');

-- Rollups: count, min, max, sum (avg = sum / n), the last value and its time; for counters the
-- parts counted in the bucket (increase), read with the KPI engine's counter rules.
CREATE TABLE rollup_1m (
    series_id integer NOT NULL,
    bucket timestamptz NOT NULL,
    n integer NOT NULL,
    min double precision,
    max double precision,
    sum double precision,
    last double precision,
    last_ts timestamptz NOT NULL,
    increase bigint,
    PRIMARY KEY (series_id, bucket)
);
CREATE TABLE rollup_5m (LIKE rollup_1m INCLUDING ALL);
CREATE TABLE rollup_1h (LIKE rollup_1m INCLUDING ALL);
CREATE INDEX rollup_1m_bucket ON rollup_1m (bucket);
CREATE INDEX rollup_5m_bucket ON rollup_5m (bucket);
CREATE INDEX rollup_1h_bucket ON rollup_1h (bucket);

-- The KPI engine's accumulators per machine and minute: times in ms, parts, ideal work in us.
-- Any span of minutes adds up to the inputs of OEE = A x P x Q (plantline.connectors.kpi).
CREATE TABLE kpi_minutes (
    machine_id integer NOT NULL REFERENCES machines,
    bucket timestamptz NOT NULL,
    run_ms bigint NOT NULL,
    idle_ms bigint NOT NULL,
    blocked_ms bigint NOT NULL,
    starved_ms bigint NOT NULL,
    planned_stop_ms bigint NOT NULL,
    calendar_stop_ms bigint NOT NULL,
    unknown_ms bigint NOT NULL,
    good bigint,
    reject bigint,
    total bigint NOT NULL,
    ideal_work_us bigint NOT NULL,
    unvalued bigint NOT NULL,
    PRIMARY KEY (machine_id, bucket)
);

-- The KPIs the edge published (its kpi/* metrics), as it computed them.
CREATE TABLE kpi_snapshots (
    machine_id integer NOT NULL REFERENCES machines,
    ts timestamptz NOT NULL,
    oee double precision,
    availability double precision,
    performance double precision,
    quality double precision,
    mttr_s double precision,
    mtbf_s double precision,
    active_fault_code integer,
    -- the newest sample the edge computed this snapshot from (kpi/data_until; else the newest received before it)
    data_until timestamptz,
    PRIMARY KEY (machine_id, ts)
);

-- A machine's state from its state.* signals (run, planned_stop, blocked, starved, idle, unknown), from `ts` on.
CREATE TABLE machine_states (
    machine_id integer NOT NULL REFERENCES machines,
    ts timestamptz NOT NULL,
    state text NOT NULL,
    PRIMARY KEY (machine_id, ts)
);

-- Faults as the KPI engine's fault state machine sees them (debounced); ended_at NULL: still active.
CREATE TABLE faults (
    machine_id integer NOT NULL REFERENCES machines,
    started_at timestamptz NOT NULL,
    ended_at timestamptz,
    code integer NOT NULL,
    PRIMARY KEY (machine_id, started_at)
);
CREATE INDEX faults_active ON faults (machine_id) WHERE ended_at IS NULL;

-- Edge nodes and devices as the host sees them (births and deaths).
CREATE TABLE node_status (
    machine_id integer PRIMARY KEY REFERENCES machines,
    online boolean NOT NULL,
    changed_at timestamptz NOT NULL
);

-- A counter reading in [0, 2^bits): a signed counter's wrap becomes a rollover (CounterRules.normalise).
CREATE FUNCTION counter_normalise(raw double precision, bits integer)
RETURNS double precision LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN raw - 2.0 ^ bits * floor(raw / 2.0 ^ bits);

-- The parts a counter counted from `prev` to `cur` (both normalised), as
-- plantline.connectors.kpi.oee.CounterRules.increment reads it with its defaults: a rollover from
-- within 1/16 of the modulus to below it, a reset to at most 1000 (and under half the old value),
-- and any other drop a discontinuity that counts nothing. Tested against CounterRules itself.
CREATE FUNCTION counter_increment(prev double precision, cur double precision, bits integer)
RETURNS double precision LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN CASE
    WHEN prev IS NULL OR cur IS NULL THEN 0
    WHEN cur >= prev THEN cur - prev
    WHEN prev >= 2.0 ^ bits - 2.0 ^ bits / 16 AND cur < 2.0 ^ bits / 16 THEN 2.0 ^ bits - prev + cur
    WHEN cur <= 1000 AND 2 * cur < prev THEN cur
    ELSE 0
END;

-- Times cross the API boundary as milliseconds since the epoch.
CREATE FUNCTION ms(t timestamptz) RETURNS bigint LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN (extract(epoch FROM t) * 1000)::bigint;
CREATE FUNCTION at_ms(ms bigint) RETURNS timestamptz LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN timestamptz 'epoch' + ms * interval '1 millisecond';
