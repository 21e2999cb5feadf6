#!/usr/bin/env python3
"""make demo: deploy the template to LocalStack, start the pipeline's processes (derive worker,
upload API, webhook sender) and a local webhook receiver, then:

1. the app's view: ask the API for an upload, upload through the pre-signed POST it returns, poll
   the status URL until `done`, and print the signed webhook the receiver got, its signature
   verified with the `standardwebhooks` library (independent of the Rust signer);
2. the other samples (SDK PUT, a pre-signed PUT from the API, a text file named .jpg that fails):
   their derivatives, metadata and webhooks;
3. delivery: the local edge gateway (`imgpipe serve`, the CloudFront Function's negotiation) answers
   `curl -H 'Accept: image/webp' …/<key>/preview` with the WebP and a JPEG-only client with the JPEG;
   it keeps running after the demo (make down stops it, with LocalStack); then `imgpipe gallery`
   writes target/gallery/index.html and the demo prints its path.

The processes run with functions/core/presets/responsive.toml (the default set plus a srcset ladder,
and a `card` preset made only on its first request, which the demo asks for twice).

usage: demo.py STACK_NAME   (LocalStack must be running: localstack/start.sh)
"""
import base64
import http.server
import json
import os
import secrets
import signal
import subprocess
import sys
import threading
import time

import boto3
import requests
from botocore.config import Config
from standardwebhooks.webhooks import Webhook

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
IMAGES = os.path.join(ROOT, "tests", "fixtures", "images")
# cargo's target directory: ./target, or CARGO_TARGET_DIR (make test under CI=true builds outside the clone)
TARGET = os.environ.get("CARGO_TARGET_DIR") or os.path.join(ROOT, "target")
BIN = os.path.join(TARGET, "debug")
ENDPOINT = os.environ.get("AWS_ENDPOINT_URL", "http://127.0.0.1:4566")
PRESETS = os.path.join(ROOT, "functions", "core", "presets", "responsive.toml")
GATEWAY = os.environ.get("IMGPIPE_GATEWAY_LISTEN", "127.0.0.1:8790")
GATEWAY_PID = os.path.join(ROOT, ".localstack", "gateway.pid")
API = os.environ.get("IMGPIPE_API_LISTEN", "127.0.0.1:8787")
# (file in tests/fixtures/images, key in the ingest bucket or API filename, how it is uploaded)
APP_UPLOAD = ("camera_iphone6_gps-altitude_8mp.jpg", "iphone6 gps.jpg", "api-post")
SAMPLES = [
    ("camera_canon-sx60hs_orient6.jpg", "uploads/canon sx60 (orientation 6).jpg", "sdk"),
    ("large_olympus-e-p3_12mp.jpg", "olympus-12mp.jpg", "api-put"),
    ("png_16bit_rgba_pngsuite_tbgn2c16.png", "uploads/pngsuite-16bit-alpha.png", "sdk"),
    ("gif_animated_rotating-squares.gif", "uploads/rotating-squares.gif", "sdk"),
    ("webp_animated_loop3.webp", "uploads/animated.webp", "sdk"),
    ("not_an_image_text.jpg", "uploads/not-an-image.jpg", "sdk"),
]
CONTENT_TYPES = {".jpg": "image/jpeg", ".png": "image/png", ".gif": "image/gif", ".webp": "image/webp"}


class Receiver(http.server.BaseHTTPRequestHandler):
    """The app's webhook endpoint: verifies each delivery, keeps it, answers 204."""

    secret = ""
    received = []
    lock = threading.Lock()

    def do_POST(self):  # noqa: N802 - http.server's naming
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        headers = {k.lower(): v for k, v in self.headers.items()}
        try:
            event = Webhook(Receiver.secret).verify(body, headers)
            verdict = "verified"
        except Exception as e:  # WebhookVerificationError
            event, verdict = json.loads(body), f"REFUSED: {e}"
        with Receiver.lock:
            Receiver.received.append({"headers": headers, "event": event, "verdict": verdict})
        self.send_response(204 if verdict == "verified" else 400)
        self.end_headers()

    def log_message(self, *args):
        pass


