#!/usr/bin/env bash
# Starts LocalStack 4.13.1 and waits until it is healthy.
# - With a Docker daemon: docker compose (localstack/docker-compose.yml, pinned image).
# - Without one (CI, this repo's dev machines): on the host from the project venv (.venv, made by `make setup`).
# State lives in .localstack/ and is not persisted across restarts.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
port=${LOCALSTACK_PORT:-4566}
endpoint="http://127.0.0.1:${port}"
state="$root/.localstack"
mkdir -p "$state"

healthy() { curl -fsS "$endpoint/_localstack/health" >/dev/null 2>&1; }

if healthy; then
  echo "LocalStack already answers at $endpoint"
  exit 0
fi

if [ "${LOCALSTACK_MODE:-auto}" != host ] && docker info >/dev/null 2>&1; then
  echo "Starting LocalStack with docker compose"
  docker compose -f "$root/localstack/docker-compose.yml" up -d
  echo docker > "$state/mode"
else
  [ -x "$root/.venv/bin/python" ] || { echo "no .venv: run 'make setup' first" >&2; exit 1; }
  echo "Starting LocalStack on the host (no Docker daemon); log: .localstack/localstack.log"
  rm -rf "$state/fs"
  mkdir -p "$state/fs"
  GATEWAY_LISTEN="127.0.0.1:${port}" \
  LOCALSTACK_HOST="127.0.0.1:${port}" \
  AWS_DEFAULT_REGION=us-east-1 \
  SERVICES=s3,sqs,sns,ssm,iam,sts,cloudformation,cloudwatch,logs \
  DISABLE_EVENTS=1 \
  SQS_ENDPOINT_STRATEGY=path \
  S3_SKIP_SIGNATURE_VALIDATION=0 \
  OVERRIDE_IN_DOCKER=0 \
  FILESYSTEM_ROOT="$state/fs" \
    nohup "$root/.venv/bin/python" -m localstack.runtime.main >"$state/localstack.log" 2>&1 &
  echo $! > "$state/pid"
  echo host > "$state/mode"
fi

for _ in $(seq 1 120); do
  if healthy; then
    echo "LocalStack ready at $endpoint"
    exit 0
  fi
  sleep 0.5
done
echo "LocalStack did not become healthy within 60 s; last log lines:" >&2
tail -n 30 "$state/localstack.log" >&2 2>/dev/null || true
exit 1
