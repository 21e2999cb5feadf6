#!/usr/bin/env python3
"""`make bench-lambda`: Lambda figures of the `derive` function, measured here.

- Binary size of the release `derive` (and of the arm64 `bootstrap.zip` when `make lambda` built one).
- Init time: exec of `derive` under a stub of the Lambda Runtime API until its first
  `GET /runtime/invocation/next` (= ready for an event), median of BENCH_INIT_RUNS (default 20) starts.
  The stub is the same protocol Lambda serves; no network is touched at init (AWS clients are lazy).
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
OUT = ROOT / "target" / "bench"
DERIVE = ROOT / "target" / "release" / "derive"
RUNS = int(os.environ.get("BENCH_INIT_RUNS", "20"))

# us-east-1 list prices (2026): Lambda arm64 duration per GB-s and per request; S3 Standard PUT/GET per
# request; SQS standard per request (64 KiB chunks). Change here if yours differ.
LAMBDA_ARM64_GB_S = 0.0000133334
LAMBDA_REQUEST = 0.20 / 1e6
S3_PUT = 0.005 / 1000
S3_GET = 0.0004 / 1000
SQS_REQUEST = 0.40 / 1e6
MEMORY_MB = 1769


class Stub(http.server.BaseHTTPRequestHandler):
    """Records when `derive` first asks for an event, then holds the request open until told to stop."""

    ready_at = None
    ready = threading.Event()
    release = threading.Event()

    def do_GET(self):  # noqa: N802 - http.server's naming
        if self.path.endswith("/runtime/invocation/next"):
            if Stub.ready_at is None:
                Stub.ready_at = time.perf_counter()
                Stub.ready.set()
            Stub.release.wait(10)
        self.send_response(404)
        self.end_headers()

    def log_message(self, *args):
        pass


def init_times():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Stub)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    env = dict(os.environ, AWS_LAMBDA_RUNTIME_API=f"127.0.0.1:{server.server_port}",
               AWS_LAMBDA_FUNCTION_NAME="derive", AWS_LAMBDA_FUNCTION_MEMORY_SIZE=str(MEMORY_MB),
               AWS_LAMBDA_FUNCTION_VERSION="$LATEST", AWS_LAMBDA_LOG_GROUP_NAME="/aws/lambda/derive",
               AWS_LAMBDA_LOG_STREAM_NAME="bench", AWS_REGION="us-east-1", AWS_ACCESS_KEY_ID="bench",
               AWS_SECRET_ACCESS_KEY="bench", IMGPIPE_OUTPUT_BUCKET="bench-derivatives",
               IMGPIPE_DLQ_URL="https://sqs.us-east-1.amazonaws.com/000000000000/bench-dlq", RUST_LOG="warn")
    times = []
    for _ in range(RUNS + 1):  # the first start warms the page cache and is dropped
        Stub.ready_at, Stub.ready, Stub.release = None, threading.Event(), threading.Event()
        started = time.perf_counter()
        proc = subprocess.Popen([DERIVE], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if not Stub.ready.wait(10):
            proc.kill()
            raise SystemExit("derive never asked the Runtime API for an event")
        times.append((Stub.ready_at - started) * 1e3)
        proc.kill()
        proc.wait()
        Stub.release.set()
    server.shutdown()
    return times[1:]


def main():
    subprocess.run(["cargo", "build", "--release", "-q", "-p", "imgpipe-derive"], cwd=ROOT, check=True)
    times = init_times()
    result = {
        "derive_binary_bytes": DERIVE.stat().st_size,
        "init_ms_median": statistics.median(times),
        "init_ms_p90": sorted(times)[int(len(times) * 0.9) - 1],
        "init_runs": len(times),
    }
    zip_path = ROOT / "target" / "lambda" / "derive" / "bootstrap.zip"
    if zip_path.exists():
        result["arm64_bootstrap_zip_bytes"] = zip_path.stat().st_size
    print(f"derive (release, {os.uname().machine}): {result['derive_binary_bytes'] / 2**20:.1f} MiB")
    if "arm64_bootstrap_zip_bytes" in result:
        print(f"bootstrap.zip (arm64): {result['arm64_bootstrap_zip_bytes'] / 2**20:.1f} MiB")
    print(f"init, exec -> ready for an event: median {result['init_ms_median']:.1f} ms, "
          f"p90 {result['init_ms_p90']:.1f} ms over {len(times)} starts")

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
