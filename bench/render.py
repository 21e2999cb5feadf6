#!/usr/bin/env python3
"""`make bench-render`: variants made on first request, measured end to end on LocalStack.

Deploys the template (LocalMode), runs the release `derive` worker until a 12 MP JPEG
(tests/fixtures/images/large_olympus-e-p3_12mp.jpg, 4032×3024, 2.9 MB) is processed, then serves the
derivatives bucket with the release `imgpipe serve` (the local edge: the same render code as the
`render` Lambda) and asks BENCH_RENDER_ROUNDS (default 15) times for each of:

- a signed parametric variant, 640 px WebP (`_w640.<signature>.webp`);
- the default set's on-request AVIF member of `preview` (1200 px, rav1e speed 8), by `Accept`;

each time after deleting the stored variant, so every round is a first request (HEAD, metadata.json,
the source from S3, decode at the DCT scale the size allows, resize, encode, conditional PUT), then once
more (the second request: from S3). Reports client-side p50/p95 of both, the server's render time
(`x-imgpipe-render-ms`), and the cost per million first requests at Lambda arm64 prices for the
render function's memory (RenderMemoryMB, 2048 MB), S3 requests included. This CPU, not Graviton; one
render at a time. A benchmark, not a test: it prints and writes target/bench/render.json.
"""
import json
import os
import pathlib
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.parse

import boto3
import requests
from botocore.config import Config

ROOT = pathlib.Path(__file__).resolve().parents[1]
TARGET = pathlib.Path(os.environ.get("CARGO_TARGET_DIR") or ROOT / "target")
RELEASE = TARGET / "release"
OUT = TARGET / "bench"
ROUNDS = int(os.environ.get("BENCH_RENDER_ROUNDS", "15"))
ENDPOINT = os.environ.get("AWS_ENDPOINT_URL", "http://127.0.0.1:4566")
SOURCE = ROOT / "tests" / "fixtures" / "images" / "large_olympus-e-p3_12mp.jpg"
KEY = "uploads/bench render.jpg"
SIGNING_KEY = "bench-render-signing-key-of-32-bytes!"

# us-east-1 list prices (2026), as bench/lambda.py: Lambda arm64 per GB-s and per request; S3 Standard.
LAMBDA_ARM64_GB_S = 0.0000133334
LAMBDA_REQUEST = 0.20 / 1e6
S3_PUT = 0.005 / 1000
S3_GET = 0.0004 / 1000
MEMORY_MB = 2048
# Per first request: HEAD of the variant, GET metadata.json, GET the source (GET-priced), one PUT.
S3_GETS, S3_PUTS = 3, 1


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def signed(prefix_key_dir, options_segment):
    """The signature imgpipe's variant.rs computes (docs/examples/sign_variant.py, inlined)."""
    import base64
    import hashlib
    import hmac
    stem, ext = options_segment.rsplit(".", 1)
    mac = hmac.new(SIGNING_KEY.encode(), f"{prefix_key_dir}{options_segment}".encode(), hashlib.sha256).digest()[:16]
    return f"{stem}.{base64.urlsafe_b64encode(mac).decode().rstrip('=')}.{ext}"


def pct(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, max(0, round(q * (len(values) - 1))))]


def summary(values):
    return {"p50_ms": round(statistics.median(values), 1), "p95_ms": round(pct(values, 0.95), 1),
            "min_ms": round(min(values), 1), "n": len(values)}


