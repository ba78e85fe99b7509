#!/usr/bin/env bash
# Slim the debootstrapped root file system $1 into the tests' stand-in for python:3.11-slim (run by
# scripts/debian-base-image.sh): like that image, it keeps no package lists (apt-get update
# fetches them again).
set -euo pipefail
rm -rf "$1/var/lib/apt/lists/"* "$1/var/cache/apt/"*.bin
