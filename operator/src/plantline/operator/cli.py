"""The `plantline` command: validate a PlantLine, print its CRD, render its files, run it locally.

Exit codes: 0 success; 1 unreadable input or refused write; 2 invalid PlantLine.
Human messages go to stderr, data to stdout.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from plantline.operator.api import PlantLine, PlantLineInvalid, Problem, parse_plantline
from plantline.operator.crd import crd_yaml
from plantline.operator.render import (
    BrokerFiles,
    connector_config_data,
    render_acl,
    render_certificate_requests,
    render_connector_configs,
    render_mosquitto_conf,
)

EXIT_OK = 0
EXIT_UNREADABLE = 1
EXIT_INVALID = 2

EPILOG = """examples:
  plantline validate examples/demo-line.yaml
  plantline validate --format json line.yaml
  plantline crd > operator/crds/plantline.dev_plantlines.yaml
  plantline render examples/demo-line.yaml --out build/line1
  plantline up examples/demo-line.yaml --simulate

exit codes: 0 ok (up: stopped cleanly), 1 unreadable input, refused overwrite or up failed, 2 invalid PlantLine"""

UP_HELP = """Run the line on this machine: a CA and TLS files, a real mosquitto with mutual TLS, the
connectors as supervised processes (and, with --simulate, a simulated PLC per machine on the port its
endpoint names). Ctrl-C stops the connectors (NDEATH), the simulators, then the broker.

The state directory (default .plantline/<site>-<line>, 0700) persists the CA, TLS files, outboxes
and bdSeq; a second `up` reuses them. The CA key is encrypted with $PLANTLINE_PKI_PASSPHRASE or,
when unset, a passphrase generated into <state-dir>/pki-passphrase (0600): a local demo CA, not a
production one. OPC UA application certificates (secured machines) are not issued: they need an RSA CA."""


class Unreadable(Exception):
    """The input file cannot be read or is not YAML."""


def _load(path: Path) -> Any:
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise Unreadable(f"{path}: cannot read: {exc.strerror}") from None
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise Unreadable(f"{path}: not valid YAML: {exc}") from None


def _report_invalid(path: Path, problems: list[Problem], fmt: str) -> int:
    if fmt == "json":
        data = {"file": str(path), "valid": False, "errors": [{"path": p.path, "message": p.message} for p in problems]}
        print(json.dumps(data, indent=2))
    for problem in problems:
        print(f"{path}: {problem}", file=sys.stderr)
    return EXIT_INVALID


def _parse(path: Path) -> PlantLine:
    return parse_plantline(_load(path))


def cmd_validate(args: argparse.Namespace) -> int:
    try:
        line = _parse(args.file)
    except PlantLineInvalid as exc:
        return _report_invalid(args.file, exc.problems, args.format)
    if args.format == "json":
        print(json.dumps({"file": str(args.file), "valid": True, "errors": []}, indent=2))
    print(f"{args.file}: valid PlantLine {line.metadata.name} ({len(line.spec.machines)} machines)", file=sys.stderr)
    return EXIT_OK


def cmd_crd(_args: argparse.Namespace) -> int:
    sys.stdout.write(crd_yaml())
    return EXIT_OK


def rendered_files(line: PlantLine, *, tls_dir: Path, data_dir: Path, metrics_base_port: int) -> dict[str, str]:
    """Return every rendered data file of the line by its path relative to the output directory."""
    files: dict[str, str] = {}
    configs = render_connector_configs(line, tls_dir=tls_dir, data_dir=data_dir, metrics_base_port=metrics_base_port)
    for group, config in configs.items():
        files[f"connectors/{group}.yaml"] = yaml.safe_dump(connector_config_data(config), sort_keys=False)
    broker = BrokerFiles.under(line.spec, tls_dir=tls_dir, broker_dir=data_dir / "broker")
    files["mosquitto/mosquitto.conf"] = render_mosquitto_conf(line, files=broker)
    files["mosquitto/acl"] = render_acl(line)
    plan = {"certificates": [r.to_json() for r in render_certificate_requests(line)]}
    files["certificates.json"] = json.dumps(plan, indent=2) + "\n"
    return files


def cmd_render(args: argparse.Namespace) -> int:
    try:
        line = _parse(args.file)
    except PlantLineInvalid as exc:
        return _report_invalid(args.file, exc.problems, "text")
    files = rendered_files(line, tls_dir=args.tls_dir, data_dir=args.data_dir, metrics_base_port=args.metrics_base_port)
    existing = [name for name in files if (args.out / name).exists()]
    if existing and not args.force:
        print(f"{args.out}: would overwrite {', '.join(existing)}; pass --force to replace them", file=sys.stderr)
        return EXIT_UNREADABLE
    for name, text in files.items():
        target = args.out / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
        print(target)
    print(f"rendered {len(files)} files into {args.out}", file=sys.stderr)
    return EXIT_OK


def cmd_up(args: argparse.Namespace) -> int:
    from plantline.operator.local import run_up  # noqa: PLC0415 - the applier is loaded only for `up`

    try:
        line = _parse(args.file)
    except PlantLineInvalid as exc:
        return _report_invalid(args.file, exc.problems, "text")
    return run_up(line, state_dir=args.state_dir, simulate=args.simulate, metrics_base_port=args.metrics_base_port)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="plantline", description=__doc__, epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)

    validate = commands.add_parser("validate", help="check a PlantLine file and print every error with its path")
    validate.add_argument("file", type=Path)
    validate.add_argument("--format", choices=("text", "json"), default="text")
    validate.set_defaults(run=cmd_validate)

    crd = commands.add_parser("crd", help="print the PlantLine CustomResourceDefinition YAML")
    crd.set_defaults(run=cmd_crd)

    render = commands.add_parser("render", help="write connector configs, mosquitto.conf, acl and a certificate plan")
    render.add_argument("file", type=Path)
    render.add_argument("--out", type=Path, required=True, help="output directory")
    render.add_argument("--force", action="store_true", help="replace files that exist")
    render.add_argument("--tls-dir", type=Path, default=Path("/etc/plantline/tls"), help="TLS files on the node")
    render.add_argument("--data-dir", type=Path, default=Path("/var/lib/plantline"), help="outboxes, state, broker")
    render.add_argument("--metrics-base-port", type=int, default=9400)
    render.set_defaults(run=cmd_render)

    up = commands.add_parser(
        "up", help="run the line locally: CA, mosquitto (mTLS), connectors", description=UP_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    up.add_argument("file", type=Path)
    up.add_argument("--simulate", action="store_true", help="start a simulated PLC for every machine")
    up.add_argument("--state-dir", type=Path, default=None, help="default: .plantline/<site>-<line>")
    up.add_argument("--metrics-base-port", type=int, default=9400, help="connectors' /metrics ports count up from it")
    up.set_defaults(run=cmd_up)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        status: int = args.run(args)
    except Unreadable as exc:
        print(exc, file=sys.stderr)
        return EXIT_UNREADABLE
    return status


if __name__ == "__main__":
    sys.exit(main())
