#!/usr/bin/env bash
# Build (or reuse) the PlantLine container images with podman, from this checkout's wheels.
#
#   operator/images/build.sh [--base IMAGE] [--rebuild] [TARGET]...   TARGET: connectors, operator (default: both)
#
# Prints `TARGET IMAGE` per target on stdout, e.g. `connectors localhost/plantline-connectors:0.1.0-<hash>`;
# progress goes to stderr. BASE_IMAGE defaults to python:3.11-slim (--base, or $PLANTLINE_BASE_IMAGE).
#
# Each target's wheels come from scripts/build-wheelhouse.sh (the workspace's own wheels, built
# with uv build, and every dependency uv.lock pins). The tag ends in a hash of the Containerfile,
# the base image's ID, the requirement and every wheel, so a warm run with nothing changed finds
# the image and builds nothing (--rebuild builds it again all the same, from scratch: no layer is
# cached); podman runs with runc (crun refuses hybrid cgroup layouts).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
cache="${PLANTLINE_CACHE:-$HOME/.cache/plantline}"
base="${PLANTLINE_BASE_IMAGE:-python:3.11-slim}"
PIP_VERSION=25.3  # installs the wheels in the builder stage; never part of an image
say() { printf '[images %4ds] %s\n' "$SECONDS" "$*" >&2; }

targets=()
rebuild=false
while [ $# -gt 0 ]; do
  case "$1" in
    --base) [ $# -ge 2 ] || { say "--base needs an image"; exit 2; }; base="$2"; shift 2 ;;
    --rebuild) rebuild=true; shift ;;
    connectors | operator) targets+=("$1"); shift ;;
    *) printf 'usage: %s [--base IMAGE] [--rebuild] [connectors|operator]...\n' "$0" >&2; exit 2 ;;
  esac
done
[ ${#targets[@]} -gt 0 ] || targets=(connectors operator)

# target -> the workspace package, its extras, and the pip requirement the image installs
declare -A PACKAGE=([connectors]=plantline-connectors [operator]=plantline-operator)
declare -A EXTRAS=([connectors]=runtime,opcua,s7,cip [operator]=kube)
# Packages a target carries besides its own: the connectors image holds the cloud bridge too (it
# depends on plantline-connectors[runtime], already there, and adds confluent-kafka), so the
# operator runs bridges from the image it runs connectors from and CI builds no third image.
declare -A ALSO=([connectors]=plantline-bridge [operator]=)
# Site-packages paths the image's program never imports: asyncua's server address space (the
# connector is an OPC UA client; the simulator, its one user, runs outside the image), the
# kubernetes client's asyncio twin, and dependencies' own tests.
declare -A PRUNE=(
  [connectors]="asyncua/server/standard_address_space aiosqlite/tests"
  [operator]="kubernetes/aio websocket/tests certifi/tests"
)

# A pip to download with: the first python3 on PATH may be a uv virtual environment (under
# `uv run` or ./dev it is the workspace's), and those hold no pip.
pip_download() {
  local python
  for python in python3 "$cache/tools/bin/python3" /usr/bin/python3; do
    if "$python" -m pip --version >/dev/null 2>&1; then
      "$python" -m pip download -q --disable-pip-version-check --no-deps --only-binary=:all: "$@"
      return
    fi
  done
  if command -v uvx >/dev/null 2>&1; then
    uvx --from "pip==$PIP_VERSION" pip download -q --disable-pip-version-check --no-deps --only-binary=:all: "$@"
    return
  fi
  say "no pip to download the pip wheel with: none of python3, $cache/tools/bin/python3, /usr/bin/python3 has it, and there is no uvx"
  return 1
}

pip_wheel() {
  local dir="$cache/images/pip-$PIP_VERSION"
  if [ ! -f "$dir/pip.whl" ]; then
    say "downloading the pip $PIP_VERSION wheel into $dir"
    mkdir -p "$dir"
    pip_download "pip==$PIP_VERSION" -d "$dir" >&2
    mv "$dir"/pip-"$PIP_VERSION"-*.whl "$dir/pip.whl"
  fi
  printf '%s\n' "$dir/pip.whl"
}

if ! podman image exists "$base"; then
  say "pulling the base image $base"
  podman pull -q "$base" >/dev/null
fi
base_id="$(podman image inspect --format '{{.Id}}' "$base")"
pip="$(pip_wheel)"
version="$(sed -n 's/^version = "\(.*\)"$/\1/p' "$repo/operator/pyproject.toml")"

for target in "${targets[@]}"; do
  say "$target: wheels"
  wheels="$("$repo/scripts/build-wheelhouse.sh" "${EXTRAS[$target]}" "${PACKAGE[$target]}")"
  requirement="${PACKAGE[$target]}[${EXTRAS[$target]}]"
  also=()
  for package in ${ALSO[$target]}; do
    also+=("$("$repo/scripts/build-wheelhouse.sh" "" "$package")")
    requirement+=" $package"
  done
  hash="$( (printf '%s\n' "$target" "$base_id" "$requirement" "${PRUNE[$target]}"; cat "$here/Containerfile";
    for dir in "$wheels" "${also[@]}"; do (cd "$dir" && sha256sum ./*.whl); done) | sha256sum | cut -c1-12)"
  image="localhost/${PACKAGE[$target]}:$version-$hash"
  if ! $rebuild && podman image exists "$image"; then
    say "$target: reusing $image"
    printf '%s %s\n' "$target" "$image"
    continue
  fi
  replaced="$(podman image inspect --format '{{.Id}}' "$image" 2>/dev/null || true)"
  context="$(mktemp -d "${TMPDIR:-/tmp}/plantline-image.XXXXXX")"
  mkdir -p "$context/wheels" "$context/pip"
  for dir in "$wheels" "${also[@]}"; do cp "$dir"/*.whl "$context/wheels/"; done
  cp "$pip" "$context/pip/pip.whl"
  say "$target: podman build $image on $base"
  if ! podman build --runtime runc --ulimit nofile=20000:20000 --ulimit nproc=8192:8192 \
    --target "$target" --build-arg BASE_IMAGE="$base" --build-arg REQUIREMENT="$requirement" \
    --build-arg PRUNE="${PRUNE[$target]}" --build-arg VERSION="$version" --layers=false \
    -f "$here/Containerfile" -t "$image" "$context" >&2; then
    rm -rf "$context"
    say "$target: podman build failed"
    exit 1
  fi
  rm -rf "$context"
  # A rebuild leaves the image it replaced untagged: remove it, unless a container still uses it.
  if [ -n "$replaced" ] && [ "$replaced" != "$(podman image inspect --format '{{.Id}}' "$image")" ]; then
    podman rmi "$replaced" >/dev/null 2>&1 || true
  fi
  say "$target: built $image ($(podman image inspect --format '{{.Size}}' "$image") bytes)"
  printf '%s %s\n' "$target" "$image"
done
