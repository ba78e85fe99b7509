"""The KPI API over the historian's tables (the [api] extra: FastAPI and uvicorn)."""
