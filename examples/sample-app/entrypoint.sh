#!/bin/sh
# Serve /www on :8080 and exit promptly on SIGTERM/SIGINT.
#
# busybox httpd running as PID 1 ignores SIGTERM (the kernel drops signals PID 1 has no
# handler for), so `docker stop` would wait its whole grace period. Instead this shell is
# PID 1: httpd runs as a child in the foreground (-f) and the trap forwards the signal.
set -eu

VERSION="${APP_VERSION:-dev}"
PORT="${PORT:-8080}"

mkdir -p /www
printf 'sample-app %s\n' "$VERSION" >/www/index.html
printf 'ok %s\n' "$VERSION" >/www/healthz

# A deliberately bad build for rollback drills: /healthz starts failing after N seconds.
if [ -n "${FAIL_HEALTH_AFTER:-}" ]; then
    (sleep "$FAIL_HEALTH_AFTER" && rm -f /www/healthz) &
fi

httpd -f -p "$PORT" -h /www &
HTTPD_PID=$!

stop() {
    kill -TERM "$HTTPD_PID" 2>/dev/null || true
    wait "$HTTPD_PID" 2>/dev/null || true
    exit 0
}
trap stop TERM INT

echo "sample-app $VERSION listening on :$PORT"
# `wait` returns early when a trapped signal arrives; the trap then exits. If httpd dies
# by itself, exit with its status so the engine sees the failure.
set +e
wait "$HTTPD_PID"
status=$?
exit "$status"