def main() -> int:
    stack = sys.argv[1] if len(sys.argv) > 1 else "imgpipe-local"
    deployed = subprocess.run([sys.executable, os.path.join(ROOT, "localstack", "deploy.py"), stack, "LocalMode=true"],
                              check=True, capture_output=True, text=True)
    out = json.loads(deployed.stdout)
    print(f"stack {stack}: ingest s3://{out['IngestBucketName']}  derivatives s3://{out['DerivativesBucketName']}")
    s3 = boto3.client("s3", endpoint_url=ENDPOINT, config=Config(s3={"addressing_style": "path"}))

    Receiver.secret = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
    receiver = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    hook_url = f"http://127.0.0.1:{receiver.server_port}/hooks/imgpipe"

    base = dict(os.environ, RUST_LOG=os.environ.get("RUST_LOG", "warn"), IMGPIPE_PRESETS_FILE=PRESETS,
                IMGPIPE_INGEST_BUCKET=out["IngestBucketName"], IMGPIPE_OUTPUT_BUCKET=out["DerivativesBucketName"],
                IMGPIPE_QUEUE_URL=out["JobsQueueUrl"], IMGPIPE_DLQ_URL=out["DlqUrl"],
                IMGPIPE_WEBHOOK_QUEUE_URL=out["WebhookQueueUrl"], IMGPIPE_WEBHOOK_DLQ_URL=out["WebhookDlqUrl"])
    # Each process gets what the template gives its Lambda.
    # EMF metric lines (one JSON object per image on stdout) are for CloudWatch, not this terminal.
    derive_env = dict(base, IMGPIPE_EVENTS_TOPIC_ARN=out["EventsTopicArn"], IMGPIPE_METRICS="off")
    webhooks_env = dict(base, IMGPIPE_WEBHOOK_URLS=hook_url, IMGPIPE_WEBHOOK_SECRET=Receiver.secret)
    api_env = dict(base, IMGPIPE_GPU_QUEUE_URL=out["GpuJobsQueueUrl"],
                   IMGPIPE_GPU_DLQ_URL=out["GpuDlqUrl"], IMGPIPE_API_LISTEN=API,
                   IMGPIPE_HEALTH_DETAILS="full")  # local: show the queue depths (default: status only)
    processes = [
        subprocess.Popen([os.path.join(BIN, "derive"), "--wait-seconds", "2"], env=derive_env),
        subprocess.Popen([os.path.join(BIN, "webhooks"), "--wait-seconds", "2"], env=webhooks_env),
        subprocess.Popen([os.path.join(BIN, "api")], env=api_env),
    ]
    api = f"http://{API}"
    try:
        wait_for_api(api)
        print(f"processes: derive worker, webhook sender -> {hook_url}, upload API on {api}")
        print(f"health: {json.dumps(requests.get(f'{api}/v1/health').json()['queues'])}")

        print("\n== the app's view: POST /v1/uploads -> pre-signed POST -> status URL -> signed webhook")
        file, filename, _ = APP_UPLOAD
        body = open(os.path.join(IMAGES, file), "rb").read()
        request = {"filename": filename, "content_type": "image/jpeg", "bytes": len(body)}
        issued = requests.post(f"{api}/v1/uploads", json=request)
        upload = issued.json()
        print(f"POST /v1/uploads {json.dumps(request)}\n  -> HTTP {issued.status_code}, id {upload['id']}, "
              f"key {upload['key']}, expires {upload['expires_at']}")
        print(f"  enforced by S3: {', '.join(upload['upload']['enforced'])}; "
              f"{len(upload['derivatives'])} derivatives promised")
        tampered = dict(upload["upload"]["fields"], **{"Content-Type": "image/png"})
        refused = requests.post(upload["upload"]["url"], data=tampered, files={"file": (filename, body, "image/png")})
        print(f"the same form with Content-Type image/png: HTTP {refused.status_code} from S3 "
              f"({refused.text.split('<Message>')[1].split('</Message>')[0] if '<Message>' in refused.text else ''})")
        posted = requests.post(upload["upload"]["url"], data=upload["upload"]["fields"],
                               files={"file": (filename, body, "image/jpeg")})
        print(f"uploaded through the pre-signed POST: HTTP {posted.status_code}")
        started, seen = time.time(), []
        while True:
            status = requests.get(upload["status_url"]).json()
            if not seen or seen[-1] != status["status"]:
                seen.append(status["status"])
            if status["status"] != "pending":
                break
            time.sleep(0.25)
        print(f"GET {upload['status_url']}\n  -> {' -> '.join(seen)} after {time.time() - started:.1f} s")
        hook = wait_for_webhook(upload["key"])
        print(f"webhook at {hook_url}: {hook['event']['type']}, webhook-id {hook['headers']['webhook-id']}, "
              f"signature {hook['verdict']} with the standardwebhooks library")
        print(json.dumps(hook["event"], indent=2))

        print("\n== the other samples")
        keys = []
        for file, name, method in SAMPLES:
            body = open(os.path.join(IMAGES, file), "rb").read()
            if method == "api-put":
                ctype = CONTENT_TYPES[os.path.splitext(name)[1]]
                issued = requests.post(f"{api}/v1/uploads", json={"filename": name, "content_type": ctype,
                                                                   "bytes": len(body), "method": "PUT"}).json()
                put = requests.put(issued["upload"]["url"], data=body, headers=issued["upload"]["headers"])
                print(f"uploaded {issued['key']} through the API's pre-signed PUT (HTTP {put.status_code})")
                keys.append(issued["key"])
            else:
                s3.put_object(Bucket=out["IngestBucketName"], Key=name, Body=body)
                print(f"uploaded {name} with the SDK ({len(body)} bytes)")
                keys.append(name)
        for key in keys:
            meta = wait_for(s3, out["DerivativesBucketName"], f"{out['OutputPrefix']}{key}/metadata.json")
            print(f"\n== s3://{out['IngestBucketName']}/{key}: {meta['status']}")
            if meta["status"] == "failed":
                print(f"   {meta['error']['kind']}: {meta['error']['message']} (message sent to the DLQ)")
            for d in meta["derivatives"]:
                print(f"   {d['key']:<70} {d['bytes']:>8} B  {d['width']}x{d['height']}  {d['content_type']}")
            hook = wait_for_webhook(key)
            print(f"   webhook: {hook['event']['type']} {hook['headers']['webhook-id']}, signature {hook['verdict']}")
        print(f"\n{len(Receiver.received)} webhooks received; "
              f"{sum(r['verdict'] == 'verified' for r in Receiver.received)} verified by the standardwebhooks library")
        deliver(stack, out, keys[0])
    finally:
        for p in processes:
            p.send_signal(signal.SIGTERM)
        for p in processes:
            p.wait(timeout=60)
        receiver.shutdown()
    return 0


