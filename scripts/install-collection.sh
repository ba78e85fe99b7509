#!/usr/bin/env bash
# Build the plantline.edge collection from this checkout with `ansible-galaxy collection build`
# and install the artifact into a collections path of the caller's (default: a fresh one under
# $PLANTLINE_CACHE/ansible-collections/<checkout>), exactly as a user installs the released one.
#
#   scripts/install-collection.sh [COLLECTIONS_PATH]
#
# Prints the collections path on stdout (set ANSIBLE_COLLECTIONS_PATH to it) and leaves the
# artifact beside it as plantline-edge-<version>.tar.gz. The molecule scenarios and ansible-lint
# run against this installed copy, so every CI run proves the artifact, not only the checkout.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
cache="${PLANTLINE_CACHE:-$HOME/.cache/plantline}"
checkout_key="$(printf '%s' "$repo" | sha256sum | cut -c1-12)"
path="${1:-$cache/ansible-collections/$checkout_key}"
mkdir -p "$path"
dist="$(mktemp -d)"
trap 'rm -rf "$dist"' EXIT
(cd "$repo" && ansible-galaxy collection build --force --output-path "$dist" . >&2)
artifact="$(ls "$dist"/plantline-edge-*.tar.gz)"
ansible-galaxy collection install --force --offline --no-deps -p "$path" "$artifact" >&2
cp "$artifact" "$path/"
echo "$path"
