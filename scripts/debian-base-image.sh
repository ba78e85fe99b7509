#!/usr/bin/env bash
# Build (or reuse) a Debian 12 (bookworm) image from Debian's packages only: debootstrap's minbase
# with the packages a list names, an optional setup script run on the root file system, then
# `podman import`. The molecule scenarios' systemd image and the test base of the PlantLine images
# are both made here.
#
#   scripts/debian-base-image.sh NAME PACKAGES [SETUP] [--change INSTRUCTION]...
#
# Prints `localhost/NAME:<recipe hash>` on stdout (progress on stderr), building it only when that
# image is absent. The hash covers this script, the PACKAGES list (one package a line, # comments),
# the SETUP script (run as `SETUP ROOTFS`, to mask services, write config, ...) and the --change
# instructions given to `podman import`, so an image is rebuilt only when its recipe changes.
# debootstrap keeps the .debs it downloads in $PLANTLINE_CACHE/debootstrap/bookworm, so a rebuild
# fetches only what changed. Needs root, podman and debootstrap.
set -euo pipefail
self="$(cd "$(dirname "$0")" && pwd)/$(basename "$0")"
cache="${PLANTLINE_CACHE:-$HOME/.cache/plantline}"
mirror="${PLANTLINE_DEBIAN_MIRROR:-http://deb.debian.org/debian}"

[ $# -ge 2 ] || { printf 'usage: %s NAME PACKAGES [SETUP] [--change INSTRUCTION]...\n' "$0" >&2; exit 2; }
name="$1" packages_file="$2"
shift 2
setup=""
if [ $# -gt 0 ] && [ "$1" != --change ]; then setup="$1"; shift; fi
changes=()
while [ $# -gt 0 ]; do
  [ "$1" = --change ] && [ $# -ge 2 ] || { printf '%s: expected --change INSTRUCTION, got %s\n' "$0" "$1" >&2; exit 2; }
  changes+=(--change "$2")
  shift 2
done
say() { printf '%s image: %s\n' "$name" "$*" >&2; }

recipe_hash="$( (cat "$self" "$packages_file" ${setup:+"$setup"}; printf '%s\n' "${changes[@]}") | sha256sum | cut -c1-12)"
image="localhost/$name:$recipe_hash"
if podman image exists "$image"; then
  say "reusing $image"
  echo "$image"
  exit 0
fi

[ "$(id -u)" -eq 0 ] || { say "debootstrap needs root"; exit 1; }
command -v debootstrap >/dev/null || { say "debootstrap is missing: apt-get install debootstrap"; exit 1; }

packages="$(grep -v '^\s*#' "$packages_file" | tr -s ' \n' ',' | sed 's/^,//; s/,$//')"
debs="$cache/debootstrap/bookworm"
mkdir -p "$debs"
root="$(mktemp -d "${TMPDIR:-/tmp}/plantline-rootfs.XXXXXX")"
trap 'rm -rf --one-file-system "$root"' EXIT

say "debootstrap bookworm into $root (packages: $packages)"
debootstrap --variant=minbase --cache-dir="$debs" --include="$packages" bookworm "$root" "$mirror" >&2
printf 'deb %s bookworm main\n' "$mirror" >"$root/etc/apt/sources.list"
if [ -n "$setup" ]; then
  say "setup: $setup"
  bash "$setup" "$root" >&2
fi
# An image, not a machine: no downloaded packages, documentation or translations.
rm -rf "$root/var/cache/apt/archives/"*.deb "$root/usr/share/doc" "$root/usr/share/man" "$root/usr/share/locale"

say "importing as $image"
tar -C "$root" -c . | podman import "${changes[@]}" - "$image" >&2
echo "$image"
