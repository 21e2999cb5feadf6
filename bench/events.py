#!/usr/bin/env python3
"""`make bench-events`: event and webhook delivery on LocalStack, measured end to end.

Deploys the template (LocalMode), starts the release `derive` worker and `webhooks` sender, a done
queue subscribed to the events topic and two local webhook endpoints: one healthy, one that answers
500 to the first two attempts of every event. Uploads BENCH_EVENTS_UPLOADS (default 40) images, a
tenth of them not images, then sends every S3 notification a second time (at-least-once delivery).

Reports: events on the done queue per upload (expected 1 distinct id per upload; duplicates keep
the id), webhooks per endpoint, and latencies from metadata.json's processed_at to the event on the
queue and to each endpoint's accepted delivery (p50/p90/max). The retry schedule is shortened to
1 s so the flaky endpoint's retries are visible in the numbers. A benchmark, not a test: it prints
and writes target/bench/events.json.
"""
import base64
import datetime
import http.server
import json
import os
import pathlib
import secrets
import signal
import statistics
import subprocess
import sys
import threading
import time

import boto3
from botocore.config import Config
from standardwebhooks.webhooks import Webhook

ROOT = pathlib.Path(__file__).resolve().parents[1]
# cargo's target directory: ./target, or CARGO_TARGET_DIR (make test under CI=true builds outside the clone)
TARGET = pathlib.Path(os.environ.get("CARGO_TARGET_DIR") or ROOT / "target")
OUT = TARGET / "bench"
UPLOADS = int(os.environ.get("BENCH_EVENTS_UPLOADS", "40"))
ENDPOINT = os.environ.get("AWS_ENDPOINT_URL", "http://127.0.0.1:4566")
PHOTOS = ["Landscape_1.jpg", "Landscape_2.jpg", "Landscape_3.jpg", "Portrait_6.jpg"]


def endpoint(secret, fail_first):
    """A webhook endpoint: verifies, records (id, arrival), answers 500 to an id's first `fail_first` tries."""
    log, tries, lock = [], {}, threading.Lock()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            arrived = time.time()
            event = Webhook(secret).verify(body, {k.lower(): v for k, v in self.headers.items()})
            with lock:
                n = tries[event["id"]] = tries.get(event["id"], 0) + 1
                ok = n > fail_first
                log.append({"id": event["id"], "key": event["data"]["source"]["key"], "arrived": arrived,
                            "processed_at": event["timestamp"], "accepted": ok})
            self.send_response(200 if ok else 500)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{server.server_port}/hook", log, server


def seconds_since(rfc3339, at):
    t = datetime.datetime.fromisoformat(rfc3339.replace("Z", "+00:00")).timestamp()
    return at - t


def summary(values):
    if not values:
        return {}
    values = sorted(values)
    return {"p50_ms": round(statistics.median(values) * 1e3, 1), "p90_ms": round(values[int(len(values) * 0.9) - 1] * 1e3, 1),
            "max_ms": round(values[-1] * 1e3, 1), "n": len(values)}


