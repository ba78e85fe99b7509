#!/usr/bin/env bash
# Run one molecule scenario the way CI does:
#
#   molecule/run.sh SCENARIO [MOLECULE_COMMAND]     (default command: test)
#
# Builds or reuses the Debian 12 image (image/build.sh), builds the plantline.edge collection and
# installs the artifact into this run's collections path (scripts/install-collection.sh), builds
# or reuses the connectors wheelhouse, then runs molecule
# with the shared base config. Containers and the network carry a run id, and whatever is left
# of them is removed on exit, even after a failure.
set -euo pipefail
scenario="${1:?usage: run.sh SCENARIO [test|converge|verify|destroy|...]}"
command="${2:-test}"
repo="$(cd "$(dirname "$0")/.." && pwd)"   # the repository root is the collection
export PLANTLINE_CACHE="${PLANTLINE_CACHE:-$HOME/.cache/plantline}"
export PATH="$repo/.venv/bin:$PATH:/usr/sbin"
export PLANTLINE_REPO="$repo"
if [ -z "${PLANTLINE_MOLECULE_IMAGE:-}" ]; then
  PLANTLINE_MOLECULE_IMAGE="$("$repo/molecule/image/build.sh")"   # fails the run if it fails
fi
export PLANTLINE_MOLECULE_IMAGE
export PLANTLINE_RUN_ID="${PLANTLINE_RUN_ID:-$(date +%H%M%S)$$}"
export PLANTLINE_MOLECULE_WORKDIR="${PLANTLINE_MOLECULE_WORKDIR:-${TMPDIR:-/tmp}/plantline-molecule-$scenario-$PLANTLINE_RUN_ID}"
mkdir -p "$PLANTLINE_MOLECULE_WORKDIR"
chmod 0700 "$PLANTLINE_MOLECULE_WORKDIR"
# The scenarios run the collection as a user installs it: built from this checkout and installed
# into this run's own collections path, so two checkouts never run each other's roles and what
# the artifact leaves out (galaxy.yml build_ignore) cannot hide behind the working tree.
export ANSIBLE_COLLECTIONS_PATH
ANSIBLE_COLLECTIONS_PATH="$("$repo/scripts/install-collection.sh" "$PLANTLINE_MOLECULE_WORKDIR/collections")"
if [ -z "${PLANTLINE_WHEELHOUSE:-}" ]; then
  PLANTLINE_WHEELHOUSE="$("$repo/scripts/build-wheelhouse.sh" runtime,s7)"   # fails the run if it fails
fi
export PLANTLINE_WHEELHOUSE
export MOLECULE_GLOB="molecule/*/molecule.yml"
# Molecule's state (created/converged, the inventory) belongs to this run: by default it lives in
# ~/.ansible/tmp keyed by the directory's name only, so a killed run, or another checkout, would
# leave `created: true` behind and the next run would skip creating its containers.
export MOLECULE_EPHEMERAL_DIRECTORY="$PLANTLINE_MOLECULE_WORKDIR/molecule"
export ANSIBLE_LOCAL_TEMP="$PLANTLINE_MOLECULE_WORKDIR/ansible-tmp"
# Logs (CI, the tests) are read on wide screens: molecule, ansible and pytest wrap at $COLUMNS, 80
# when there is no terminal, which folds every journal line in two.
[ -t 1 ] || export COLUMNS="${COLUMNS:-200}"

cleanup() {
  local status=$?
  if [ "$command" = test ] || [ "$command" = destroy ]; then
    for name in $(podman ps -a --format '{{.Names}}' | grep -- "-$PLANTLINE_RUN_ID\$" || true); do
      podman rm -f -t 2 "$name" >/dev/null 2>&1 || true
    done
    for net in $(podman network ls --format '{{.Name}}' | grep -- "-$PLANTLINE_RUN_ID\$" || true); do
      podman network rm -f "$net" >/dev/null 2>&1 || true
    done
    rm -rf "$PLANTLINE_MOLECULE_WORKDIR"
  fi
  exit "$status"
}
trap cleanup EXIT
trap 'exit 143' TERM INT

# Each scenario gets a network of its own with a fixed subnet, so the firewall tests can name
# addresses (molecule's podman driver cannot set a subnet); the driver reuses the network.
case "$scenario" in
  hardening) subnet=10.231.11.0/24 ;;
  edge_core) subnet=10.231.12.0/24 ;;
  *) subnet="" ;;
esac
network="pl-${scenario//_/-}-$PLANTLINE_RUN_ID"
if [ -n "$subnet" ] && ! podman network exists "$network"; then
  podman network create --subnet "$subnet" "$network" >/dev/null
fi

cd "$repo"
echo "molecule: scenario $scenario, run $PLANTLINE_RUN_ID, image $PLANTLINE_MOLECULE_IMAGE" >&2
nice -n 10 molecule -c molecule/base.yml "$command" -s "$scenario"
