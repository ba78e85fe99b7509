"""Simulated machines for tests, benchmarks and `plantline up --simulate`.

`machine` is the pure model; `opcua_server` serves it over OPC UA with asyncua (an optional
dependency: install `plantline-connectors[opcua]`), `s7_server` over S7 with python-snap7's
server, `cip_server` over EtherNet/IP with cpppo's simulator. `hosting` is what they share: the
model's clock and updates, and their command line.
"""
