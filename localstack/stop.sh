#!/usr/bin/env bash
# Stops the LocalStack started by start.sh (host process or docker compose).
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
state="$root/.localstack"
mode=$(cat "$state/mode" 2>/dev/null || echo none)
if [ "$mode" = docker ]; then
  docker compose -f "$root/localstack/docker-compose.yml" down
elif [ -f "$state/pid" ]; then
  pid=$(cat "$state/pid")
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid"
    for _ in $(seq 1 20); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
    kill -KILL "$pid" 2>/dev/null || true
  fi
fi
# make demo's edge gateway (imgpipe serve) reads from this LocalStack: stop it too.
if [ -f "$state/gateway.pid" ]; then
  kill -TERM "$(cat "$state/gateway.pid")" 2>/dev/null || true
  rm -f "$state/gateway.pid"
fi
rm -f "$state/pid" "$state/mode"
echo "LocalStack stopped"