def main():
    stack = f"bench-events-{os.getpid()}"
    out = json.loads(subprocess.run([sys.executable, ROOT / "localstack" / "deploy.py", stack, "LocalMode=true"],
                                    check=True, capture_output=True, text=True).stdout)
    kw = dict(endpoint_url=ENDPOINT)
    s3 = boto3.client("s3", config=Config(s3={"addressing_style": "path"}), **kw)
    sqs, sns = boto3.client("sqs", **kw), boto3.client("sns", **kw)
    done_queue = sqs.create_queue(QueueName=f"{stack}-done")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=done_queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=out["EventsTopicArn"], Protocol="sqs", Endpoint=arn, Attributes={"RawMessageDelivery": "true"})

    secret = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
    healthy_url, healthy, s1 = endpoint(secret, 0)
    flaky_url, flaky, s2 = endpoint(secret, 2)
    env = dict(os.environ, RUST_LOG="error", IMGPIPE_OUTPUT_BUCKET=out["DerivativesBucketName"],
               IMGPIPE_INGEST_BUCKET=out["IngestBucketName"], IMGPIPE_DLQ_URL=out["DlqUrl"], IMGPIPE_QUEUE_URL=out["JobsQueueUrl"],
               IMGPIPE_EVENTS_TOPIC_ARN=out["EventsTopicArn"], IMGPIPE_WEBHOOK_QUEUE_URL=out["WebhookQueueUrl"],
               IMGPIPE_WEBHOOK_DLQ_URL=out["WebhookDlqUrl"], IMGPIPE_WEBHOOK_URLS=f"{healthy_url},{flaky_url}",
               IMGPIPE_WEBHOOK_SECRET=secret, IMGPIPE_WEBHOOK_RETRY_SCHEDULE="1s,1s,1s,1s")
    release = TARGET / "release"
    procs = [subprocess.Popen([release / "derive", "--wait-seconds", "1"], env=dict(env, RUST_LOG="off")),
             subprocess.Popen([release / "webhooks", "--wait-seconds", "1"], env=env)]
    images = [(ROOT / "tests" / "fixtures" / "images" / PHOTOS[i % len(PHOTOS)]).read_bytes() for i in range(len(PHOTOS))]
    text = (ROOT / "tests" / "fixtures" / "images" / "not_an_image_text.jpg").read_bytes()
    events, bodies, stop = [], [], threading.Event()

    def drain():  # the done queue's consumer, from the start, so arrival times are not delayed by the uploads
        while not stop.is_set():
            for m in sqs.receive_message(QueueUrl=done_queue, MaxNumberOfMessages=10, WaitTimeSeconds=1).get("Messages", []):
                events.append({**json.loads(m["Body"]), "_arrived": time.time()})
                sqs.delete_message(QueueUrl=done_queue, ReceiptHandle=m["ReceiptHandle"])

    consumer = threading.Thread(target=drain, daemon=True)
    consumer.start()
    try:
        started = time.time()
        for i in range(UPLOADS):
            body = text if i % 10 == 9 else images[i % len(images)]
            key = f"uploads/bench {i:04d}.jpg"
            etag = s3.put_object(Bucket=out["IngestBucketName"], Key=key, Body=body)["ETag"].strip('"')
            bodies.append((key, etag, len(body)))
        deadline = time.time() + 300
        while len({e["id"] for e in events}) < UPLOADS and time.time() < deadline:
            time.sleep(0.1)
        first_round = time.time() - started
        # At-least-once: every notification once more.
        for key, etag, size in bodies:
            record = {"eventVersion": "2.1", "eventSource": "aws:s3", "eventName": "ObjectCreated:Put",
                      "s3": {"bucket": {"name": out["IngestBucketName"]},
                             "object": {"key": key.replace(" ", "+"), "size": size, "eTag": etag}}}
            sqs.send_message(QueueUrl=out["JobsQueueUrl"], MessageBody=json.dumps({"Records": [record]}))
        deadline = time.time() + 120
        while len(events) < 2 * UPLOADS and time.time() < deadline:
            time.sleep(0.1)
        time.sleep(8)  # let the flaky endpoint's retries finish, and any extra event arrive
    finally:
        stop.set()
        consumer.join()
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            p.wait(timeout=60)
        s1.shutdown()
        s2.shutdown()

    ids_per_key = {}
    for e in events:
        ids_per_key.setdefault(e["data"]["source"]["key"], set()).add(e["id"])
    first_events = {}
    for e in events:
        first_events.setdefault(e["id"], e)
    def accepted(log):
        """The first accepted delivery of each event id."""
        first = {}
        for r in log:
            if r["accepted"]:
                first.setdefault(r["id"], r)
        return first

    result = {
        "uploads": UPLOADS,
        "first_round_s": round(first_round, 1),
        "events_received": len(events),
        "distinct_event_ids": len(first_events),
        "keys_with_more_than_one_id": sum(len(ids) > 1 for ids in ids_per_key.values()),
        "done": sum(e["type"] == "imgpipe.image.done" for e in first_events.values()),
        "failed": sum(e["type"] == "imgpipe.image.failed" for e in first_events.values()),
        "metadata_to_done_queue": summary([seconds_since(e["timestamp"], e["_arrived"]) for e in first_events.values()]),
        "healthy_endpoint": {"requests": len(healthy), "distinct_ids_accepted": len(accepted(healthy)),
                             "metadata_to_delivered": summary([seconds_since(r["processed_at"], r["arrived"])
                                                               for r in accepted(healthy).values()])},
        "flaky_endpoint": {"requests": len(flaky), "distinct_ids_accepted": len(accepted(flaky)),
                           "metadata_to_delivered_after_2_failures": summary(
                               [seconds_since(r["processed_at"], r["arrived"]) for r in accepted(flaky).values()])},
    }
    print(json.dumps(result, indent=2))
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "events.json").write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
