#!/usr/bin/env bash
# Several Docker hosts on this machine (root only): a network namespace per host, each with
# its own dockerd and address. The implementation is tests/support/fleet.py (the `fleet`
# pytest fixture is the same code):
#
#   scripts/fleet-testbed.sh up [N]            start N hosts (default 3); prints engines and a
#                                              SLIPWAY_CLUSTERS value, and the test bed's ID
#   scripts/fleet-testbed.sh list              test beds on this machine and their owners
#   scripts/fleet-testbed.sh status ID         hosts, dockerd pids, containers
#   scripts/fleet-testbed.sh forward ID PORT   root 127.0.0.1:PORT as 127.0.0.1:PORT in every host
#   scripts/fleet-testbed.sh docker ID I ARGS  the docker CLI against host I
#   scripts/fleet-testbed.sh exec ID I CMD     CMD inside host I's network namespace
#   scripts/fleet-testbed.sh down ID           stop it; exits 1 if anything was left behind
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
exec "$REPO/.venv/bin/python" -m tests.support.fleet "$@"
