# Task runner. Run targets through ./dev, which installs prerequisites and syncs the workspace first.
UV_RUN := uv run --locked --all-packages
SRC := pki/src pki/tests connectors/src connectors/tests dashboards/src dashboards/tests operator/src operator/tests historian/src historian/tests stacks/src stacks/tests bridge/src bridge/tests tests molecule

.PHONY: test check lint types layers pytest bench up

test: check pytest

check: lint types layers

# The stacks' Pulumi entry points: two modules named __main__, linted but not type-checked together.
STACK_PROGRAMS := stacks/core/__main__.py stacks/cloud/__main__.py

lint:
	$(UV_RUN) ruff check $(SRC) $(STACK_PROGRAMS)
	$(UV_RUN) ruff format --check $(SRC) $(STACK_PROGRAMS)

types:
	$(UV_RUN) mypy $(SRC)

layers:
	$(UV_RUN) lint-imports

# pytest exits 5 when it collected nothing, which fails this target (and CI) as it should.
pytest:
	$(UV_RUN) pytest

bench:
	$(UV_RUN) python tests/bench/pki_bench.py
	$(UV_RUN) python tests/bench/sparkplug_codec_bench.py
	$(UV_RUN) python tests/bench/outbox_bench.py
	$(UV_RUN) python tests/bench/kpi_bench.py
	$(UV_RUN) python tests/bench/plc_read_bench.py
	$(UV_RUN) python tests/bench/connector_pipeline_bench.py
	$(UV_RUN) python tests/bench/up_bench.py
	$(UV_RUN) python tests/bench/broker_queue_bench.py
	$(UV_RUN) python tests/bench/operator_bench.py
	$(UV_RUN) python tests/bench/node_bench.py
	$(UV_RUN) python tests/bench/dashboards_bench.py
	$(UV_RUN) python tests/bench/historian_bench.py
	$(UV_RUN) python tests/bench/emqx_bench.py
	$(UV_RUN) python tests/bench/stacks_bench.py
	$(UV_RUN) python tests/bench/bridge_bench.py

# The demo line with simulated PLCs: a local CA, mosquitto with mTLS, three simulators, the connectors.
up:
	$(UV_RUN) plantline up examples/demo-line.yaml --simulate
