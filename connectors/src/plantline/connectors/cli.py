"""`plantline-connector`: run one connector, or check its configuration.

Exit status: 0 success (or a clean stop), 2 invalid configuration or a missing extra (the runtime,
or a device's protocol), 1 a fatal runtime error.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from plantline.connectors import extras, logs
from plantline.connectors.config import ConfigError, ConnectorConfig, load_config

EXIT_CONFIG = 2

EPILOG = """\
examples:
  plantline-connector run --config /etc/plantline/line1-filler.yaml
  plantline-connector run --config connector.yaml --check --format json

exit status: 0 stopped cleanly (SIGINT/SIGTERM) or config valid; 2 invalid config, or the runtime or a
device's protocol extra is not installed (pip install 'plantline-connectors[runtime,opcua,s7,cip]'); 1 fatal error
"""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="plantline-connector",
        description="Run a PlantLine edge connector: PLC sources -> Sparkplug B over MQTT, with a durable outbox.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser(
        "run", help="run a connector", epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    run.add_argument("--config", type=Path, required=True, help="the connector's YAML configuration")
    run.add_argument("--check", action="store_true", help="validate the configuration and exit")
    run.add_argument("--format", choices=["text", "json"], default="text", help="output of --check")
    run.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    return parser


async def _run(config: ConnectorConfig) -> None:
    from plantline.connectors.runtime import Connector  # noqa: PLC0415 -- needs the runtime extra; --check does not

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    await Connector(config).run(stop)


def main(argv: Sequence[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    if args.check:
        try:
            config = load_config(args.config)
        except ConfigError as exc:
            if args.format == "json":
                print(json.dumps({"valid": False, "file": exc.source, "problems": exc.problems}, indent=2))
            for problem in exc.problems:
                print(f"{exc.source}: {problem}", file=sys.stderr)
            sys.exit(EXIT_CONFIG)
        devices = [d.id for d in config.devices]
        tags = sum(len(d.tags) for d in config.devices)
        summary = {
            "valid": True,
            "file": str(args.config),
            "edge_node": f"{config.sparkplug.group_id}/{config.sparkplug.edge_node_id}",
            "devices": devices,
            "tags": tags,
        }
        if args.format == "json":
            print(json.dumps(summary, indent=2))
        else:
            print(f"{args.config}: valid ({len(devices)} devices, {tags} tags)")
        return
    logs.configure(args.log_level)
    log = logging.getLogger("plantline.connectors")
    try:
        config = load_config(args.config)
        extras.require_connector(device.protocol for device in config.devices)
    except ConfigError as exc:
        for problem in exc.problems:
            log.error("%s: %s", exc.source, problem)
        sys.exit(EXIT_CONFIG)
    except extras.MissingExtra as exc:
        log.error("%s: %s", args.config, exc)
        sys.exit(EXIT_CONFIG)
    asyncio.run(_run(config))


if __name__ == "__main__":
    main()
