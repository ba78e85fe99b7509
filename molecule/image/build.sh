#!/usr/bin/env bash
# Build (or reuse) the Debian 12 systemd image the molecule scenarios boot, from Debian's packages only.
#
#   molecule/image/build.sh          prints the image name on stdout, building it if needed
#
# The image is `localhost/plantline-molecule-debian12:<recipe hash>`: scripts/debian-base-image.sh
# debootstraps packages.txt, runs setup.sh on the root file system and imports it with systemd as
# its command; the hash covers all three, so the image is rebuilt only when the recipe changes.
# Needs root, podman and debootstrap (apt-get install podman runc debootstrap).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
exec "$here/../../scripts/debian-base-image.sh" plantline-molecule-debian12 "$here/packages.txt" "$here/setup.sh" \
  --change 'CMD ["/sbin/init"]' --change 'STOPSIGNAL SIGRTMIN+3' --change 'ENV container=podman'
