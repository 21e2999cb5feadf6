#!/usr/bin/env bash
# Runs a command with LocalStack up: starts it if it is not already running, and stops it afterwards
# (only if this script started it), whatever the command's result.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
port=${LOCALSTACK_PORT:-4566}
started=0
if ! curl -fsS "http://127.0.0.1:${port}/_localstack/health" >/dev/null 2>&1; then
  "$here/start.sh" || exit 1
  started=1
fi
"$@"
rc=$?
if [ "$started" = 1 ]; then "$here/stop.sh" >/dev/null; fi
exit $rc
