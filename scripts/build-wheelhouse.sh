#!/usr/bin/env bash
# Build a wheelhouse for air-gapped edge nodes: the plantline-connectors wheel from this checkout
# plus every dependency wheel uv.lock pins, for the node's Python (Debian 12: CPython 3.11, x86_64).
#
#   scripts/build-wheelhouse.sh [EXTRAS]      EXTRAS default: runtime,opcua,s7,cip
#
# Prints the wheelhouse directory on stdout: $PLANTLINE_CACHE/wheelhouse/<lock hash>-<extras>.
# Dependency wheels are downloaded once per uv.lock (PyPI, binary wheels only); the connectors
# wheel is rebuilt on every call (hatchling builds it reproducibly, so an unchanged source gives
# an identical file and the connectors role sees no change). Point `connectors_wheelhouse` at it.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
cache="${PLANTLINE_CACHE:-$HOME/.cache/plantline}"
extras="${1:-runtime,opcua,s7,cip}"
say() { printf 'wheelhouse: %s\n' "$*" >&2; }

lock_hash="$(sha256sum "$repo/uv.lock" | cut -c1-12)"
out="$cache/wheelhouse/$lock_hash-${extras//,/-}"
mkdir -p "$out"

if [ ! -f "$out/.deps-complete" ]; then
  extra_args=()
  IFS=, read -ra wanted <<<"$extras"
  for extra in "${wanted[@]}"; do extra_args+=(--extra "$extra"); done
  (cd "$repo" && uv export --package plantline-connectors "${extra_args[@]}" --no-hashes \
    --no-emit-workspace --frozen --no-dev --no-header -q) >"$out/requirements.txt"
  say "downloading dependency wheels into $out"
  # pip itself: the system Python's, else pip from PyPI run by uv (uv's virtualenvs carry no pip)
  if /usr/bin/python3 -m pip --version >/dev/null 2>&1; then pip=(/usr/bin/python3 -m pip)
  elif python3 -m pip --version >/dev/null 2>&1; then pip=(python3 -m pip)
  else pip=(uvx --from pip pip); fi
  "${pip[@]}" download -q --disable-pip-version-check --only-binary=:all: \
    --python-version 3.11 --implementation cp --platform manylinux2014_x86_64 \
    --platform manylinux_2_17_x86_64 --platform manylinux_2_28_x86_64 --platform any \
    -r "$out/requirements.txt" -d "$out" >&2
  touch "$out/.deps-complete"
fi
(cd "$repo" && uv build --package plantline-connectors --wheel -q -o "$out") >&2
rm -f "$out"/.gitignore   # uv build drops one into the output directory
echo "$out"
