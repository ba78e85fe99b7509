"""plantline-bridge: `run` the bridge from the core broker to Kafka, `check` that Kafka takes it.

Exit codes: 0 stopped cleanly, 1 Kafka refused the bridge or a runtime failure (the reason is
logged, naming the endpoint), 2 bad configuration or usage.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from pathlib import Path

from plantline.bridge.config import BridgeConfig, load_config
from plantline.connectors.config import ConfigError

log = logging.getLogger("plantline.bridge")


def _config(path: Path) -> BridgeConfig | None:
    try:
        return load_config(path)
    except ConfigError as exc:
        print(f"plantline-bridge: {exc}", file=sys.stderr)
        return None


def _run(config: BridgeConfig) -> int:
    from plantline.bridge.service import Bridge  # noqa: PLC0415 -- confluent-kafka and paho only for `run`

    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    return 0 if Bridge(config).run(stop) is None else 1


def _check(config: BridgeConfig) -> int:
    from plantline.bridge.kafka import KafkaLink  # noqa: PLC0415

    topics = sorted(set(config.topics.values()) | {config.kafka.dlq_topic})
    KafkaLink(config.kafka).check(topics, 15.0)
    print(f"Kafka at {config.kafka.endpoint} accepts the bridge; topics {', '.join(topics)} exist", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="plantline-bridge", description=__doc__)
    parser.add_argument("command", choices=("run", "check"))
    parser.add_argument("--config", type=Path, required=True, help="the bridge's YAML configuration")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    config = _config(args.config)
    if config is None:
        return 2
    try:
        return _run(config) if args.command == "run" else _check(config)
    except Exception as exc:  # noqa: BLE001 -- the last word of the process: say why, exit 1
        log.error("%s failed: %s", args.command, exc)
        return 1


if __name__ == "__main__":
    sys.exit(main())