def deliver(stack: str, out: dict, key: str) -> None:
    """The local edge gateway (left running) and the gallery page."""
    print("\n== delivery: the local edge gateway (same negotiation as the CloudFront Function)")
    if os.path.exists(GATEWAY_PID):
        try:
            os.kill(int(open(GATEWAY_PID).read()), signal.SIGTERM)
            time.sleep(0.5)
        except (ProcessLookupError, ValueError):
            pass
    log = open(os.path.join(ROOT, ".localstack", "gateway.log"), "w")
    gateway = subprocess.Popen([os.path.join(BIN, "imgpipe"), "serve", "--stack", stack, "--listen", GATEWAY,
                                "--presets", PRESETS], stdout=log, stderr=log, start_new_session=True)
    open(GATEWAY_PID, "w").write(str(gateway.pid))
    path = "/" + requests.utils.quote(f"{out['OutputPrefix']}{key}") + "/preview"
    url = f"http://{GATEWAY}{path}"
    deadline = time.time() + 30
    while True:
        try:
            requests.get(f"http://{GATEWAY}/", timeout=1)
            break
        except requests.ConnectionError:
            if time.time() > deadline or gateway.poll() is not None:
                raise SystemExit(f"the gateway did not start; see {log.name}")
            time.sleep(0.2)
    # The default set's AVIF member of `preview` is on request: the first AVIF browser renders it.
    for accept in ("image/avif,image/webp,*/*", "image/avif,image/webp,*/*", "image/jpeg,*/*;q=0.8"):
        r = requests.get(url, headers={"Accept": accept})
        made = r.headers.get("x-imgpipe-render-ms")
        how = f", rendered on request in {made} ms and stored" if made else ""
        print(f"curl -H 'Accept: {accept}' {url}\n  -> HTTP {r.status_code} {r.headers.get('Content-Type')}, "
              f"{len(r.content)} bytes, Vary: {r.headers.get('Vary')}{how}")
    # `card` is an on_request preset: nothing was made at upload; the first request renders it.
    card = f"http://{GATEWAY}" + path.rsplit("/", 1)[0] + "/card.webp"
    for attempt in ("first", "second"):
        r = requests.get(card)
        made = r.headers.get("x-imgpipe-render-ms")
        how = f"rendered on request in {made} ms and stored" if made else "served from S3"
        print(f"{attempt} request: curl {card}\n  -> HTTP {r.status_code} {r.headers.get('Content-Type')}, "
              f"{len(r.content)} bytes, {how}")
    print(f"the gateway keeps serving on http://{GATEWAY}/ (pid {gateway.pid}; make down stops it)")
    page = os.path.join(TARGET, "gallery", "index.html")
    os.makedirs(os.path.dirname(page), exist_ok=True)
    subprocess.run([os.path.join(BIN, "imgpipe"), "gallery", "--stack", stack, "-o", page, "--show-gps"], check=True)


def wait_for_api(api: str, timeout: float = 30.0) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            requests.get(f"{api}/v1/health", timeout=1)
            return
        except requests.ConnectionError:
            time.sleep(0.2)
    raise SystemExit(f"the upload API did not answer on {api} within {timeout:.0f} s")


def wait_for_webhook(key: str, timeout: float = 60.0) -> dict:
    deadline = time.time() + timeout
    while time.time() < deadline:
        with Receiver.lock:
            for r in Receiver.received:
                if r["event"]["data"].get("source", {}).get("key") == key:
                    return r
        time.sleep(0.1)
    raise SystemExit(f"no webhook for {key} after {timeout:.0f} s; see the logs above")


def wait_for(s3, bucket: str, key: str, timeout: float = 120.0) -> dict:
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            return json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
        except s3.exceptions.NoSuchKey:
            time.sleep(0.25)
    raise SystemExit(f"no {key} after {timeout:.0f} s; see the worker log above")


if __name__ == "__main__":
    sys.exit(main())
