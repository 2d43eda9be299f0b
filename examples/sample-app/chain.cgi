#!/bin/sh
# GET /cgi-bin/chain: one hop of a call chain a -> b -> c made of containers of this image.
#
# Answers one line, "<SERVICE_NAME>[@<SLIPWAY_LANE>] <APP_VERSION>" plus " lane=<key>" when the request
# carried a lane key, and, when DOWNSTREAM_URL is set, " -> " and the downstream's own
# /cgi-bin/chain answer: "a 1.0 lane=l1 -> b 2.0 lane=l1 -> c 1.0 lane=l1".
#
# The lane key travels as Slipway's services must carry it: the incoming x-slipway-lane and
# baggage headers (busybox httpd hands every request header to CGI as HTTP_<NAME>) are
# copied unchanged onto the downstream call. A failed downstream call answers 502 with a
# line naming the hop that failed; an upstream hop passes that line on behind its own name.
#
# The call is a raw HTTP/1.0 request through busybox nc rather than wget: busybox wget
# prints no body on an error status, so it could not pass on which hop failed.

name="${SERVICE_NAME:-sample-app}"
# An instance Slipway runs in a lane (SLIPWAY_LANE set) names itself <name>@<lane>, so a
# chain's answer shows which hops the lane served: "a 1.0 -> b@l1 2.0 -> c 1.0".
[ -n "${SLIPWAY_LANE:-}" ] && name="$name@$SLIPWAY_LANE"
version="${APP_VERSION:-dev}"
limit="${DOWNSTREAM_TIMEOUT:-10}"
case "$limit" in ''|*[!0-9]*) limit=10 ;; esac

# The headers as received (httpd has already dropped the line's CR; drop any stray one so a
# value can never split the request written below).
lane_header="$(printf '%s' "${HTTP_X_SLIPWAY_LANE:-}" | tr -d '\r\n')"
baggage="$(printf '%s' "${HTTP_BAGGAGE:-}" | tr -d '\r\n')"

# The key shown in the answer: x-slipway-lane wins over the baggage member slipway-lane.
lane="$(printf '%s' "$lane_header" | sed 's/^[[:blank:]]*//; s/[[:blank:]]*$//')"
if [ -z "$lane" ] && [ -n "$baggage" ]; then
    lane="$(printf '%s\n' "$baggage" | tr ',' '\n' \
        | sed -n 's/^[[:blank:]]*slipway-lane[[:blank:]]*=[[:blank:]]*\([^;]*\).*$/\1/p' \
        | head -n 1 | sed 's/[[:blank:]]*$//')"
fi
me="$name $version"
[ -n "$lane" ] && me="$me lane=$lane"

answer() {  # answer STATUS LINE [EXTRA_HEADER_LINE]
    printf 'Status: %s\r\nContent-Type: text/plain\r\n' "$1"
    [ -n "${3:-}" ] && printf '%s\r\n' "$3"
    printf '\r\n%s\n' "$2"
    exit 0
}
# Marks an answer that already names the failed hop, so the hops above only prefix it.
FAILED_MARK='X-Sample-Chain: failed'
fail() {  # fail REASON
    answer '502 Bad Gateway' \
        "$me -> error: $name failed to call its downstream $target: $1" "$FAILED_MARK"
}

if [ -z "${DOWNSTREAM_URL:-}" ]; then
    answer '200 OK' "$me"
fi

# DOWNSTREAM_URL: http://HOST[:PORT][/PREFIX]; the call goes to PREFIX/cgi-bin/chain.
base="${DOWNSTREAM_URL%/}"
target="$base/cgi-bin/chain"
case "$base" in
    http://?*) rest="${base#http://}" ;;
    *) fail "DOWNSTREAM_URL must look like http://host[:port], not '$DOWNSTREAM_URL'" ;;
esac
hostport="${rest%%/*}"
prefix=""
[ "$rest" != "$hostport" ] && prefix="/${rest#*/}"
case "$hostport" in
    \[*\]:*) host="${hostport%\]:*}"; host="${host#\[}"; port="${hostport##*\]:}" ;;
    \[*\]) host="${hostport#\[}"; host="${host%\]}"; port=80 ;;
    *:*) host="${hostport%:*}"; port="${hostport##*:}" ;;
    *) host="$hostport"; port=80 ;;
esac
case "$port" in ''|*[!0-9]*) fail "bad port in DOWNSTREAM_URL '$DOWNSTREAM_URL'" ;; esac

response="$(mktemp)"
errors="$(mktemp)"
trap 'rm -f "$response" "$errors"' EXIT

{
    printf 'GET %s/cgi-bin/chain HTTP/1.0\r\n' "$prefix"
    printf 'Host: %s\r\nUser-Agent: sample-app-chain\r\nConnection: close\r\n' "$hostport"
    # Forwarded when present, as received.
    [ -n "${HTTP_X_SLIPWAY_LANE+set}" ] && printf 'x-slipway-lane: %s\r\n' "$lane_header"
    [ -n "${HTTP_BAGGAGE+set}" ] && printf 'baggage: %s\r\n' "$baggage"
    printf '\r\n'
} | timeout "$limit" nc -w "$limit" "$host" "$port" >"$response" 2>"$errors"

status_line="$(head -n 1 "$response" | tr -d '\r')"
case "$status_line" in
    HTTP/*' '[0-9][0-9][0-9]*) ;;
    *)
        reason="$(grep -m 1 . "$errors" | sed 's/^nc: //')"
        [ -n "$reason" ] || reason="no HTTP answer within ${limit}s"
        fail "$reason"
        ;;
esac
code="$(printf '%s' "$status_line" | cut -d ' ' -f 2)"
headers="$(tr -d '\r' <"$response" | sed -n '2,/^$/p')"
body="$(tr -d '\r' <"$response" | sed '1,/^$/d' | grep -m 1 . | cut -c 1-300)"

if [ "$code" = 200 ] && [ -n "$body" ]; then
    answer '200 OK' "$me -> $body"
fi
if printf '%s\n' "$headers" | grep -qi "^$FAILED_MARK\$"; then
    # The downstream's line already says which hop failed.
    answer '502 Bad Gateway' "$me -> $body" "$FAILED_MARK"
fi
fail "answered ${status_line#* }${body:+: $body}"
