"""The API reference: generated from the model, checked in, and the prose names only fields that exist."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from plantline.operator.api import PlantLine, PlantLineStatus
from plantline.operator.cli import main
from plantline.operator.reference import Row, api_sections, field_paths, reference_markdown

DOCS = Path(__file__).resolve().parents[2] / "docs"
CHECKED_IN = DOCS / "plantline-api-reference.md"
# `spec.machines[2].tags[0].address`, `spec.pki.validityDays.mqtt-client`: a path as the docs write it.
SPEC_PATH = re.compile(r"\bspec(?:\.[A-Za-z][A-Za-z0-9]*(?:\[\d*\])?)+")


def _rows() -> dict[str, Row]:
    return {row.path: row for section in api_sections() for row in section.rows}


def test_checked_in_reference_matches_the_model() -> None:
    assert CHECKED_IN.read_text() == reference_markdown(), (
        "regenerate with: plantline api-reference > docs/plantline-api-reference.md"
    )


def test_the_command_prints_the_reference(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["api-reference"]) == 0
    assert capsys.readouterr().out == reference_markdown()


def test_every_field_of_the_api_has_a_description() -> None:
    missing = [row.path for row in _rows().values() if not row.description]
    assert missing == []


def test_every_object_of_the_api_has_its_own_table_and_every_field_a_row() -> None:
    sections = {section.path: section for section in api_sections()}
    assert list(sections)[:3] == ["PlantLine", "metadata", "spec"]
    assert {"spec.machines[].tags[].deadband", "spec.broker.bridge", "status.conditions[]"} <= set(sections)
    for section in sections.values():
        fields = section.model.model_fields.items()
        assert [row.path.rsplit(".", 1)[-1] for row in section.rows] == [f.alias or name for name, f in fields]
    assert {s.model for s in sections.values()} >= {PlantLine, PlantLineStatus}


@pytest.mark.parametrize(
    ("path", "type_", "default", "constraints"),
    [
        ("spec.broker.queueLimitMib", "integer", "`256`", ">= 1 and <= 65536"),
        ("spec.machines[].idealCycleTime", "number", "-", "> 0"),
        ("spec.machines[].tags", "list of object", "required", "items >= 1 and <= 128"),
        (
            "spec.pki.validityDays",
            "map of string to integer",
            "`{}`",
            "at most 16 entries; each value: >= 1 and <= 3650",
        ),
        ("spec.connectors.grouping", "string", '`"perLine"`', "one of `perLine`, `perMachine`, `perProtocol`"),
        ("spec.connectors", "object", "its fields' defaults", ""),
        ("apiVersion", "string", "required", "always `plantline.dev/v1alpha1`"),
        ("status.conditions[].lastTransitionTime", "string (date-time)", "required", ""),
    ],
)
def test_a_row_says_what_the_model_says(path: str, type_: str, default: str, constraints: str) -> None:
    row = _rows()[path]
    assert (row.type, row.default, row.constraints) == (type_, default, constraints)


def test_a_default_factory_is_shown_as_its_value() -> None:
    row = _rows()["spec.kpi.shiftCalendar.shifts[].days"]
    assert row.default == '`["mon", "tue", "wed", "thu", "fri", "sat", "sun"]`'
    assert row.constraints == "each: one of `mon`, `tue`, `wed`, `thu`, `fri`, `sat`, `sun`"


def test_a_pipe_in_a_cell_does_not_split_the_table() -> None:
    for line in reference_markdown().splitlines():
        if line.startswith("| `"):
            assert len(re.findall(r"(?<!\\)\|", line)) == 6, line


@pytest.mark.parametrize("doc", sorted(DOCS.glob("*.md")), ids=lambda p: p.name)
def test_the_docs_name_only_fields_that_exist(doc: Path) -> None:
    known, rows = field_paths(), _rows()
    maps = {path for path, row in rows.items() if row.type.startswith("map of")}
    named = {re.sub(r"\[\d*\]", "[]", m) for m in SPEC_PATH.findall(doc.read_text())}
    # A map's keys (spec.pki.validityDays.mqtt-client) are data, not fields.
    unknown = sorted(p for p in named if p not in known and p.rsplit(".", 1)[0] not in maps)
    assert unknown == []


def test_the_path_check_catches_a_field_the_model_lacks() -> None:
    assert "spec.sparkplug" not in field_paths()
    assert {"spec.primaryHostId", "spec.machines[].tags[].address", "spec.broker.listenAddress"} <= field_paths()
