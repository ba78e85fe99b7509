"""Install the test peers that come from package registries: `python -m plantline_testing.peers`.

The C snap7 server (python-snap7 2.x, in a virtualenv of its own), node-opcua and Eclipse Tahu's
decoder (npm) are each installed once into `$PLANTLINE_CACHE`, pinned. `./dev test` runs this
before the tests, so a test that needs one finds it, and fails (never skips) if it is missing.
"""

from __future__ import annotations

import sys

from plantline_testing.node_opcua import NODE_OPCUA
from plantline_testing.snap7_c import snap7_c_python
from plantline_testing.tahu import TAHU


def main() -> None:
    print(f"test peers: the C snap7 server's Python: {snap7_c_python()}", file=sys.stderr)
    for package in (NODE_OPCUA, TAHU):
        print(f"test peers: {package.probe}: {package.ensure()}", file=sys.stderr)


if __name__ == "__main__":
    main()
