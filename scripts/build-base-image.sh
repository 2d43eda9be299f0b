#!/usr/bin/env bash
# Build the local base image (default tag slipway/busybox:local) without pulling anything.
#
# Nothing on this machine can pull from a public registry, so the base image is made from
# Debian's busybox-static: the static binary goes into an empty rootfs with a symlink for
# every applet, and the tarball is imported with `docker import`.
#
# Usage: scripts/build-base-image.sh [TAG]    (always rebuilds; bootstrap.sh calls it only
# when the image is missing)
set -euo pipefail

TAG="${1:-${SLIPWAY_BASE_IMAGE:-slipway/busybox:local}}"

die() { echo "build-base-image: error: $*" >&2; exit 1; }

command -v docker >/dev/null 2>&1 || die "docker CLI not found (apt-get install docker.io)"
docker info >/dev/null 2>&1 || die "docker engine not reachable (is dockerd running?)"

# Locate the static binary through the package, not PATH: the dynamic `busybox` package
# installs the same name and would not run in an empty rootfs.
BUSYBOX="$(dpkg-query -L busybox-static 2>/dev/null | grep -E '/bin/busybox$' | head -n1 || true)"
[[ -n "$BUSYBOX" && -x "$BUSYBOX" ]] || die "busybox-static is not installed (apt-get install busybox-static)"

ROOTFS="$(mktemp -d)"
trap 'rm -rf "$ROOTFS"' EXIT

mkdir -p "$ROOTFS"/{bin,sbin,usr/bin,usr/sbin,etc,root,tmp,var/run}
chmod 1777 "$ROOTFS/tmp"
cp "$BUSYBOX" "$ROOTFS/bin/busybox"

# One symlink per applet at its canonical location (`--list-full` gives bin/sh,
# usr/sbin/httpd, ...), so scripts work whatever path they use (`#!/usr/bin/env sh`).
# Fall back to /bin for every name in `--list` on builds without --list-full.
if "$BUSYBOX" --list-full >/dev/null 2>&1; then
    applets="$("$BUSYBOX" --list-full)"
else
    applets="$("$BUSYBOX" --list | sed 's|^|bin/|')"
fi
count=0
while IFS= read -r path; do
    [[ -z "$path" || "$path" == "bin/busybox" || "$path" == "linuxrc" ]] && continue
    mkdir -p "$ROOTFS/$(dirname "$path")"
    ln -sf /bin/busybox "$ROOTFS/$path"
    count=$((count + 1))
done <<<"$applets"
[[ -e "$ROOTFS/bin/sh" ]] || die "busybox has no sh applet"

# Minimal identity files: httpd, id and friends look users up by name.
cat >"$ROOTFS/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
EOF
cat >"$ROOTFS/etc/group" <<'EOF'
root:x:0:
nogroup:x:65534:
EOF

tar --numeric-owner --owner=0 --group=0 -C "$ROOTFS" -c . \
    | docker import \
        --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'CMD ["/bin/sh"]' \
        --message "busybox-static $("$BUSYBOX" 2>&1 | head -n1 | awk '{print $2}') with $count applets" \
        - "$TAG" >/dev/null

echo "build-base-image: built $TAG ($count applets)"