def main():
    stack = f"bench-render-{os.getpid()}"
    out = json.loads(subprocess.run([sys.executable, ROOT / "localstack" / "deploy.py", stack, "LocalMode=true"],
                                    check=True, capture_output=True, text=True).stdout)
    s3 = boto3.client("s3", endpoint_url=ENDPOINT, config=Config(s3={"addressing_style": "path"}))
    ingest, derivatives, prefix = out["IngestBucketName"], out["DerivativesBucketName"], out["OutputPrefix"]
    env = dict(os.environ, RUST_LOG="error", IMGPIPE_OUTPUT_BUCKET=derivatives, IMGPIPE_INGEST_BUCKET=ingest,
               IMGPIPE_DLQ_URL=out["DlqUrl"], IMGPIPE_QUEUE_URL=out["JobsQueueUrl"], IMGPIPE_VARIANT_KEYS=SIGNING_KEY)
    worker = subprocess.Popen([RELEASE / "derive", "--wait-seconds", "1"], env=env)
    port = free_port()
    gateway = subprocess.Popen([RELEASE / "imgpipe", "serve", "--bucket", derivatives, "--prefix", prefix,
                                "--listen", f"127.0.0.1:{port}"], env=env, stdout=subprocess.DEVNULL)
    try:
        s3.put_object(Bucket=ingest, Key=KEY, Body=SOURCE.read_bytes())
        metadata_key = f"{prefix}{KEY}/metadata.json"
        deadline = time.time() + 120
        while True:
            try:
                if json.loads(s3.get_object(Bucket=derivatives, Key=metadata_key)["Body"].read())["status"] == "done":
                    break
            except s3.exceptions.NoSuchKey:
                pass
            if time.time() > deadline:
                raise SystemExit("the source was not processed within 120 s")
            time.sleep(0.2)
        base = f"http://127.0.0.1:{port}/" + urllib.parse.quote(f"{prefix}{KEY}")
        folder = f"{prefix}{KEY}/"
        webp = signed(folder, "_w640.webp")
        cases = {
            "640 px WebP (signed variant)": (f"{base}/{webp}", {}, f"{folder}_w640.webp"),
            "1200 px AVIF (preview group, Accept: image/avif)": (
                f"{base}/preview", {"Accept": "image/avif,image/webp,*/*"}, f"{folder}avif.avif"),
        }
        session = requests.Session()
        results = {}
        for name, (url, headers, stored) in cases.items():
            first, render_ms, second, sizes = [], [], [], set()
            for _ in range(ROUNDS):
                s3.delete_object(Bucket=derivatives, Key=stored)
                t = time.perf_counter()
                r = session.get(url, headers=headers)
                first.append((time.perf_counter() - t) * 1e3)
                if r.status_code != 200 or "x-imgpipe-render-ms" not in r.headers:
                    raise SystemExit(f"{name}: HTTP {r.status_code}, not rendered: {r.text[:200]}")
                render_ms.append(float(r.headers["x-imgpipe-render-ms"]))
                sizes.add(len(r.content))
                t = time.perf_counter()
                r = session.get(url, headers=headers)
                second.append((time.perf_counter() - t) * 1e3)
                if r.status_code != 200 or "x-imgpipe-render-ms" in r.headers:
                    raise SystemExit(f"{name}: the second request was not served from S3")
            compute = statistics.mean(render_ms) / 1e3 * MEMORY_MB / 1024 * LAMBDA_ARM64_GB_S
            per_million = (compute + LAMBDA_REQUEST + S3_GETS * S3_GET + S3_PUTS * S3_PUT) * 1e6
            results[name] = {"first_request": summary(first), "render": summary(render_ms),
                             "second_request": summary(second), "bytes": sorted(sizes),
                             "cost_per_million_usd": {"lambda_compute": round(compute * 1e6, 2),
                                                      "lambda_requests": round(LAMBDA_REQUEST * 1e6, 2),
                                                      "s3_requests": round((S3_GETS * S3_GET + S3_PUTS * S3_PUT) * 1e6, 2),
                                                      "total": round(per_million, 2)}}
    finally:
        for p in (gateway, worker):
            p.send_signal(signal.SIGTERM)
        for p in (gateway, worker):
            p.wait(timeout=60)

    print(f"\nfirst and second requests, 12 MP JPEG source, {ROUNDS} rounds each, one at a time (ms):")
    print(f"{'variant':<50} {'first p50':>10} {'first p95':>10} {'render p50':>11} {'second p50':>11} {'second p95':>11} {'KiB':>6} {'USD / 1 M':>10}")
    for name, r in results.items():
        print(f"{name:<50} {r['first_request']['p50_ms']:>10} {r['first_request']['p95_ms']:>10} {r['render']['p50_ms']:>11} "
              f"{r['second_request']['p50_ms']:>11} {r['second_request']['p95_ms']:>11} {r['bytes'][0] / 1024:>6.1f} "
              f"{r['cost_per_million_usd']['total']:>10}")
    print(f"(cost: render time × {MEMORY_MB} MB arm64 + the Lambda request + {S3_GETS} S3 GET-priced and {S3_PUTS} PUT per first request)")
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "render.json").write_text(json.dumps({"rounds": ROUNDS, "memory_mb": MEMORY_MB, "source": SOURCE.name,
                                                 "results": results}, indent=2))
    print(f"wrote {OUT / 'render.json'}")


if __name__ == "__main__":
    main()
