"""PlantLine edge connectors: sources -> signals -> Sparkplug B -> durable outbox -> MQTT."""
