#!/usr/bin/env python3
"""Browser test of the gallery: headless Chromium (Debian's `chromium` + `chromium-driver`, driven by
selenium) opens `imgpipe gallery`'s page for the demo uploads and checks what a person would see.

On a stack deployed to LocalStack, the real `derive` worker processes make demo's uploads with the
responsive preset set (functions/core/presets/responsive.toml); `imgpipe gallery --stack` writes the
page; then, at two viewport widths (640 and 1024 CSS px, device scale 1, a fresh browser each so the
cache cannot pick a larger image), it asserts:

- every <img> loaded (naturalWidth > 0);
- every frame painted its ThumbHash canvas (non-empty, stamped) before its image loaded;
- each responsive <picture> chose the srcset width the viewport asks for (sizes = 100vw up to the
  widest rung, so at 640 px the 640w rung and at 1024 px the 1024w rung);
- the failed upload shows its error kind; GPS shows where the photo has it (with --show-gps).

Screenshots: target/gallery/screenshot-640.png and screenshot-1024.png. Runs in make test (about a
minute) under localstack/with.sh.   usage: test_gallery.py [STACK_NAME]
"""
import base64
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import boto3
from botocore.config import Config
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.support.ui import WebDriverWait

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "localstack"))
from demo import APP_UPLOAD, IMAGES, SAMPLES, wait_for  # noqa: E402 - the demo's own uploads

# cargo's target directory: ./target, or CARGO_TARGET_DIR (make test under CI=true builds outside the clone)
TARGET = os.environ.get("CARGO_TARGET_DIR") or os.path.join(ROOT, "target")
BIN = os.path.join(TARGET, "debug")
OUT = os.path.join(TARGET, "gallery")
ENDPOINT = os.environ.get("AWS_ENDPOINT_URL", "http://127.0.0.1:4566")
PRESETS = os.path.join(ROOT, "functions", "core", "presets", "responsive.toml")
VIEWPORTS = (640, 1024)


def fail(message: str) -> None:
    raise SystemExit(f"FAIL: {message}")


def process_demo_uploads(stack: str) -> list[str]:
    deployed = subprocess.run([sys.executable, os.path.join(ROOT, "localstack", "deploy.py"), stack, "LocalMode=true"],
                              check=True, capture_output=True, text=True)
    out = json.loads(deployed.stdout)
    env = dict(os.environ, RUST_LOG="warn", IMGPIPE_OUTPUT_BUCKET=out["DerivativesBucketName"],
               IMGPIPE_INGEST_BUCKET=out["IngestBucketName"], IMGPIPE_QUEUE_URL=out["JobsQueueUrl"], IMGPIPE_DLQ_URL=out["DlqUrl"], IMGPIPE_PRESETS_FILE=PRESETS,
               IMGPIPE_RETRY_BASE_SECONDS="1", IMGPIPE_METRICS="off")  # EMF lines are for CloudWatch
    worker = subprocess.Popen([os.path.join(BIN, "derive"), "--wait-seconds", "1"], env=env)
    s3 = boto3.client("s3", endpoint_url=ENDPOINT, config=Config(s3={"addressing_style": "path"}))
    keys = []
    try:
        for file, name, _ in [APP_UPLOAD, *SAMPLES]:
            key = name if name.startswith("uploads/") else f"uploads/{name}"
            s3.put_object(Bucket=out["IngestBucketName"], Key=key, Body=open(os.path.join(IMAGES, file), "rb").read())
            keys.append(key)
        for key in keys:
            wait_for(s3, out["DerivativesBucketName"], f"{out['OutputPrefix']}{key}/metadata.json", timeout=300)
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=60)
    return keys


def browser(width: int) -> webdriver.Chrome:
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or fail("chromium is not installed (make setup installs it)")
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--allow-file-access-from-files", f"--window-size={width},1000", "--hide-scrollbars"):
        options.add_argument(arg)
    driver_path = shutil.which("chromedriver") or fail("chromedriver is not installed (Debian chromium-driver)")
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                           {"width": width, "height": 1000, "deviceScaleFactor": 1, "mobile": False})
    return driver


