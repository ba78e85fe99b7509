"""Simulated machines for tests, benchmarks and `plantline up --simulate`.

`machine` is the pure model; `opcua_server` serves it over OPC UA with asyncua (an optional
dependency: install `plantline-connectors[opcua]`).
"""
