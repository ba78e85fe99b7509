"""The `plantline` command: validate a PlantLine, print its CRD, render its files and dashboards, run it locally.

Exit codes: 0 success; 1 unreadable input, refused write or `up` failed; 2 invalid PlantLine, or an
extra the command needs is not installed; 3 (`status`, `reload`) no `plantline up` runs on the state
directory. Human messages go to stderr, data to stdout.

The base install runs `validate`, `crd`, `render` and `dashboards`; `up`, `status`, `reload` and `down` need the
`local` extra (`up --simulate` with an EtherNet/IP machine `simulate`), `operator run` needs `kube`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from plantline.connectors.config import DEFAULT_METRICS_PORT
from plantline.connectors.extras import MissingExtra
from plantline.dashboards import render_files
from plantline.operator import extras
from plantline.operator.api import PlantLine, PlantLineInvalid, Problem, parse_plantline
from plantline.operator.cloud import HEALTH_PORT as BRIDGE_HEALTH_PORT
from plantline.operator.cloud import CloudTargetInvalid, parse_cloud_url
from plantline.operator.crd import crd_yaml
from plantline.operator.historian import API_PORT
from plantline.operator.reference import reference_markdown
from plantline.operator.render import (
    BrokerFiles,
    connector_config_data,
    line_view,
    render_acl,
    render_certificate_requests,
    render_connector_configs,
    render_mosquitto_conf,
    render_opcua_server_certificates,
)

if TYPE_CHECKING:
    from plantline.operator.local import Layout

EXIT_OK = 0
EXIT_UNREADABLE = 1
EXIT_FAILED = 1  # up or reload failed
EXIT_INVALID = 2
EXIT_SETUP = 2  # an extra the command needs is not installed
EXIT_NOT_RUNNING = 3

EPILOG = """examples:
  plantline validate examples/demo-line.yaml
  plantline validate --format json line.yaml
  plantline crd > operator/crds/plantline.dev_plantlines.yaml
  plantline api-reference > docs/plantline-api-reference.md
  plantline render examples/demo-line.yaml --out build/line1
  plantline dashboards examples/demo-line.yaml --out build/monitoring
  plantline up examples/demo-line.yaml --simulate --monitoring
  plantline up examples/demo-line.yaml --simulate
  plantline up examples/demo-line.yaml --simulate --detach
  plantline up examples/demo-line.yaml --simulate --cloud 'kafka://bridge@127.0.0.1:9093?password_file=pw&ca=ca.pem'
  plantline status examples/demo-line.yaml --format json
  plantline reload examples/demo-line.yaml
  plantline down examples/demo-line.yaml
  plantline operator run --connector-image registry.example/plantline-connectors:0.1.0
  plantline broker plan examples/demo-line.yaml --emqx http://emqx:18083 --credentials api-key.txt

exit codes: 0 ok (up: stopped cleanly), 1 unreadable input, refused overwrite, up or reload failed, 2 invalid
PlantLine or a missing extra, 3 no `plantline up` runs on the state directory (status, reload)

