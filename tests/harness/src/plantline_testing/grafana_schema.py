"""Type-check Grafana dashboard JSON against Grafana's published schema types: `typecheck_dashboards`.

The pinned `@grafana/schema` and `typescript` (tests/harness/grafana/package.json and its lock)
are installed once by `plantline_testing.npm`. `typescript_source` turns dashboards into one
TypeScript module that assigns each dashboard to `Dashboard`, and each panel's `options` and
`fieldConfig.defaults.custom` to its panel plugin's `Options` and `FieldConfig`; `tsc --noEmit
--strict` then fails on any field the schema does not have, a missing required one, or a value of
the wrong type. The schema declares its choices as TypeScript enums, which a JSON string cannot
be assigned to; `Plain<T>` turns each enum into the union of its values first.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from plantline_testing import find_program
from plantline_testing.npm import NpmPackage

GRAFANA_DIR = Path(__file__).resolve().parents[2] / "grafana"
GRAFANA_SCHEMA = NpmPackage("grafana-schema", GRAFANA_DIR, probe="typescript")
SCHEMA = "@grafana/schema"
_COMPOSABLE = f"{SCHEMA}/dist/esm/raw/composable"
# panel type -> (module under raw/composable, file prefix, whether the plugin types its field config)
PLUGINS: dict[str, tuple[str, str, bool]] = {
    "stat": ("stat", "StatPanelCfg", False),
    "gauge": ("gauge", "GaugePanelCfg", False),
    "timeseries": ("timeseries", "TimeSeriesPanelCfg", True),
    "state-timeline": ("statetimeline", "StateTimelinePanelCfg", True),
    "table": ("table", "TablePanelCfg", True),
}
PLAIN = """type Plain<T> = T extends string ? `${T}`
  : T extends number | boolean | null | undefined ? T
  : T extends ReadonlyArray<infer U> ? Array<Plain<U>>
  : T extends object ? { [K in keyof T]: Plain<T[K]> }
  : T;"""


@dataclass(frozen=True)
class TypeCheck:
    """What tsc said: its exit status, its diagnostics and the module it checked."""

    returncode: int
    output: str
    source: str


def _identifier(text: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in text)


def typescript_source(dashboards: Mapping[str, Mapping[str, Any]]) -> str:
    """Return a TypeScript module assigning every dashboard, and each panel's plugin settings, to its type."""
    lines = [f"import type {{ Dashboard }} from '{SCHEMA}';"]
    for module, prefix, _custom in PLUGINS.values():
        lines.append(f"import type * as {module} from '{_COMPOSABLE}/{module}/panelcfg/x/{prefix}_types.gen';")
    lines.append(PLAIN)
    for name, board in dashboards.items():
        ident = _identifier(name)
        lines.append(f"export const {ident}: Plain<Dashboard> = {json.dumps(board, indent=1)};")
        for panel in board.get("panels", []):
            if panel.get("type") == "row":
                continue
            module, _prefix, custom = PLUGINS[panel["type"]]  # a panel type without schema here fails the check
            where = f"{ident}_panel_{panel['id']}"
            lines.append(f"export const {where}_options: Plain<{module}.Options> = {json.dumps(panel['options'])};")
            if custom:
                value = json.dumps(panel["fieldConfig"]["defaults"].get("custom", {}))
                lines.append(f"export const {where}_custom: Plain<{module}.FieldConfig> = {value};")
    return "\n".join(lines) + "\n"


def typecheck_dashboards(dashboards: Mapping[str, Mapping[str, Any]], *, timeout: float = 300.0) -> TypeCheck:
    """Return what `tsc --noEmit --strict` says about the dashboards (returncode 0: they fit the schema)."""
    modules = GRAFANA_SCHEMA.ensure()
    source = typescript_source(dashboards)
    with tempfile.TemporaryDirectory(prefix="plantline-dashboards-") as work:
        root = Path(work)
        (root / "node_modules").symlink_to(modules, target_is_directory=True)
        (root / "dashboards.ts").write_text(source)
        argv = [
            find_program("node"), str(modules / "typescript" / "bin" / "tsc"), "--noEmit", "--strict",
            "--target", "es2022", "--module", "esnext", "--moduleResolution", "bundler", "--skipLibCheck",
            "--noErrorTruncation", str(root / "dashboards.ts"),
        ]  # fmt: skip
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False, cwd=root)
    return TypeCheck(done.returncode, done.stdout + done.stderr, source)
