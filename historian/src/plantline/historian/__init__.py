"""The historian: a Sparkplug B host application into PostgreSQL, and the KPI API over it."""