extras: the base install runs validate, crd and render; up, status, reload and down need
pip install 'plantline-operator[local]' ('plantline-operator[simulate]' for up --simulate with an
EtherNet/IP machine); operator run needs 'plantline-operator[kube]', broker plan 'plantline-operator[emqx]'"""

UP_HELP = """Run the line on this machine: a CA and TLS files, a real mosquitto with mutual TLS, the
connectors as supervised processes (and, with --simulate, a simulated PLC per machine on the port its
endpoint names). Where PostgreSQL is installed, also a PostgreSQL cluster in <state-dir>/postgres,
the historian (the line's Sparkplug host, identity <site>-<line>-host) and its KPI API on --api-port,
with the bearer token in <state-dir>/historian/api-token. Ctrl-C stops the connectors (NDEATH), the
historian and its API, the simulators, the broker, then PostgreSQL.

With --cloud URL, the cloud bridge (plantline-bridge, docs/bridge.md) runs too: a Sparkplug host with
the host identity that produces every sample to that Kafka (or Azure Event Hubs), one topic per
machine's equipmentType (<prefix>.<type>), with its /metrics on --bridge-port. Its configuration is
<state-dir>/bridge/bridge.yaml; passwords are read from password_file, never from the URL.

The state directory (default .plantline/<site>-<line>, 0700) persists the CA, TLS files, outboxes
and bdSeq; a second `up` reuses them. The CA key is encrypted with $PLANTLINE_PKI_PASSPHRASE or,
when unset, a passphrase generated into <state-dir>/pki-passphrase (0600): a local demo CA, not a
production one. OPC UA application certificates (secured machines) are not issued: they need an RSA CA.

With --detach, `up` runs in the background (log: <state-dir>/logs/up.log) and this command returns
once the line runs; `plantline status`, `reload` and `down` then act on it. SIGHUP (`plantline reload`)
republishes the CA's CRL and trust bundle to the broker, e.g. after `plantline-pki cert revoke`;
`plantline reload` returns once that is done (the broker listens again if it had to restart)."""


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


def cmd_api_reference(_args: argparse.Namespace) -> int:
    sys.stdout.write(reference_markdown())
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
    # OPC UA server certificates trusted as they are, for the TLS directory next to the connectors' files.
    for name, pem in render_opcua_server_certificates(line).items():
        files[f"opcua/{name}"] = pem
    return files


def cmd_render(args: argparse.Namespace) -> int:
    try:
        line = _parse(args.file)
    except PlantLineInvalid as exc:
        return _report_invalid(args.file, exc.problems, "text")
    files = rendered_files(line, tls_dir=args.tls_dir, data_dir=args.data_dir, metrics_base_port=args.metrics_base_port)
    return _write_files(files, args)


def cmd_dashboards(args: argparse.Namespace) -> int:
    try:
        line = _parse(args.file)
    except PlantLineInvalid as exc:
        return _report_invalid(args.file, exc.problems, "text")
    view = line_view(line, runbook_base=args.runbook_base, cloud_bridge=args.cloud_bridge)
    return _write_files(render_files(view), args)


def _write_files(files: dict[str, str], args: argparse.Namespace) -> int:
    """Write `files` under `args.out`, refusing to replace any unless `args.force`."""
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
    try:
        line = _parse(args.file)
    except PlantLineInvalid as exc:
        return _report_invalid(args.file, exc.problems, "text")
    extras.require_up((m.protocol for m in line.spec.machines), simulate=args.simulate)
    from plantline.operator import local  # noqa: PLC0415 - the applier needs the local extra
    from plantline.operator.monitoring import Monitoring, MonitoringUnavailable, find_exporter  # noqa: PLC0415

    cloud = None
    if args.cloud is not None:
        try:
            cloud = parse_cloud_url(args.cloud)
        except CloudTargetInvalid as exc:
            print(f"--cloud: {exc}", file=sys.stderr)
            return EXIT_UNREADABLE
    monitoring = None
    if args.monitoring:
        try:
            monitoring = Monitoring(args.prometheus_port, find_exporter(args.broker_exporter))
        except MonitoringUnavailable as exc:
            local.say(f"error: {exc}")
            return EXIT_UNREADABLE
    if not args.detach:
        return local.run_up(
            line,
            state_dir=args.state_dir,
            simulate=args.simulate,
            metrics_base_port=args.metrics_base_port,
            api_port=args.api_port,
            monitoring=monitoring,
            cloud=cloud,
            bridge_port=args.bridge_port,
        )
    layout = local.Layout(args.state_dir if args.state_dir is not None else local.default_state_dir(line))
    if local.running_pid(layout) is not None:
        print(f"{layout.root}: a `plantline up` already runs here; see `plantline status`", file=sys.stderr)
        return EXIT_UNREADABLE
    argv = [sys.executable, "-m", "plantline.operator.cli", "up", str(args.file.resolve())]
    argv += ["--state-dir", str(layout.root.resolve()), "--metrics-base-port", str(args.metrics_base_port)]
    argv += ["--api-port", str(args.api_port)]
    argv += ["--simulate"] if args.simulate else []
    argv += ["--cloud", args.cloud, "--bridge-port", str(args.bridge_port)] if cloud is not None else []
    if monitoring is not None:
        argv += ["--monitoring", "--prometheus-port", str(monitoring.prometheus_port)]
        argv += ["--broker-exporter", monitoring.exporter] if monitoring.exporter else []
    try:
        local.detach(argv, layout)
    except local.UpError as exc:
        local.say(f"error: {exc}")
        return EXIT_UNREADABLE
    local.announce(line, layout, monitoring, api_port=args.api_port)
    return EXIT_OK


def _layout(args: argparse.Namespace) -> Layout:
    extras.require("local", "this command")
    from plantline.operator import local  # noqa: PLC0415 - the applier needs the local extra

    if args.state_dir is not None:
        return local.Layout(args.state_dir)
    if args.file is None:
        raise Unreadable("give the PlantLine file or --state-dir")
    try:
        line = _parse(args.file)
    except PlantLineInvalid as exc:
        problems = len(exc.problems)
        raise Unreadable(f"{args.file}: not a valid PlantLine ({problems} problems); run plantline validate") from None
    return local.Layout(local.default_state_dir(line))


def cmd_status(args: argparse.Namespace) -> int:
    layout = _layout(args)  # first: it names the local extra when it is missing
    from plantline.operator import local  # noqa: PLC0415

    snapshot = local.read_status(layout)
    if snapshot is None:
        if args.format == "json":
            print(json.dumps({"state_dir": str(layout.root.resolve()), "running": False}, indent=2))
        print(f"{layout.root}: no `plantline up` runs here", file=sys.stderr)
        return EXIT_NOT_RUNNING
    if args.format == "json":
        print(json.dumps({"running": True, **snapshot}, indent=2))
    else:
        sys.stdout.write(local.format_status(snapshot))
    return EXIT_OK


def cmd_reload(args: argparse.Namespace) -> int:
    layout = _layout(args)  # first: it names the local extra when it is missing
    from plantline.operator import local  # noqa: PLC0415

    try:
        outcome = local.reload(layout, timeout=args.timeout)
    except local.UpError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    if outcome is None:
        print(f"{layout.root}: no `plantline up` runs here", file=sys.stderr)
        return EXIT_NOT_RUNNING
    if args.format == "json":
        print(json.dumps(outcome, indent=2))
    else:
        print(outcome["message"], file=sys.stderr)
    return EXIT_OK if outcome["ok"] else EXIT_FAILED


def cmd_down(args: argparse.Namespace) -> int:
    layout = _layout(args)  # first: it names the local extra when it is missing
    from plantline.operator import local  # noqa: PLC0415

    if not local.down(layout, timeout=args.timeout):
        print(f"{layout.root}: no `plantline up` runs here; nothing to stop", file=sys.stderr)
        return EXIT_OK
    print(f"{layout.root}: stopped", file=sys.stderr)
    return EXIT_OK


CONNECTOR_IMAGE_ENV = "PLANTLINE_CONNECTOR_IMAGE"
BRIDGE_IMAGE_ENV = "PLANTLINE_BRIDGE_IMAGE"

OPERATOR_HELP = """Run the PlantLine operator against the cluster of the current kubeconfig (or, inside a pod, its
ServiceAccount): it reconciles every PlantLine into certificate Secrets, a ConfigMap, connector
Deployments with their outbox volumes and a NetworkPolicy, renews certificates, and revokes them
when a line is deleted. The operator's CA lives in the Secret --ca-secret (created on first start when absent). Stop it
with Ctrl-C or SIGTERM."""


def cmd_operator_run(args: argparse.Namespace) -> int:
    extras.require("kube", "this command")
    import kopf  # noqa: PLC0415 - only this command needs Kopf (the kube extra)

    from plantline.operator.handlers import Options, register  # noqa: PLC0415
    from plantline.operator.model import ConnectorSettings  # noqa: PLC0415

    namespace, _, name = args.ca_secret.rpartition("/")
    if not namespace or not name:
        print(f"--ca-secret: expected NAMESPACE/NAME, got {args.ca_secret!r}", file=sys.stderr)
        return EXIT_INVALID
    emqx_namespace, _, emqx_name = args.emqx_credentials_secret.rpartition("/")
    if not emqx_namespace or not emqx_name:
        print(
            f"--emqx-credentials-secret: expected NAMESPACE/NAME, got {args.emqx_credentials_secret!r}", file=sys.stderr
        )
        return EXIT_INVALID
    if args.resync_seconds <= 0:
        print(f"--resync-seconds: expected a positive number, got {args.resync_seconds}", file=sys.stderr)
        return EXIT_INVALID
    metrics, crl = None, None
    if args.crl_url is not None:
        from plantline.pki.errors import InvalidInput  # noqa: PLC0415
        from plantline.pki.x509build import check_crl_url  # noqa: PLC0415

        try:
            check_crl_url(args.crl_url, field="--crl-url")
        except InvalidInput as exc:
            print(exc, file=sys.stderr)
            return EXIT_INVALID
        if args.metrics is None:
            print("--crl-url: the CRL is served on the --metrics port (/crl.der); give --metrics", file=sys.stderr)
            return EXIT_INVALID
    if args.metrics is not None:
        from plantline.operator.telemetry import CrlPublisher, OperatorMetrics, serve  # noqa: PLC0415

        address, _, port = args.metrics.rpartition(":")
        if not port.isdigit():
            print(f"--metrics: expected ADDRESS:PORT, got {args.metrics!r}", file=sys.stderr)
            return EXIT_INVALID
        metrics = OperatorMetrics.create()
        crl = CrlPublisher() if args.crl_url is not None else None
        serve(metrics.registry, address or "0.0.0.0", int(port), crl=crl)  # noqa: S104 - the operator's pod address
    options = Options(
        connector=ConnectorSettings(
            image=args.connector_image, storage_class=args.storage_class, bridge_image=args.bridge_image
        ),
        ca_namespace=namespace,
        ca_secret=name,
        resync_seconds=args.resync_seconds,
        metrics=metrics,
        emqx_url=args.emqx,
        emqx_secret=(emqx_namespace, emqx_name),
        emqx_listener=args.emqx_listener,
        crl_url=args.crl_url,
        crl=crl,
    )
    if args.kubeconfig is not None:  # read by Kopf's login and by the operator's own client
        os.environ["KUBECONFIG"] = str(args.kubeconfig)
    registry = kopf.OperatorRegistry()
    register(registry, options)
    scope = "every namespace" if not args.namespace else ", ".join(args.namespace)
    print(f"plantline operator: watching PlantLines in {scope}; CA in Secret {args.ca_secret}", file=sys.stderr)
    kopf.run(
        registry=registry,
        standalone=True,
        clusterwide=not args.namespace,
        namespaces=args.namespace or (),
        liveness_endpoint=args.liveness,
    )
    return EXIT_OK


BROKER_PLAN_HELP = """Print what the operator would create, change and delete in EMQX for this line: the
authorization rules of its identities, its default deny, its bridge connector and actions, and the
cluster settings it needs. A dry run: it only reads EMQX (REST API v5).

The API key and secret come from --credentials FILE (one line KEY:SECRET, as EMQX's
api_key.bootstrap_file holds them) or $PLANTLINE_EMQX_API_KEY and $PLANTLINE_EMQX_API_SECRET; they are
never printed. Objects are named after the line's namespace (--namespace, else metadata.namespace,
else `default`) and name. Exit 0: the plan is printed (empty when EMQX matches the line); 1: EMQX was
unreachable, refused the key or a request; 2: an invalid PlantLine or missing credentials."""


def _credentials(args: argparse.Namespace) -> Any:
    from plantline.operator.emqx import Credentials  # noqa: PLC0415 - the emqx extra

    if args.credentials is not None:
        try:
            return Credentials.from_file(args.credentials)
        except OSError as exc:
            raise Unreadable(f"{args.credentials}: cannot read: {exc.strerror}") from None
    key, secret = os.environ.get("PLANTLINE_EMQX_API_KEY"), os.environ.get("PLANTLINE_EMQX_API_SECRET")
    if not key or not secret:
        return None
    return Credentials(key, secret)


def cmd_broker_plan(args: argparse.Namespace) -> int:
    extras.require("emqx", "this command")
    import asyncio  # noqa: PLC0415

    from plantline.operator.emqx import EmqxClient, reconcile_line  # noqa: PLC0415
    from plantline.operator.emqx_model import BrokerError, LineRef  # noqa: PLC0415

    try:
        line = _parse(args.file)
        credentials = _credentials(args)
    except PlantLineInvalid as exc:
        return _report_invalid(args.file, exc.problems, "text")
    except ValueError as exc:
        print(f"--credentials: {exc}", file=sys.stderr)
        return EXIT_INVALID
    if credentials is None:
        print("no EMQX API key: give --credentials FILE or $PLANTLINE_EMQX_API_KEY and _SECRET", file=sys.stderr)
        return EXIT_INVALID
    ref = LineRef(args.namespace or line.metadata.namespace or "default", line.metadata.name)

    async def run() -> Any:
        async with EmqxClient(args.emqx, credentials) as client:
            return await reconcile_line(client, line, ref, None, dry_run=True)

    try:
        result = asyncio.run(run())
    except BrokerError as exc:
        print(f"{args.emqx}: {exc.reason}: {exc}", file=sys.stderr)
        return EXIT_FAILED
    if args.format == "json":
        data = {"line": f"{ref.namespace}/{ref.name}", "emqx": args.emqx, "requests": result.requests}
        print(json.dumps({**data, "changes": [c.to_json() for c in result.changes]}, indent=2))
    else:
        for change in result.changes:
            print(f"{change.operation:<7} {change.kind:<13} {change.name}")
    counts = {op: sum(c.operation == op for c in result.changes) for op in ("create", "change", "delete")}
    summary = ", ".join(f"{n} to {op}" for op, n in counts.items())
    print(f"{ref.namespace}/{ref.name} on {args.emqx}: {summary} ({result.requests} requests read)", file=sys.stderr)
    return EXIT_OK


def _add_broker(commands: Any) -> None:
    broker = commands.add_parser("broker", help="the line's objects in the core broker (EMQX)")
    broker_commands = broker.add_subparsers(dest="broker_command", required=True)
    plan = broker_commands.add_parser(
        "plan", help="print what the operator would create, change and delete in EMQX (a dry run)",
        description=BROKER_PLAN_HELP, formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    plan.add_argument("file", type=Path)
    plan.add_argument("--emqx", required=True, help="EMQX's REST API, e.g. http://emqx:18083")
    plan.add_argument("--credentials", type=Path, default=None, help="a file holding KEY:SECRET")
    plan.add_argument("--namespace", default=None, help="the line's namespace (default: metadata.namespace)")
    plan.add_argument("--format", choices=("text", "json"), default="text")
    plan.set_defaults(run=cmd_broker_plan)


def _add_up(commands: Any) -> None:
    up = commands.add_parser(
        "up", help="run the line locally: CA, mosquitto (mTLS), connectors", description=UP_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    up.add_argument("file", type=Path)
    up.add_argument("--simulate", action="store_true", help="start a simulated PLC for every machine")
    up.add_argument("--state-dir", type=Path, default=None, help="default: .plantline/<site>-<line>")
    up.add_argument(
        "--metrics-base-port",
        type=int,
        default=DEFAULT_METRICS_PORT,
        help="connectors' /metrics ports count up from it",
    )
    up.add_argument("--api-port", type=int, default=API_PORT, help="the historian's KPI API (127.0.0.1)")
    up.add_argument("--detach", action="store_true", help="run in the background; return once the line runs")
    up.add_argument(
        "--monitoring", action="store_true", help="also run Prometheus with the line's rules (and the broker exporter)"
    )
    up.add_argument("--prometheus-port", type=int, default=9090, help="with --monitoring; the exporter uses +1, +2")
    up.add_argument("--broker-exporter", default=None, help="the mqtt-exporter program (default: from PATH)")
    up.add_argument(
        "--cloud", default=None, metavar="URL",
        help="also run the cloud bridge to this Kafka: kafka://[USER@]HOST:PORT[?OPTIONS] or "
        "eventhubs://NAMESPACE.servicebus.windows.net?password_file=FILE (docs/bridge.md)",
    )  # fmt: skip
    up.add_argument("--bridge-port", type=int, default=BRIDGE_HEALTH_PORT, help="with --cloud: the bridge's /metrics")
    up.set_defaults(run=cmd_up)


def _add_operator(commands: Any) -> None:
    operator = commands.add_parser("operator", help="the Kubernetes operator")
    operator_commands = operator.add_subparsers(dest="operator_command", required=True)
    operator_run = operator_commands.add_parser(
        "run", help="run the operator outside (or inside) a cluster", description=OPERATOR_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    # In a cluster the image comes from the environment, which the kustomize install's `images:` sets
    # together with the operator's own image (operator/deploy/kustomizeconfig.yaml): one place.
    operator_run.add_argument(
        "--connector-image",
        required=not os.environ.get(CONNECTOR_IMAGE_ENV),
        default=os.environ.get(CONNECTOR_IMAGE_ENV),
        help=f"the image of plantline-connectors the pods run (default: ${CONNECTOR_IMAGE_ENV})",
    )
    operator_run.add_argument(
        "--bridge-image",
        default=os.environ.get(BRIDGE_IMAGE_ENV) or None,
        help=f"the image the cloud bridges (spec.cloud) run (default: ${BRIDGE_IMAGE_ENV}, else --connector-image,"
        " which holds plantline-bridge)",
    )
    operator_run.add_argument(
        "--storage-class", default=None, help="StorageClass of the connectors' outbox volumes (default: the cluster's)"
    )
    operator_run.add_argument("--namespace", action="append", default=[], help="watch only this namespace (repeatable)")
    operator_run.add_argument(
        "--ca-secret", default="plantline-system/plantline-ca", help="NAMESPACE/NAME of the CA Secret"
    )
    operator_run.add_argument(
        "--resync-seconds", type=float, default=60.0, help="drift repair and renewal check interval"
    )
    operator_run.add_argument(
        "--kubeconfig", type=Path, default=None, help="default: $KUBECONFIG, ~/.kube/config, in-cluster"
    )
    operator_run.add_argument(
        "--liveness", default=None, help="serve Kopf's liveness probe, e.g. http://0.0.0.0:8080/healthz"
    )
    operator_run.add_argument(
        "--metrics", default=None, help="serve Prometheus metrics on ADDRESS:PORT/metrics, e.g. 0.0.0.0:9402"
    )
    operator_run.add_argument(
        "--emqx", default=None, help="EMQX's REST API for lines with broker.kind emqx, e.g. http://emqx:18083"
    )
    operator_run.add_argument(
        "--emqx-credentials-secret",
        default="plantline-system/plantline-emqx-api",
        help="NAMESPACE/NAME of the Secret with EMQX's api-key and api-secret",
    )
    operator_run.add_argument(
        "--emqx-listener",
        default=None,
        help="ensure this EMQX listener (e.g. ssl:default) is mutual TLS with the operator's CA and CRL checks",
    )
    operator_run.add_argument(
        "--crl-url",
        default=None,
        help="put this CRL Distribution Point in every certificate, e.g. http://plantline-operator.plantline-system"
        ":9402/crl.der; the --metrics port serves the CA's CRL at /crl.der",
    )
    operator_run.set_defaults(run=cmd_operator_run)


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

    reference = commands.add_parser("api-reference", help="print the Markdown reference of every PlantLine field")
    reference.set_defaults(run=cmd_api_reference)

    render = commands.add_parser("render", help="write connector configs, mosquitto.conf, acl and a certificate plan")
    render.add_argument("file", type=Path)
    render.add_argument("--out", type=Path, required=True, help="output directory")
    render.add_argument("--force", action="store_true", help="replace files that exist")
    render.add_argument("--tls-dir", type=Path, default=Path("/etc/plantline/tls"), help="TLS files on the node")
    render.add_argument("--data-dir", type=Path, default=Path("/var/lib/plantline"), help="outboxes, state, broker")
    render.add_argument("--metrics-base-port", type=int, default=DEFAULT_METRICS_PORT)
    render.set_defaults(run=cmd_render)

    boards = commands.add_parser(
        "dashboards", help="write the line's Grafana dashboards and Prometheus rules for file provisioning"
    )
    boards.add_argument("file", type=Path)
    boards.add_argument("--out", type=Path, required=True, help="output directory (grafana/, prometheus/)")
    boards.add_argument("--force", action="store_true", help="replace files that exist")
    boards.add_argument("--runbook-base", default=None, help="the URL under which runbooks/<Alert>.md are served")
    boards.add_argument(
        "--cloud-bridge", action="store_true", default=None,
        help="the line runs the cloud bridge to Kafka: add its dashboard, alerts and SLO (docs/bridge.md); "
        "without it, they are added when the line has spec.cloud",
    )  # fmt: skip
    boards.set_defaults(run=cmd_dashboards)

    _add_up(commands)
    _add_broker(commands)

    for name, run, text in (
        ("status", cmd_status, "show the table of a line started with `up --detach` (exit 3: not running)"),
        ("reload", cmd_reload, "make a running `up` republish the CRL and trust bundle and reload the broker"),
        ("down", cmd_down, "stop a line started with `up --detach` and everything it started"),
    ):
        command = commands.add_parser(name, help=text, description=text)
        command.add_argument("file", type=Path, nargs="?", help="the PlantLine file (names the default state dir)")
        command.add_argument("--state-dir", type=Path, default=None, help="default: .plantline/<site>-<line>")
        if name in ("status", "reload"):
            command.add_argument("--format", choices=("text", "json"), default="text")
        if name == "reload":
            command.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for the outcome")
        if name == "down":
            command.add_argument("--timeout", type=float, default=60.0, help="seconds before killing what is left")
        command.set_defaults(run=run)

    _add_operator(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        status: int = args.run(args)
    except Unreadable as exc:
        print(exc, file=sys.stderr)
        return EXIT_UNREADABLE
    except MissingExtra as exc:
        sub = getattr(args, "operator_command", None) or getattr(args, "broker_command", None)
        command = " ".join(filter(None, (args.command, sub)))
        print(f"plantline {command}: {exc}", file=sys.stderr)
        return EXIT_SETUP
    return status


if __name__ == "__main__":
    sys.exit(main())
