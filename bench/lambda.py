#!/usr/bin/env python3
"""`make bench-lambda`: Lambda figures of the `derive` and `api` functions, measured here.

- Binary size of the release `derive` (and of the arm64 `bootstrap.zip` when `make lambda` built one).
- Init time: exec of `derive` under a stub of the Lambda Runtime API until its first
  `GET /runtime/invocation/next` (= ready for an event), median of BENCH_INIT_RUNS (default 20) starts.
  The stub is the same protocol Lambda serves; no network is touched at init (AWS clients are lazy).
- Upload API cold start: the same for `api`, then the first event (an API Gateway HTTP API
  `POST /v1/uploads`) until its response is posted back: exec → first answer, the latency a cold
  Lambda adds to an app's first request (signing credentials come from the environment, as on Lambda).
- Cost per 1 M images at 1 769 MB arm64 (one full vCPU), from the measured 1-thread milliseconds per image
  of task (b) in target/bench/results.json (`make bench` writes it). Compute only, measured on this
  machine's CPU, not on Graviton: read it as an estimate, and add the S3/SQS request costs listed.

Prints a table and writes target/bench/lambda.json. Nothing here is a pass/fail test.
"""
import http.server
import json
import os
import pathlib
import statistics
import subprocess
import threading
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
# cargo's target directory: ./target, or CARGO_TARGET_DIR (make test under CI=true builds outside the clone)
TARGET = pathlib.Path(os.environ.get("CARGO_TARGET_DIR") or ROOT / "target")
OUT = TARGET / "bench"
DERIVE = TARGET / "release" / "derive"
RUNS = int(os.environ.get("BENCH_INIT_RUNS", "20"))

# us-east-1 list prices (2026): Lambda arm64 duration per GB-s and per request; S3 Standard PUT/GET per
# request; SQS standard per request (64 KiB chunks). Change here if yours differ.
LAMBDA_ARM64_GB_S = 0.0000133334
LAMBDA_REQUEST = 0.20 / 1e6
S3_PUT = 0.005 / 1000
S3_GET = 0.0004 / 1000
SQS_REQUEST = 0.40 / 1e6
MEMORY_MB = 1769


API = TARGET / "release" / "api"
UPLOAD_BODY = json.dumps({"filename": "cold start.jpg", "content_type": "image/jpeg", "bytes": 2500000})
# An API Gateway HTTP API (payload 2.0) event, as Lambda hands it to the function.
API_EVENT = json.dumps({
    "version": "2.0", "routeKey": "ANY /v1/{proxy+}", "rawPath": "/v1/uploads", "rawQueryString": "",
    "headers": {"content-type": "application/json", "host": "abc123.execute-api.us-east-1.amazonaws.com",
                "x-forwarded-proto": "https"},
    "requestContext": {"accountId": "000000000000", "apiId": "abc123", "domainName": "abc123.execute-api.us-east-1.amazonaws.com",
                       "domainPrefix": "abc123", "http": {"method": "POST", "path": "/v1/uploads", "protocol": "HTTP/1.1",
                                                          "sourceIp": "203.0.113.7", "userAgent": "bench"},
                       "requestId": "bench-1", "routeKey": "ANY /v1/{proxy+}", "stage": "$default",
                       "time": "30/Nov/2026:16:00:00 +0000", "timeEpoch": 1796054400000},
    "body": UPLOAD_BODY, "isBase64Encoded": False}).encode()


class Stub(http.server.BaseHTTPRequestHandler):
    """The Lambda Runtime API: records when the function first asks for an event; serves `event`
    once when one is set and records when its response arrives; holds later requests open."""

    protocol_version = "HTTP/1.1"
    event = None
    ready_at = answered_at = None
    answer = b""
    ready = threading.Event()
    answered = threading.Event()
    release = threading.Event()

    def do_GET(self):  # noqa: N802 - http.server's naming
        if self.path.endswith("/runtime/invocation/next"):
            first = Stub.ready_at is None
            if first:
                Stub.ready_at = time.perf_counter()
                Stub.ready.set()
            if first and Stub.event is not None:
                self.send_response(200)
                for name, value in [("Content-Type", "application/json"), ("Content-Length", str(len(Stub.event))),
                                    ("Lambda-Runtime-Aws-Request-Id", "bench-1"),
                                    ("Lambda-Runtime-Deadline-Ms", str(int(time.time() * 1000) + 60000)),
                                    ("Lambda-Runtime-Invoked-Function-Arn", "arn:aws:lambda:us-east-1:000000000000:function:api"),
                                    ("Lambda-Runtime-Trace-Id", "Root=1-5759e988-bd862e3fe1be46a994272793;Sampled=1")]:
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(Stub.event)
                return
            Stub.release.wait(10)
        self.send_response(404)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_POST(self):  # noqa: N802
        Stub.answer = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        Stub.answered_at = time.perf_counter()
        Stub.answered.set()
        self.send_response(202)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


class QuietServer(http.server.ThreadingHTTPServer):
    def handle_error(self, request, client_address):
        pass  # the function is killed mid-request after each start; that is expected


