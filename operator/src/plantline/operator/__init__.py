"""The PlantLine operator: the API model, its CRD, and the pure renderers."""
