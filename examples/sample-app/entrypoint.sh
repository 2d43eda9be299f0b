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

# /cgi-bin/slow?N answers after N seconds (at most 60): an in-flight request for drills of
# draining (the drain must wait for it) and for latency figures.
mkdir -p /www/cgi-bin
cat >/www/cgi-bin/slow <<'CGI'
#!/bin/sh
seconds="${QUERY_STRING:-1}"
case "$seconds" in ''|*[!0-9]*) seconds=1 ;; esac
[ "$seconds" -gt 60 ] && seconds=60
sleep "$seconds"
printf 'Content-Type: text/plain\r\n\r\nslow %s after %ss\n' "$APP_VERSION" "$seconds"
CGI
chmod 0755 /www/cgi-bin/slow

# Canary-analysis drills: ERROR_PERCENT=P answers P of every 100 requests to / with a 500
# (spread evenly by a request counter, so a drill fails the same way every run) and
# EXTRA_LATENCY_MS=N delays every answer to / by N ms. Either one serves / from a CGI script
# (busybox httpd runs cgi-bin/index.cgi when there is no index.html); with neither, / stays
# a static file.
if [ -n "${ERROR_PERCENT:-}${EXTRA_LATENCY_MS:-}" ]; then
    rm -f /www/index.html
    cat >/www/cgi-bin/index.cgi <<'CGI'
#!/bin/sh
count_file=/tmp/requests
count=$(( $(cat "$count_file" 2>/dev/null || echo 0) + 1 ))
echo "$count" >"$count_file"
delay="${EXTRA_LATENCY_MS:-0}"
case "$delay" in ''|*[!0-9]*) delay=0 ;; esac
[ "$delay" -gt 0 ] && usleep $(( delay * 1000 ))
percent="${ERROR_PERCENT:-0}"
case "$percent" in ''|*[!0-9]*) percent=0 ;; esac
# Request n fails when the running count of failures should step up: P per 100, evenly.
if [ $(( count * percent / 100 )) -gt $(( (count - 1) * percent / 100 )) ]; then
    printf 'Status: 500 Internal Server Error\r\nContent-Type: text/plain\r\n\r\n'
    printf 'sample-app %s failed request %s\n' "$APP_VERSION" "$count"
    exit 0
fi
printf 'Content-Type: text/plain\r\n\r\nsample-app %s\n' "$APP_VERSION"
CGI
    chmod 0755 /www/cgi-bin/index.cgi
fi

httpd -f -p "$PORT" -h /www &
HTTPD_PID=$!

stop() {
    # SHUTDOWN_DELAY=N: keep serving N seconds after SIGTERM, as an app that finishes its
    # work before it exits (drills of a slow stop).
    if [ -n "${SHUTDOWN_DELAY:-}" ]; then
        sleep "$SHUTDOWN_DELAY"
    fi
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
