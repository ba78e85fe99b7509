"""The core stack: PlantLine's core side in one Kubernetes cluster (`PlantLineCore`, `CoreArgs`)."""
