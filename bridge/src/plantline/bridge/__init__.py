"""PlantLine's cloud bridge: Sparkplug B from the core broker to Kafka / Azure Event Hubs."""
