#!/usr/bin/env bash
# Build the Kubernetes v1.20.2 server binaries the test suite's control plane runs
# (kube-apiserver, kube-controller-manager, kube-scheduler, kubemark) from Debian bookworm's
# `kubernetes` source package, offline: that package ships its Go dependencies in vendor/,
# and nothing else here can provide a kube-apiserver (no Go module proxy, no binaries on
# PyPI/npm).
#
# Usage: build.sh            prints the binary directory, building it first when missing
# The binaries are cached outside the work tree under SLIPWAY_KUBE_CACHE (default
# /var/cache/slipway/kubernetes), keyed by a hash of this script and its patches, so CI and
# every later run on the machine reuse them. About 6 minutes on 2 cores from scratch.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
DEBIAN_VERSION="1.20.5+really1.20.2-1.1+deb12u1"
# What the servers report as their version (GET /version): the build metadata says they
# carry the pod-deletion-cost backport, which is what Slipway's version check looks for.
KUBE_VERSION="v1.20.2+pod-deletion-cost"
BINARIES=(kube-apiserver kube-controller-manager kube-scheduler kubemark)
CACHE="${SLIPWAY_KUBE_CACHE:-/var/cache/slipway/kubernetes}"
# The cache key is what the binaries are made of (not this script's comments): bump RECIPE
# when the steps below change what is built.
RECIPE=2
KEY="$({ echo "$RECIPE $DEBIAN_VERSION $KUBE_VERSION ${BINARIES[*]}"; cat "$HERE"/*.patch; } \
       | sha256sum | cut -c1-16)"
OUT="$CACHE/$KEY"

have_all() {
    local b
    for b in "${BINARIES[@]}"; do [[ -x "$OUT/bin/$b" ]] || return 1; done
}

if have_all; then
    echo "$OUT/bin"
    exit 0
fi

say() { echo "kubernetes/build.sh: $*" >&2; }
[[ "$(id -u)" -eq 0 ]] || { say "error: building needs root (apt-get)"; exit 1; }

# One build at a time on a machine; a second caller waits for the first one's result.
mkdir -p "$CACHE"
exec 9>"$CACHE/.build.lock"
flock 9
if have_all; then echo "$OUT/bin"; exit 0; fi

WORK="$(mktemp -d "$CACHE/.work.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT
say "building Kubernetes server binaries into $OUT (about 6 minutes; log: $WORK/make.log)"

export DEBIAN_FRONTEND=noninteractive
install_build_packages() {
    apt-get -o DPkg::Lock::Timeout=900 install -y -qq --no-install-recommends \
        golang-go rsync etcd-server golang-github-modern-go-reflect2-dev >/dev/null
}
# A machine whose package lists are missing or stale gets them first.
install_build_packages || { apt-get update -qq && install_build_packages; }

# A deb-src line for the mirror apt already uses, in a private list: the machine's own
# sources and package lists stay as they are.
uri="$(awk '/^URIs:/{print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)"
[[ -n "$uri" ]] || uri="$(awk '$1=="deb"{print $2; exit}' /etc/apt/sources.list)"
mkdir -p "$WORK/lists/partial" "$WORK/src"
echo "deb-src $uri bookworm main" >"$WORK/src.list"
APT=(-o APT::Sandbox::User=root -o "Dir::Etc::SourceList=$WORK/src.list" -o Dir::Etc::SourceParts=/nonexistent
     -o "Dir::State::Lists=$WORK/lists")
apt-get "${APT[@]}" update -qq
(cd "$WORK/src" && apt-get "${APT[@]}" source --download-only -qq "kubernetes=$DEBIAN_VERSION" >/dev/null)

cd "$WORK/src"
tar -xzf kubernetes_*.orig.tar.gz
mkdir -p deb && tar -xJf kubernetes_*.debian.tar.xz -C deb
cd kubernetes-1.20.2
while read -r p; do
    [[ -z "$p" || "$p" == \#* ]] || patch -p1 -s <"../deb/debian/patches/$p"
done <../deb/debian/patches/series
# The vendored reflect2 1.0.1 panics at run time when built with Go >= 1.18; Debian's 1.0.2
# is the fixed release of the same module.
rm -rf vendor/github.com/modern-go/reflect2
cp -r /usr/share/gocode/src/github.com/modern-go/reflect2 vendor/github.com/modern-go/reflect2
rm -f vendor/github.com/modern-go/reflect2/go.mod
# Our patches (docs/kubernetes.md): pod-deletion-cost.patch backports 1.21's ordering into
# the ReplicaSet controller; hollow-node-loopback.patch gives the hollow node's pods a
# loopback address, so its readiness probes reach the tests' health server and nothing else.
for p in "$HERE"/*.patch; do patch -p0 -s <"$p"; done

# The tarball is a `git archive` whose hack/lib/version.sh has the version baked in; a
# version file is the one input that wins over it.
commit="$(grep -o "KUBE_GIT_COMMIT='[0-9a-f]\{40\}'" hack/lib/version.sh | head -1 | cut -d"'" -f2 || true)"
cat >"$WORK/version.vars" <<VARS
KUBE_GIT_COMMIT='${commit}'
KUBE_GIT_TREE_STATE='clean'
KUBE_GIT_VERSION='${KUBE_VERSION}'
KUBE_GIT_MAJOR='1'
KUBE_GIT_MINOR='20'
VARS

mkdir -p .go/src/k8s.io && ln -sfn ../../.. .go/src/k8s.io/kubernetes
export GOPATH="$PWD/.go" GOCACHE="$WORK/gocache" HOME="$WORK/home" CGO_ENABLED=0 \
    KUBE_GIT_VERSION_FILE="$WORK/version.vars" GOLDFLAGS="-s -w"
mkdir -p "$HOME"
what=""
for b in "${BINARIES[@]}"; do what="$what cmd/$b"; done
if ! make WHAT="${what# }" >"$WORK/make.log" 2>&1; then
    say "error: make failed; last lines:"; tail -n 30 "$WORK/make.log" >&2; exit 1
fi
mkdir -p "$OUT.tmp/bin"
for b in "${BINARIES[@]}"; do cp "_output/bin/$b" "$OUT.tmp/bin/"; done
if ! "$OUT.tmp/bin/kube-apiserver" --version | grep -qF "$KUBE_VERSION"; then
    say "error: the build reports $("$OUT.tmp/bin/kube-apiserver" --version), not $KUBE_VERSION"
    exit 1
fi
rm -rf "$OUT" && mv "$OUT.tmp" "$OUT"
say "built in $SECONDS s"
echo "$OUT/bin"
