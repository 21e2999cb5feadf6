#!/usr/bin/env python3
"""`make bench-fanout`: a manifest at the maximum item count, fanned out on LocalStack.

Deploys the template (LocalMode), fills an archive bucket with BENCH_FANOUT_EXISTING small objects
(default 45 000) and uploads a manifest listing BENCH_FANOUT_ITEMS keys (default 50 000, the
manifest limit): the archive's objects and the rest missing. One `derive` worker (GPU routing on,
no GPU worker, so every job stays on the GPU queue to be counted) fans it out.

Reports: seconds from the manifest's upload until every job is on the GPU queue and until the
fan-out ended (its summary.json written, which the sliced fan-out does with its last slice; an
older binary wrote it after its HEADs, before sending anything), the HeadObject and
SQS send calls made (from the worker's "manifest fanned out" log lines; SendMessage for a binary
without batching, which logs no counts), and how many invocations the fan-out took (continuations
through the jobs queue, IMGPIPE_FANOUT_SECONDS). BENCH_FANOUT_BIN picks the derive binary (default
the debug build: the fan-out waits on S3 and SQS, not on the CPU), so an older commit's binary can
be measured on the same machine. A benchmark, not a test: it prints and writes
target/bench/fanout.json (or BENCH_FANOUT_OUT).
"""
import concurrent.futures
import json
import os
import pathlib
import signal
import subprocess
import sys
import threading
import time

import boto3
from botocore.config import Config

ROOT = pathlib.Path(__file__).resolve().parents[1]
TARGET = pathlib.Path(os.environ.get("CARGO_TARGET_DIR") or ROOT / "target")
ITEMS = int(os.environ.get("BENCH_FANOUT_ITEMS", "50000"))
EXISTING = int(os.environ.get("BENCH_FANOUT_EXISTING", str(ITEMS * 9 // 10)))
BIN = pathlib.Path(os.environ.get("BENCH_FANOUT_BIN") or TARGET / "debug" / "derive")
OUT = pathlib.Path(os.environ.get("BENCH_FANOUT_OUT") or TARGET / "bench" / "fanout.json")
ENDPOINT = os.environ.get("AWS_ENDPOINT_URL", "http://127.0.0.1:4566")


def depth(sqs, url):
    attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages",
                                                                    "ApproximateNumberOfMessagesNotVisible"])["Attributes"]
    return int(attrs["ApproximateNumberOfMessages"]) + int(attrs["ApproximateNumberOfMessagesNotVisible"])


def main():
    stack = f"bench-fanout-{os.getpid()}"
    out = json.loads(subprocess.run([sys.executable, ROOT / "localstack" / "deploy.py", stack, "LocalMode=true"],
                                    check=True, capture_output=True, text=True).stdout)
    config = Config(s3={"addressing_style": "path"}, max_pool_connections=32)
    s3 = boto3.client("s3", endpoint_url=ENDPOINT, config=config)
    sqs = boto3.client("sqs", endpoint_url=ENDPOINT)
    archive = f"{stack}-archive"
    s3.create_bucket(Bucket=archive)
    print(f"putting {EXISTING} objects into s3://{archive} ...", file=sys.stderr)
    started = time.time()
    with concurrent.futures.ThreadPoolExecutor(32) as pool:
        list(pool.map(lambda i: s3.put_object(Bucket=archive, Key=f"2020/{i:05d}.jpg", Body=b"x"), range(EXISTING)))
    print(f"  {time.time() - started:.0f} s", file=sys.stderr)
    manifest = "bucket,key\n" + "".join(f"{archive},2020/{i:05d}.jpg\n" for i in range(ITEMS))

    env = dict(os.environ, RUST_LOG="info", IMGPIPE_OUTPUT_BUCKET=out["DerivativesBucketName"],
               IMGPIPE_INGEST_BUCKET=out["IngestBucketName"], IMGPIPE_BACKFILL_BUCKETS=archive,
               IMGPIPE_DLQ_URL=out["DlqUrl"], IMGPIPE_QUEUE_URL=out["JobsQueueUrl"],
               IMGPIPE_GPU_QUEUE_URL=out["GpuJobsQueueUrl"], IMGPIPE_MANIFEST_PREFIX="manifests/",
               IMGPIPE_METRICS="off")
    worker = subprocess.Popen([BIN, "--json-logs", "--wait-seconds", "1"], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    lines = []
    reader = threading.Thread(target=lambda: lines.extend(worker.stderr), daemon=True)
    reader.start()
    try:
        time.sleep(2)
        started = time.time()
        s3.put_object(Bucket=out["IngestBucketName"], Key="manifests/max.csv", Body=manifest.encode())
        deadline = started + 1800
        while depth(sqs, out["GpuJobsQueueUrl"]) < EXISTING and time.time() < deadline:
            time.sleep(0.5)
        all_queued = time.time() - started
        summary_key = "derived/manifests/max.csv/summary.json"
        while time.time() < deadline:
            try:
                s3.head_object(Bucket=out["DerivativesBucketName"], Key=summary_key)
                break
            except s3.exceptions.ClientError:
                time.sleep(0.5)
        summary_written = time.time() - started
        time.sleep(5)  # any extra (duplicate) jobs and the last log line
        on_gpu_queue = depth(sqs, out["GpuJobsQueueUrl"])
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=120)
        reader.join(timeout=10)

    fanned = []
    for line in lines:
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if record.get("fields", {}).get("message") == "manifest fanned out to the GPU queue":
            fanned.append(record["fields"])
    invocations = len(fanned)
    heads = sum(f.get("heads", f.get("queued", 0) + f.get("missing", 0)) for f in fanned)
    batched = all("send_calls" in f for f in fanned)
    result = {
        "items": ITEMS,
        "existing": EXISTING,
        "binary": str(BIN),
        "seconds_until_all_queued": round(all_queued, 1),
        "seconds_until_fanned_out": round(summary_written, 1),
        "jobs_on_gpu_queue": on_gpu_queue,
        "invocations": invocations,
        "head_object_calls": heads,
        "send_api": "SendMessageBatch" if batched else "SendMessage",
        "send_calls": sum(f["send_calls"] for f in fanned) if batched else on_gpu_queue,
        "per_invocation": [{k: f.get(k) for k in ("sent", "slices", "continued", "ms")} for f in fanned],
    }
    print(json.dumps(result, indent=2))
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
