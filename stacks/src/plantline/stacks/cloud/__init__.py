"""The cloud stack: Azure Event Hubs for the plant's cloud ingestion (`IngestionHubs`, `CloudArgs`)."""