def lambda_starts(binary, env, event=None):
    """(init ms, first answer ms or None) for each of BENCH_INIT_RUNS starts of `binary` under the stub."""
    starts = []
    for _ in range(RUNS + 1):  # the first start warms the page cache and is dropped
        # A fresh stub per start: a killed process's last request must not reach the next one's.
        server = QuietServer(("127.0.0.1", 0), Stub)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        run_env = dict(os.environ, AWS_LAMBDA_RUNTIME_API=f"127.0.0.1:{server.server_port}",
                       AWS_LAMBDA_FUNCTION_NAME=binary.name, AWS_LAMBDA_FUNCTION_MEMORY_SIZE=str(MEMORY_MB),
                       AWS_LAMBDA_FUNCTION_VERSION="$LATEST", AWS_LAMBDA_LOG_GROUP_NAME=f"/aws/lambda/{binary.name}",
                       AWS_LAMBDA_LOG_STREAM_NAME="bench", AWS_REGION="us-east-1", AWS_ACCESS_KEY_ID="bench",
                       AWS_SECRET_ACCESS_KEY="bench", AWS_SESSION_TOKEN="bench-token", RUST_LOG="warn", **env)
        Stub.event, Stub.ready_at, Stub.answered_at = event, None, None
        Stub.ready, Stub.answered, Stub.release = threading.Event(), threading.Event(), threading.Event()
        started = time.perf_counter()
        proc = subprocess.Popen([binary], env=run_env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if not Stub.ready.wait(10) or (event is not None and not Stub.answered.wait(10)):
            proc.kill()
            raise SystemExit(f"{binary.name} did not get ready / answer under the Runtime API stub")
        if event is not None and json.loads(Stub.answer).get("statusCode") != 201:
            raise SystemExit(f"{binary.name} answered {Stub.answer[:300]!r}")
        answered = (Stub.answered_at - started) * 1e3 if event is not None else None
        starts.append(((Stub.ready_at - started) * 1e3, answered))
        proc.kill()
        proc.wait()
        Stub.release.set()
        server.shutdown()
        server.server_close()
    return starts[1:]


def init_times():
    env = {"IMGPIPE_INGEST_BUCKET": "bench-ingest", "IMGPIPE_OUTPUT_BUCKET": "bench-derivatives",
           "IMGPIPE_DLQ_URL": "https://sqs.us-east-1.amazonaws.com/000000000000/bench-dlq"}
    return [init for init, _ in lambda_starts(DERIVE, env)]


def p90(values):
    return sorted(values)[int(len(values) * 0.9) - 1]


def main():
    subprocess.run(["cargo", "build", "--release", "-q", "-p", "imgpipe-derive", "-p", "imgpipe-api"], cwd=ROOT,
                   check=True)
    times = init_times()
    result = {
        "derive_binary_bytes": DERIVE.stat().st_size,
        "init_ms_median": statistics.median(times),
        "init_ms_p90": p90(times),
        "init_runs": len(times),
    }
    api = lambda_starts(API, {"IMGPIPE_INGEST_BUCKET": "bench-ingest", "IMGPIPE_OUTPUT_BUCKET": "bench-derivatives"},
                        API_EVENT)
    api_init, api_first = [i for i, _ in api], [a for _, a in api]
    result["api"] = {
        "binary_bytes": API.stat().st_size,
        "init_ms_median": statistics.median(api_init), "init_ms_p90": p90(api_init),
        "first_answer_ms_median": statistics.median(api_first), "first_answer_ms_p90": p90(api_first),
        "runs": len(api),
    }
    zip_path = TARGET / "lambda" / "derive" / "bootstrap.zip"
    if zip_path.exists():
        result["arm64_bootstrap_zip_bytes"] = zip_path.stat().st_size
    print(f"derive (release, {os.uname().machine}): {result['derive_binary_bytes'] / 2**20:.1f} MiB")
    if "arm64_bootstrap_zip_bytes" in result:
        print(f"bootstrap.zip (arm64): {result['arm64_bootstrap_zip_bytes'] / 2**20:.1f} MiB")
    print(f"init, exec -> ready for an event: median {result['init_ms_median']:.1f} ms, "
          f"p90 {result['init_ms_p90']:.1f} ms over {len(times)} starts")
    a = result["api"]
    print(f"api (release): {a['binary_bytes'] / 2**20:.1f} MiB; cold start, exec -> ready: median "
          f"{a['init_ms_median']:.1f} ms (p90 {a['init_ms_p90']:.1f}); exec -> first POST /v1/uploads answered: "
          f"median {a['first_answer_ms_median']:.1f} ms (p90 {a['first_answer_ms_p90']:.1f}) over {a['runs']} starts")

    bench = OUT / "results.json"
    if bench.exists():
        tools = json.loads(bench.read_text())["summary"]["b"]["tools"]
        ms = tools["imgpipe (lib)"]["ms_1_thread"]
        gb_s = ms / 1e3 * MEMORY_MB / 1024
        rows = [
            ("Lambda duration (compute)", 1e6 * gb_s * LAMBDA_ARM64_GB_S),
            ("Lambda requests (1 image per invoke)", 1e6 * LAMBDA_REQUEST),
            ("S3 GET source", 1e6 * S3_GET),
            ("S3 PUT 5 derivatives + metadata", 1e6 * 6 * S3_PUT),
            ("SQS (S3 send + receive + delete)", 1e6 * 3 * SQS_REQUEST),
        ]
        result["cost_per_million_usd"] = dict(rows)
        result["cost_basis_ms_per_image"] = ms
        print(f"\ncost per 1 M images, default presets, {MEMORY_MB} MB arm64, {ms:.0f} ms compute per image "
              f"(task b, 1 thread, this CPU)")
        for name, usd in rows:
            print(f"  {name:<40}{usd:>10.2f} USD")
        print(f"  {'total':<40}{sum(usd for _, usd in rows):>10.2f} USD")
    else:
        print("(run `make bench` first for the cost table: it needs task (b)'s measured time)")
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "lambda.json").write_text(json.dumps(result, indent=2))
    print(f"\nJSON: {OUT / 'lambda.json'}")


if __name__ == "__main__":
    main()
