#!/usr/bin/env bash
# Build (or reuse) the Debian 12 systemd image the molecule scenarios boot, from Debian's packages only.
#
#   molecule/image/build.sh          prints the image name on stdout, building it if needed
#
# The image is `localhost/plantline-molecule-debian12:<recipe hash>`, where the hash covers this
# script and packages.txt: it is rebuilt only when the recipe changes. debootstrap keeps the .debs
# it downloads in $PLANTLINE_CACHE/debootstrap/bookworm, so a rebuild fetches only what changed.
# Needs root, podman and debootstrap (apt-get install podman runc debootstrap).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cache="${PLANTLINE_CACHE:-$HOME/.cache/plantline}"
mirror="${PLANTLINE_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
say() { printf 'molecule image: %s\n' "$*" >&2; }

recipe_hash="$(cat "$here/build.sh" "$here/packages.txt" | sha256sum | cut -c1-12)"
image="localhost/plantline-molecule-debian12:$recipe_hash"
if podman image exists "$image"; then
  say "reusing $image"
  echo "$image"
  exit 0
fi

[ "$(id -u)" -eq 0 ] || { say "debootstrap needs root"; exit 1; }
command -v debootstrap >/dev/null || { say "debootstrap is missing: apt-get install debootstrap"; exit 1; }

packages="$(grep -v '^\s*#' "$here/packages.txt" | tr -s ' \n' ',' | sed 's/^,//; s/,$//')"
debs="$cache/debootstrap/bookworm"
mkdir -p "$debs"
root="$(mktemp -d "${TMPDIR:-/tmp}/plantline-rootfs.XXXXXX")"
trap 'rm -rf --one-file-system "$root"' EXIT

say "debootstrap bookworm into $root (packages: $packages)"
debootstrap --variant=minbase --cache-dir="$debs" --include="$packages" bookworm "$root" "$mirror" >&2

# A container, not a machine: no getty, no udev-settle waits, no kernel-module loading, no
# timers that compete for the test's two cores. journald keeps its logs in memory.
chroot "$root" systemctl mask getty@tty1.service serial-getty@.service console-getty.service \
  systemd-udevd.service systemd-udev-trigger.service systemd-modules-load.service \
  apt-daily.timer apt-daily-upgrade.timer e2scrub_all.timer fstrim.timer man-db.timer \
  systemd-tmpfiles-clean.timer sys-kernel-config.mount >&2
# Services the roles own start only when a role asks for them; the packages' own units stay off.
chroot "$root" systemctl disable mosquitto.service ssh.service nftables.service >&2 || true
mkdir -p "$root/etc/systemd/journald.conf.d"
printf '[Journal]\nStorage=volatile\nRuntimeMaxUse=32M\n' >"$root/etc/systemd/journald.conf.d/plantline.conf"
printf 'deb %s bookworm main\n' "$mirror" >"$root/etc/apt/sources.list"
# Roles install packages with a cache_valid_time: this stamp says the package lists are current
# as of the build, so an offline converge of the preinstalled packages never needs the archive.
mkdir -p "$root/var/lib/apt/periodic"
touch "$root/var/lib/apt/periodic/update-success-stamp"
rm -f "$root/etc/machine-id" "$root/var/lib/dbus/machine-id"
touch "$root/etc/machine-id"
rm -rf "$root/var/cache/apt/archives/"*.deb "$root/usr/share/doc" "$root/usr/share/man" "$root/usr/share/locale"
rm -f "$root/etc/ssh/ssh_host_"*   # each container makes its own host keys (ssh-keygen -A in the unit)

say "importing as $image"
tar -C "$root" -c . | podman import \
  --change 'CMD ["/sbin/init"]' --change 'STOPSIGNAL SIGRTMIN+3' --change 'ENV container=podman' \
  - "$image" >&2
echo "$image"
