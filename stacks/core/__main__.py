"""The core stack's entry point: the operator's install is this checkout's operator/deploy."""

from pathlib import Path

from plantline.stacks.core.program import main

main(Path(__file__).resolve().parents[2] / "operator" / "deploy")
