#!/usr/bin/env bash
# Build a wheelhouse for air-gapped edge nodes and for the container images: the wheels of a
# workspace package and of the workspace packages it needs, built from this checkout, plus every
# dependency wheel uv.lock pins, for CPython 3.11 on x86_64 (Debian 12's, and python:3.11-slim's).
#
#   scripts/build-wheelhouse.sh [EXTRAS] [PACKAGE]
#       EXTRAS default: runtime,opcua,s7,cip    PACKAGE default: plantline-connectors
#
# Prints the wheelhouse directory on stdout: $PLANTLINE_CACHE/wheelhouse/<lock hash>-<extras> for
# the connectors, <lock hash>-<package>-<extras> for another package. Dependency wheels are
# downloaded once per uv.lock (PyPI, binary wheels only); the workspace wheels are rebuilt on
# every call (hatchling builds them reproducibly, so an unchanged source gives an identical file
# and the connectors role sees no change). Point `connectors_wheelhouse` at it.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
cache="${PLANTLINE_CACHE:-$HOME/.cache/plantline}"
extras="${1-runtime,opcua,s7,cip}"  # an empty EXTRAS: none (the default only when absent)
package="${2:-plantline-connectors}"
say() { printf 'wheelhouse: %s\n' "$*" >&2; }

lock_hash="$(sha256sum "$repo/uv.lock" | cut -c1-12)"
name="$lock_hash"
[ "$package" = plantline-connectors ] || name+="-${package#plantline-}"
out="$cache/wheelhouse/$name-${extras//,/-}"
mkdir -p "$out"
extra_args=()
IFS=, read -ra wanted <<<"$extras"
for extra in "${wanted[@]}"; do [ -z "$extra" ] || extra_args+=(--extra "$extra"); done

if [ ! -f "$out/.deps-complete" ]; then
  (cd "$repo" && uv export --package "$package" "${extra_args[@]}" --no-hashes \
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
# The workspace members the package needs, itself included: uv export lists them as `-e ./DIR`.
members="$(cd "$repo" && uv export --package "$package" "${extra_args[@]}" --no-hashes --frozen --no-dev \
  --no-header -q | sed -n 's#^-e \./##p')"
for member in $members; do
  (cd "$repo" && uv build "$member" --wheel -q -o "$out") >&2
done
rm -f "$out"/.gitignore   # uv build drops one into the output directory
echo "$out"
