#!/usr/bin/env bash
# Make `plantline.edge.<role>` resolve: link this checkout's ansible/ directory into a collections
# path in the cache. Prints the collections path (set ANSIBLE_COLLECTIONS_PATH to it, or rely on
# ansible.cfg, which names the default one).
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
cache="${PLANTLINE_CACHE:-$HOME/.cache/plantline}"
path="${1:-$cache/ansible}"   # another collections path for tools that rewrite theirs (ansible-lint)
mkdir -p "$path/ansible_collections/plantline"
ln -sfn "$here" "$path/ansible_collections/plantline/edge"
echo "$path"
