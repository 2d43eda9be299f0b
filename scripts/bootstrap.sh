#!/usr/bin/env bash
# Bring a fresh Debian 12 machine (as root) to the point where `make demo` and `make test` run:
#   1. Debian packages (installed only when missing; apt-get update only then too)
#   2. .venv with `pip install -e '.[dev,postgres]'` (skipped while pyproject.toml is unchanged)
#   3. a running dockerd (started detached when `docker info` fails)
#   4. the local base image slipway/busybox:local (nothing can be pulled here)
#   5. with --kubernetes (what `make test` passes): the Kubernetes server binaries the tests'
#      control plane runs, built once by scripts/kubernetes/build.sh (~6 min) and cached in
#      /var/cache/slipway/kubernetes, plus etcd and openssl
# Idempotent and quiet: a warm machine finishes in about a second. Needs no TTY (CI has no
# stdin). Set BOOTSTRAP_VERBOSE=1 to see the commands' own output.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"

# iproute2 (ip netns), util-linux (nsenter, umount), iptables: the Docker fleet test bed's
# namespace hosts, each with its own dockerd (tests/support/fleet.py).
# postgresql: the catalogue of tests where several processes write (tests/support/postgres.py).
# redis-server: the message lanes' broker in tests (tests/support/redis_server.py starts its own).
PACKAGES=(docker.io docker-registry haproxy prometheus busybox-static apache2-utils docker-compose git curl ca-certificates
          python3.11 python3.11-venv bind9 bind9-utils chromium chromium-driver fonts-dejavu-core
          iproute2 util-linux iptables postgresql redis-server)
INSTALLED_NOW=()  # the packages this run installed
VENV="$REPO/.venv"
EXTRAS="dev,postgres"
STAMP="$VENV/.slipway-pyproject.sha256"
BASE_IMAGE="${SLIPWAY_BASE_IMAGE:-slipway/busybox:local}"
DOCKERD_LOG="/var/log/dockerd.log"
DOCKER_WAIT_SECONDS=60
LOG_DIR="$(mktemp -d)"
trap 'rm -rf "$LOG_DIR"' EXIT

say() { echo "bootstrap: $*"; }
die() { echo "bootstrap: error: $*" >&2; exit 1; }

# Run a noisy command; keep its output in a log and show the tail only when it fails.
quiet() {
    local name="$1"; shift
    if [[ "${BOOTSTRAP_VERBOSE:-0}" == "1" ]]; then
        "$@" </dev/null
        return
    fi
    if ! "$@" </dev/null >"$LOG_DIR/$name.log" 2>&1; then
        echo "bootstrap: error: '$*' failed; last lines:" >&2
        tail -n 30 "$LOG_DIR/$name.log" >&2
        exit 1
    fi
}

