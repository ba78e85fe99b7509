"""A Pulumi language host for Python programs, run by the Pulumi CLI as `pulumi-language-python`.

The upstream host (a Go program) lives in a Go module the module proxy refuses, so the stacks'
`pulumi up` test runs this one: the LanguageRuntime gRPC service from the Pulumi SDK's own stubs,
serving what `pulumi up`, `preview` and `destroy` ask of a language (plugin info, required
plugins and packages: none, the CLI takes the provider from PATH; and Run). Run starts the program
in a child Python, as the upstream host does, configured the way its `pulumi-language-python-exec`
configures the SDK: settings from the request, the stack's config from the environment.

    python -m plantline_testing.pulumi_host ENGINE_ADDRESS        the host: prints its port, serves
    python -m plantline_testing.pulumi_host --exec ARGS... PROGRAM  one program run (the host's child)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import platform
import runpy
import subprocess
import sys
from collections.abc import Iterator
from concurrent import futures
from typing import Any

import grpc
import pulumi
import pulumi.runtime
from google.protobuf import empty_pb2
from pulumi.runtime.proto import language_pb2, language_pb2_grpc, plugin_pb2

# The upstream exec script's exit code for "the program failed and has said why": the engine
# then shows no error of its own (RunResponse.bail).
BAILED = 32
MODULE = "plantline_testing.pulumi_host"  # not __name__, which is __main__ when run with -m


class LanguageHost(language_pb2_grpc.LanguageRuntimeServicer):
    """The LanguageRuntime service: runs programs with this interpreter, asks for no plugin."""

    def __init__(self, engine: str) -> None:
        self.engine = engine

    def Handshake(self, request: Any, context: Any) -> Any:
        return language_pb2.LanguageHandshakeResponse()

    def GetPluginInfo(self, request: Any, context: Any) -> Any:
        return plugin_pb2.PluginInfo(version=_sdk_version())

    def GetRequiredPlugins(self, request: Any, context: Any) -> Any:
        return language_pb2.GetRequiredPluginsResponse()

    def GetRequiredPackages(self, request: Any, context: Any) -> Any:
        return language_pb2.GetRequiredPackagesResponse()

    def GetProgramDependencies(self, request: Any, context: Any) -> Any:
        return language_pb2.GetProgramDependenciesResponse()

    def About(self, request: Any, context: Any) -> Any:
        return language_pb2.AboutResponse(executable=sys.executable, version=platform.python_version())

    def Cancel(self, request: Any, context: Any) -> Any:
        return empty_pb2.Empty()  # Run's child ends with the engine's monitor; nothing else runs here

    def InstallDependencies(self, request: Any, context: Any) -> Iterator[Any]:
        return iter(())  # the program runs in an environment that already has its dependencies

    def Run(self, request: Any, context: Any) -> Any:
        program = os.path.join(request.info.program_directory or request.pwd, request.info.entry_point or ".")
        argv = [sys.executable, "-m", MODULE, "--exec"]
        argv += ["--monitor", request.monitor_address, "--engine", self.engine]
        argv += ["--project", request.project, "--stack", request.stack, "--organization", request.organization]
        argv += ["--root-directory", request.info.root_directory, "--parallel", str(request.parallel)]
        argv += ["--dry-run", "true" if request.dryRun else "false", "--pwd", request.pwd, program]
        env = {
            **os.environ,
            "PULUMI_CONFIG": json.dumps(dict(request.config)),
            "PULUMI_CONFIG_SECRET_KEYS": json.dumps(list(request.configSecretKeys)),
        }
        # The child writes to our stdout and stderr, which the engine shows as the program's output.
        returncode = subprocess.run(argv, env=env, check=False).returncode
        if returncode == 0:
            return language_pb2.RunResponse()
        if returncode == BAILED:
            return language_pb2.RunResponse(bail=True)
        return language_pb2.RunResponse(error=f"the Python program exited with status {returncode}")


def _sdk_version() -> str:
    from importlib.metadata import version

    return version("pulumi")


def serve(engine: str) -> None:
    """Serve the host on a free loopback port, print the port (the CLI reads it), until killed."""
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    language_pb2_grpc.add_LanguageRuntimeServicer_to_server(LanguageHost(engine), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    print(port, flush=True)
    try:
        server.wait_for_termination()
    except KeyboardInterrupt:  # the CLI ends its plugins with SIGINT once it is done with them
        server.stop(grace=None)


def run_program(args: argparse.Namespace) -> int:
    """Run one program against the engine and monitor; return the process's exit status."""
    pulumi.runtime.set_all_config(pulumi.runtime.get_config_env(), pulumi.runtime.get_config_secret_keys_env())
    settings = pulumi.runtime.Settings(
        project=args.project,
        stack=args.stack,
        monitor=args.monitor,
        engine=args.engine,
        parallel=int(args.parallel),
        dry_run=args.dry_run == "true",
        organization=args.organization or None,
        root_directory=args.root_directory or None,
    )
    pulumi.runtime.configure(settings)
    os.chdir(args.pwd)
    sys.path.insert(0, os.path.abspath(args.program))
    sys.argv = [args.program]
    logging.getLogger("asyncio").setLevel(logging.CRITICAL)  # as upstream: unobserved futures on failure
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)

    def program() -> None:
        runpy.run_path(args.program, run_name="__main__")

    try:
        loop.run_until_complete(pulumi.runtime.run_in_stack(program))
    except pulumi.RunError as error:
        pulumi.log.error(str(error))
        return 1
    except Exception:  # noqa: BLE001  # whatever the program raised, the engine must see it
        import traceback

        pulumi.log.error(f"Program failed with an unhandled exception:\n{traceback.format_exc()}")
        return BAILED
    finally:
        loop.close()
        sys.stdout.flush()
        sys.stderr.flush()
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pulumi-language-python")
    parser.add_argument("--exec", action="store_true", help="run one program (the host's child)")
    for option in (
        "monitor",
        "engine",
        "project",
        "stack",
        "organization",
        "root-directory",
        "parallel",
        "dry-run",
        "pwd",
    ):
        parser.add_argument(f"--{option}", default="")
    parser.add_argument("program", help="ENGINE_ADDRESS for the host, the program's directory with --exec")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the host, or with --exec one program."""
    args, _ = _parser().parse_known_args(argv)  # the CLI may pass flags of the upstream host
    if args.exec:
        return run_program(args)
    serve(args.program)
    return 0


if __name__ == "__main__":
    sys.exit(main())