def check(page: str, width: int, uploads: int) -> None:
    driver = browser(width)
    try:
        driver.get("file://" + page)
        WebDriverWait(driver, 120).until(
            lambda d: d.execute_script("return document.readyState === 'complete' && "
                                       "Array.from(document.images).every(i => i.complete)"))
        images = driver.execute_script("""
            return Array.from(document.images).map(img => {
              const frame = img.closest('.frame'), canvas = frame && frame.querySelector('canvas.thumbhash');
              return {src: img.currentSrc, natural: img.naturalWidth, loadedAt: parseFloat(img.dataset.loadedAt),
                      responsive: img.classList.contains('responsive'), sizes: img.sizes,
                      srcset: img.parentElement.tagName === 'PICTURE'
                        ? (img.parentElement.querySelector('source') || img).srcset : img.srcset,
                      canvas: canvas ? {w: canvas.width, paintedAt: parseFloat(canvas.dataset.paintedAt)} : null};
            });""")
        if len(images) < 3 * uploads:
            fail(f"only {len(images)} images on the page for {uploads} uploads")
        broken = [i["src"] for i in images if i["natural"] <= 0]
        if broken:
            fail(f"{len(broken)} images did not load, e.g. {broken[0]}")
        for image in images:
            canvas = image["canvas"]
            if canvas is None or canvas["w"] <= 0 or canvas["paintedAt"] is None:
                fail(f"no painted ThumbHash placeholder under {image['src']} when the page had loaded")
            if image["loadedAt"] is None or not canvas["paintedAt"] < image["loadedAt"]:
                fail(f"placeholder painted at {canvas['paintedAt']} ms, not before the image loaded "
                     f"({image['loadedAt']} ms): {image['src']}")
        responsive = [i for i in images if i["responsive"]]
        if len(responsive) < 3:
            fail(f"only {len(responsive)} responsive pictures")
        for image in responsive:
            widths = sorted(int(m) for m in re.findall(r" (\d+)w(?:,|$)", image["srcset"]))
            widest = int(re.search(r"(\d+)px\)", image["sizes"]).group(1))
            slot = min(width, widest)
            expected = next((w for w in widths if w >= slot), widths[-1])
            chosen = re.search(r"-(\d+)w\.(webp|jpg)", image["src"])
            if not chosen or int(chosen.group(1)) != expected:
                fail(f"at {width} px the srcset {widths} should give {expected}w, the browser took {image['src']}")
        errors = driver.execute_script(
            "return Array.from(document.querySelectorAll('.source.failed .error')).map(e => e.textContent)")
        if not any("corrupt" in e or "unsupported" in e for e in errors):
            fail(f"the failed upload's reason is not on the page: {errors}")
        if not driver.execute_script("return document.querySelectorAll('.gps').length"):
            fail("the iPhone photo's GPS position is not on the page")
        driver.execute_script("window.scrollTo(0, 0)")
        screenshot = os.path.join(OUT, f"screenshot-{width}.png")
        driver.save_screenshot(screenshot)
        # The top of the page as a small JPEG (the picture in README.md and docs/delivery.md is one of these).
        shot = driver.execute_cdp_cmd("Page.captureScreenshot", {
            "format": "jpeg", "quality": 72, "captureBeyondViewport": True,
            "clip": {"x": 0, "y": 0, "width": width, "height": 1500, "scale": 1}})
        with open(os.path.join(OUT, f"gallery-{width}.jpg"), "wb") as f:
            f.write(base64.b64decode(shot["data"]))
        chosen = sorted({int(re.search(r"-(\d+)w", i["src"]).group(1)) for i in responsive})
        print(f"{width} px: {len(images)} images loaded after their placeholders; "
              f"{len(responsive)} srcsets chose {chosen} px wide rungs; screenshot {screenshot}")
    finally:
        driver.quit()


def main() -> int:
    stack = sys.argv[1] if len(sys.argv) > 1 else f"browser-{os.getpid()}"
    os.makedirs(OUT, exist_ok=True)
    started = time.time()
    keys = process_demo_uploads(stack)
    page = os.path.join(OUT, "index.html")
    subprocess.run([os.path.join(BIN, "imgpipe"), "gallery", "--stack", stack, "-o", page, "--show-gps"], check=True)
    for width in VIEWPORTS:
        check(page, width, len(keys))
    print(f"gallery browser test passed in {time.time() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
