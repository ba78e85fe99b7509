"""A pulumi command cut short leaves none of its processes behind, its plugins' process groups included.

The CLI here is a stand-in script that does what the Pulumi CLI does with its plugins: it starts
one in a process group of its own (bash's job control, as Go's Setpgid), records it, and waits.
"""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from plantline_testing import session_processes
from plantline_testing.pulumi_cli import PulumiStack

FAKE_PULUMI = """\
#!/bin/bash
set -m  # job control: the background job gets a process group of its own
sleep 300 </dev/null >/dev/null 2>&1 &  # a plugin talks to the CLI over its own pipes, not the CLI's output
plugin=$!
echo "$$ $plugin $(cut -d' ' -f5 /proc/$plugin/stat)" > "$RECORD"
# Ctrl-C reaching the test run, not the CLI's session; once the run waits for the CLI.
if [ "$INTERRUPT" = 1 ]; then sleep 0.5; kill -INT "$PPID"; fi
wait
"""


def _stack(tmp_path: Path, *, interrupt: bool) -> tuple[PulumiStack, Path]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "pulumi").write_text(FAKE_PULUMI)
    (bin_dir / "pulumi").chmod(0o755)
    project = tmp_path / "project"
    project.mkdir()
    (project / "Pulumi.yaml").write_text("name: fake\nruntime: python\n")
    record = tmp_path / "record"
    env = {"RECORD": str(record), "INTERRUPT": "1" if interrupt else "0"}
    return PulumiStack(bin_dir, project, tmp_path / "work", env=env), record


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _assert_all_gone(record: Path) -> None:
    cli, plugin, plugin_group = (int(word) for word in record.read_text().split())
    assert plugin_group == plugin != cli  # the plugin was in a group of its own, not the CLI's
    assert not _alive(plugin)
    assert not _alive(cli)
    assert session_processes(cli) == []


def test_a_timeout_stops_the_cli_and_the_plugin_in_its_own_process_group(tmp_path: Path) -> None:
    stack, record = _stack(tmp_path, interrupt=False)
    with pytest.raises(subprocess.TimeoutExpired):
        stack.run("up", timeout=2)
    _assert_all_gone(record)


@pytest.fixture
def interruptible() -> Iterator[None]:
    """Let SIGINT raise KeyboardInterrupt here, as at a terminal.

    A test run started in the background by a non-interactive shell inherits SIGINT ignored, and
    Python then leaves it so.
    """
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


@pytest.mark.usefixtures("interruptible")
def test_an_interrupt_stops_the_cli_and_the_plugin_in_its_own_process_group(tmp_path: Path) -> None:
    stack, record = _stack(tmp_path, interrupt=True)
    with pytest.raises(KeyboardInterrupt):
        stack.run("up", timeout=60)
    _assert_all_gone(record)


def test_a_command_that_ends_leaves_no_plugin_running(tmp_path: Path) -> None:
    stack, record = _stack(tmp_path, interrupt=False)
    (tmp_path / "bin" / "pulumi").write_text(FAKE_PULUMI.replace("wait\n", "exit 3\n"))
    done = stack.run("up", check=False)
    assert done.returncode == 3
    _assert_all_gone(record)
