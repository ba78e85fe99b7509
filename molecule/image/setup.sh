#!/usr/bin/env bash
# Turn the debootstrapped root file system $1 into the molecule scenarios' systemd container
# (run by scripts/debian-base-image.sh through build.sh).
set -euo pipefail
root="$1"
# A container, not a machine: no getty, no udev-settle waits, no kernel-module loading, no
# timers that compete for the test's two cores. journald keeps its logs in memory.
chroot "$root" systemctl mask getty@tty1.service serial-getty@.service console-getty.service \
  systemd-udevd.service systemd-udev-trigger.service systemd-modules-load.service \
  apt-daily.timer apt-daily-upgrade.timer e2scrub_all.timer fstrim.timer man-db.timer \
  systemd-tmpfiles-clean.timer sys-kernel-config.mount
# Services the roles own start only when a role asks for them; the packages' own units stay off.
chroot "$root" systemctl disable mosquitto.service ssh.service nftables.service || true
mkdir -p "$root/etc/systemd/journald.conf.d"
printf '[Journal]\nStorage=volatile\nRuntimeMaxUse=32M\n' >"$root/etc/systemd/journald.conf.d/plantline.conf"
# Roles install packages with a cache_valid_time: this stamp says the package lists are current
# as of the build, so an offline converge of the preinstalled packages never needs the archive.
mkdir -p "$root/var/lib/apt/periodic"
touch "$root/var/lib/apt/periodic/update-success-stamp"
rm -f "$root/etc/machine-id" "$root/var/lib/dbus/machine-id"
touch "$root/etc/machine-id"
rm -f "$root/etc/ssh/ssh_host_"*   # each container makes its own host keys (ssh-keygen -A in the unit)
