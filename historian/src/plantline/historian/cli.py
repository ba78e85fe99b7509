"""plantline-historian: `run` the Sparkplug host into PostgreSQL, `migrate` the schema, serve the KPI `api`.

Exit codes: 0 stopped cleanly, 1 a runtime failure, 2 bad configuration or usage.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from pathlib import Path

from plantline.connectors.config import ConfigError
from plantline.historian.config import HistorianConfig, load_config


def _config(path: Path) -> HistorianConfig | None:
    try:
        return load_config(path)
    except ConfigError as exc:
        print(f"plantline-historian: {exc}", file=sys.stderr)
        return None


def _run(config: HistorianConfig) -> int:
    from plantline.historian.service import Historian  # noqa: PLC0415 -- psycopg and paho only for `run`

    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    Historian(config).run(stop)
    return 0


def _migrate(config: HistorianConfig) -> int:
    from plantline.historian.schema import migrate  # noqa: PLC0415
    from plantline.historian.store import connect  # noqa: PLC0415

    with connect(config.database.conninfo()) as conn:
        applied = migrate(conn)
    print(f"applied: {applied or 'nothing (up to date)'}", file=sys.stderr)
    return 0


def _api(config: HistorianConfig, path: Path) -> int:
    from plantline.historian.api.server import serve  # noqa: PLC0415 -- the [api] extra

    serve(config, path)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="plantline-historian", description=__doc__)
    parser.add_argument("command", choices=("run", "migrate", "api"))
    parser.add_argument("--config", type=Path, required=True, help="the historian's YAML configuration")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    config = _config(args.config)
    if config is None:
        return 2
    commands = {"run": _run, "migrate": _migrate}
    try:
        if args.command == "api":
            return _api(config, args.config)
        return commands[args.command](config)
    except Exception as exc:  # noqa: BLE001 -- the last word of the process: say why, exit 1
        logging.getLogger("plantline.historian").error("%s failed: %s", args.command, exc)
        return 1


if __name__ == "__main__":
    sys.exit(main())
