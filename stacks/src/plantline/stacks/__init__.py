"""PlantLine's Pulumi stacks: the core side on Kubernetes (`core`) and the cloud ingestion on Azure (`cloud`).

`manifests` and `sizing` are pure (no Pulumi): the operator's kustomize install read as documents,
and the Event Hubs sizing rules. The stacks' Pulumi projects (`stacks/core`, `stacks/cloud`) run
`core.program.main()` and `cloud.program.main()`.
"""
