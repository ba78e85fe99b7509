-- The faults overlapping a span, a page at a time in start order (the KPI API's /faults/history):
-- those that started in it by their start, those still going on at its start by their end.
CREATE INDEX faults_started ON faults (started_at, machine_id);
CREATE INDEX faults_ended ON faults (ended_at);

-- ms() is STABLE, as its body (extract from a timestamptz) is: PostgreSQL then inlines it into the
-- queries that call it, instead of calling a function per row (about a third of the time per row).
-- Its results are the same.
ALTER FUNCTION ms(timestamptz) STABLE;
