#!/usr/bin/env bash
# Run the SDK's tests against a private dejimad: a fresh DEJIMA_HOME, a free loopback port;
# the daemon is stopped and the home removed afterwards.
#   sdk/python/tests/run-with-daemon.sh [path/to/dejimad] [pytest args...]
# Environment: PYTHON (default python3, with the SDK, pytest and websocket-client installed),
# DEJIMAD_ARGS (extra daemon flags, e.g. "--host-terminals --require-token").
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
dejimad=${1:-${DEJIMAD:-dejimad}}
[ $# -gt 0 ] && shift
python=${PYTHON:-python3}
home=$(mktemp -d /tmp/dejima-sdk-test.XXXXXX)
port=$("$python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
# shellcheck disable=SC2086
DEJIMA_HOME=$home DEJIMA_LABELS=${DEJIMA_LABELS:-dejima.test=1} \
  "$dejimad" --tcp "127.0.0.1:$port" ${DEJIMAD_ARGS:-} >"$home/dejimad.log" 2>&1 &
pid=$!
cleanup() {
  kill "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  rm -rf "$home"
}
trap cleanup EXIT
# Poll (with a deadline) until the daemon answers on its socket.
deadline=$((SECONDS + 30))
until DEJIMA_HOME=$home "$python" -c 'import dejima; dejima.Client(timeout=2).healthz()' 2>/dev/null; do
  if ! kill -0 "$pid" 2>/dev/null || [ $SECONDS -ge $deadline ]; then
    echo "dejimad did not come up:" >&2
    cat "$home/dejimad.log" >&2
    exit 1
  fi
  sleep 0.1
done
DEJIMA_HOME=$home DEJIMA_TEST_TCP=127.0.0.1:$port "$python" -m pytest "$here" "$@"