is_installed() {
    [[ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null || true)" == "install ok installed" ]]
}

ensure_packages() {
    local missing=() pkg
    for pkg in "${PACKAGES[@]}"; do
        is_installed "$pkg" || missing+=("$pkg")
    done
    [[ ${#missing[@]} -eq 0 ]] && return 0
    [[ "$(id -u)" -eq 0 ]] || die "missing Debian packages (${missing[*]}); run this script as root"
    say "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    quiet apt-update apt-get update -qq
    quiet apt-install apt-get install -y -qq --no-install-recommends \
        -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold "${missing[@]}"
    INSTALLED_NOW=("${missing[@]}")
}

# Installing redis-server starts Debian's daemon on 127.0.0.1:6379 (where services may start)
# and enables it at boot. The tests start a Redis of their own (free port, own password);
# a system one left running could be reached by mistake, so the one this run installed is
# stopped and disabled. A redis-server that was installed before is the machine owner's:
# left alone.
quiet_new_system_redis() {
    [[ " ${INSTALLED_NOW[*]} " == *" redis-server "* ]] || return 0
    if [[ -d /run/systemd/system ]]; then
        systemctl disable --now --quiet redis-server >/dev/null 2>&1 || true
    else
        /etc/init.d/redis-server stop >/dev/null 2>&1 || true
        update-rc.d redis-server disable >/dev/null 2>&1 || true
    fi
    local pid=""
    pid="$(cat /run/redis/redis-server.pid 2>/dev/null || true)"
    if [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null; then
        die "the system redis-server (pid $pid) is still running after 'stop': stop it by hand"
    fi
    say "system redis-server stopped and disabled (tests start their own)"
}

pick_python() {
    # SLIPWAY_PYTHON wins; otherwise python3.11 on PATH (pyenv or Debian), then Debian's.
    local candidate
    for candidate in "${SLIPWAY_PYTHON:-}" "$(command -v python3.11 || true)" /usr/bin/python3.11; do
        if [[ -n "$candidate" ]] && "$candidate" -c 'import sys, venv; assert sys.version_info[:2] == (3, 11)' \
            >/dev/null 2>&1; then
            echo "$candidate"
            return 0
        fi
    done
    die "no Python 3.11 with the venv module found (apt-get install python3.11 python3.11-venv)"
}

ensure_venv() {
    # A venv whose interpreter no longer runs (e.g. its base Python was removed) is rebuilt.
    if [[ -x "$VENV/bin/python" ]] && ! "$VENV/bin/python" -c 'import sys' >/dev/null 2>&1; then
        say "existing .venv is broken; recreating it"
        rm -rf "$VENV"
    fi
    if [[ ! -x "$VENV/bin/python" ]]; then
        local python
        python="$(pick_python)"
        say "creating .venv with $python"
        quiet venv "$python" -m venv "$VENV"
    fi
    local want
    # The extras are part of what was installed: a venv made without one is made again.
    want="$({ cat pyproject.toml; echo "extras: $EXTRAS"; } | sha256sum | cut -d' ' -f1)"
    if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$want" && -x "$VENV/bin/pytest" ]]; then
        return 0
    fi
    say "installing Python dependencies into .venv (pip install -e '.[$EXTRAS]')"
    quiet pip "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check \
        --no-input -e ".[$EXTRAS]"
    echo "$want" >"$STAMP"
}

dockerd_pid_alive() {
    local pid
    [[ -f /var/run/docker.pid ]] || return 1
    pid="$(cat /var/run/docker.pid 2>/dev/null || true)"
    [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null
}

wait_for_docker() {
    local start=$SECONDS
    while (( SECONDS - start < DOCKER_WAIT_SECONDS )); do
        docker info >/dev/null 2>&1 && return 0
        # dockerd exited on its own (bad config, iptables, ...): stop waiting. The grace
        # period covers the moment before it has written its pid file.
        if (( SECONDS - start >= 3 )) && ! dockerd_pid_alive; then
            return 1
        fi
        sleep 0.5
    done
    return 1
}

start_dockerd() {
    # --live-restore: containers keep running while dockerd itself restarts or is upgraded;
    # a release in flight waits for the engine to answer. Their published ports stay up only
    # without the userland proxy (iptables DNAT, which outlives dockerd): docker-proxy
    # processes die with the daemon.
    # setsid + all fds redirected: the daemon must outlive this script and must not hold the
    # caller's stdout open (CI waits for every holder of its pipe).
    setsid dockerd --host unix:///var/run/docker.sock --live-restore "$@" \
        </dev/null >>"$DOCKERD_LOG" 2>&1 &
}

ensure_docker() {
    docker info >/dev/null 2>&1 && return 0
    [[ "$(id -u)" -eq 0 ]] || die "docker engine is not running and only root can start it"
    if dockerd_pid_alive; then
        say "dockerd is starting; waiting for it"
    else
        # A pid file left by a killed daemon makes dockerd refuse to start.
        rm -f /var/run/docker.pid
        say "starting dockerd (log: $DOCKERD_LOG)"
        start_dockerd --userland-proxy=false
    fi
    wait_for_docker && return 0
    # Some kernels have no usable iptables/nftables. Published loopback ports still work
    # through docker-proxy without NAT rules, so retry once without iptables.
    if grep -qiE 'iptables|nf_tables|nat' "$DOCKERD_LOG" 2>/dev/null && ! dockerd_pid_alive; then
        say "dockerd failed on iptables; retrying with --iptables=false"
        rm -f /var/run/docker.pid
        start_dockerd --iptables=false --ip-masq=false
        wait_for_docker && return 0
    fi
    echo "bootstrap: error: dockerd did not answer within ${DOCKER_WAIT_SECONDS}s; last log lines:" >&2
    tail -n 20 "$DOCKERD_LOG" >&2 || true
    exit 1
}

ensure_base_image() {
    docker image inspect "$BASE_IMAGE" >/dev/null 2>&1 && return 0
    say "building base image $BASE_IMAGE"
    quiet base-image bash "$REPO/scripts/build-base-image.sh" "$BASE_IMAGE"
}

ensure_kubernetes() {
    local bin
    bin="$(bash "$REPO/scripts/kubernetes/build.sh")" || die "building the Kubernetes server binaries failed"
    say "Kubernetes server binaries in $bin"
}

main() {
    local start=$SECONDS kubernetes=0
    case "${1:-}" in
        --kubernetes) kubernetes=1 ;;
        "") ;;
        *) die "unknown option '$1' (usage: bootstrap.sh [--kubernetes])" ;;
    esac
    # etcd-server and openssl: the tests' Kubernetes control plane (tests/support/kube_server.py).
    (( kubernetes )) && PACKAGES+=(etcd-server openssl)
    ensure_packages
    quiet_new_system_redis
    ensure_venv
    ensure_docker
    ensure_base_image
    (( kubernetes )) && ensure_kubernetes
    say "ready in $((SECONDS - start))s (venv, dockerd, $BASE_IMAGE$( (( kubernetes )) && echo ", Kubernetes"))"
}

main "$@"
