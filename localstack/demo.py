#!/usr/bin/env python3
"""make demo: deploy the template to LocalStack, start the derive worker, upload the sample images
(one through a pre-signed PUT URL), wait for each metadata.json and print the derivatives and metadata.

usage: demo.py STACK_NAME   (LocalStack must be running: localstack/start.sh)
"""
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request

import boto3
from botocore.config import Config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
IMAGES = os.path.join(ROOT, "tests", "fixtures", "images")
ENDPOINT = os.environ.get("AWS_ENDPOINT_URL", "http://127.0.0.1:4566")
# (file in tests/fixtures/images, key in the ingest bucket, upload method)
SAMPLES = [
    ("camera_canon-sx60hs_orient6.jpg", "uploads/canon sx60 (orientation 6).jpg", "sdk"),
    ("camera_iphone6_gps-altitude_8mp.jpg", "uploads/iphone6-gps.jpg", "presigned"),
    ("large_olympus-e-p3_12mp.jpg", "uploads/olympus-12mp.jpg", "sdk"),
    ("png_16bit_rgba_pngsuite_tbgn2c16.png", "uploads/pngsuite-16bit-alpha.png", "sdk"),
    ("gif_animated_rotating-squares.gif", "uploads/rotating-squares.gif", "sdk"),
    ("webp_animated_loop3.webp", "uploads/animated.webp", "sdk"),
    ("not_an_image_text.jpg", "uploads/not-an-image.jpg", "sdk"),
]


def main() -> int:
    stack = sys.argv[1] if len(sys.argv) > 1 else "imgpipe-local"
    deployed = subprocess.run([sys.executable, os.path.join(ROOT, "localstack", "deploy.py"), stack, "LocalMode=true"],
                              check=True, capture_output=True, text=True)
    out = json.loads(deployed.stdout)
    print(f"stack {stack}: ingest s3://{out['IngestBucketName']}  derivatives s3://{out['DerivativesBucketName']}")
    s3 = boto3.client("s3", endpoint_url=ENDPOINT, config=Config(s3={"addressing_style": "path"}))
    env = dict(os.environ, IMGPIPE_OUTPUT_BUCKET=out["DerivativesBucketName"], IMGPIPE_DLQ_URL=out["DlqUrl"],
               RUST_LOG=os.environ.get("RUST_LOG", "warn"))
    worker = subprocess.Popen([os.path.join(ROOT, "target", "debug", "derive"), "--queue-url", out["JobsQueueUrl"],
                               "--wait-seconds", "2"], env=env)
    try:
        for file, key, method in SAMPLES:
            body = open(os.path.join(IMAGES, file), "rb").read()
            if method == "presigned":
                url = s3.generate_presigned_url("put_object", Params={"Bucket": out["IngestBucketName"], "Key": key,
                                                                      "ContentType": "image/jpeg"}, ExpiresIn=300)
                req = urllib.request.Request(url, data=body, method="PUT", headers={"Content-Type": "image/jpeg"})
                with urllib.request.urlopen(req) as resp:
                    print(f"uploaded {key} through a pre-signed PUT URL (HTTP {resp.status})")
            else:
                s3.put_object(Bucket=out["IngestBucketName"], Key=key, Body=body)
                print(f"uploaded {key} ({len(body)} bytes)")
        for _, key, _ in SAMPLES:
            meta = wait_for(s3, out["DerivativesBucketName"], f"{out['OutputPrefix']}{key}/metadata.json")
            print(f"\n== s3://{out['IngestBucketName']}/{key}: {meta['status']}")
            if meta["status"] == "failed":
                print(f"   {meta['error']['kind']}: {meta['error']['message']} (message sent to the DLQ)")
            for d in meta["derivatives"]:
                print(f"   {d['key']:<58} {d['bytes']:>8} B  {d['width']}x{d['height']}  {d['content_type']}")
            print(json.dumps(meta, indent=2))
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=60)
    return 0


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
