#!/usr/bin/env python3
"""HEIC decode time: imgpipe's (heic-decoder, pure Rust) against libheif + libde265 (pillow-heif),
one thread each, on the iPhone-layout 12 MP HEIC of `make bench` (task e's input, made by
bench/make-heic-input.py). Run after `make bench` (it makes the input and the release build):

    .venv/bin/python bench/heic_decode.py

imgpipe's figure is the `decode` stage of `imgpipe-bench` (HEVC decode of every tile, the grid, the
YCbCr → RGB conversion and orientation), median of 5; libheif's is `pillow_heif.open_heif(...).load()`
decoding to RGB with DECODE_THREADS = 1, median of 5. Prints both and the ratio; not a test.
"""
import json
import os
import pathlib
import statistics
import subprocess
import time

import pillow_heif

ROOT = pathlib.Path(__file__).resolve().parents[1]
TARGET = pathlib.Path(os.environ.get("CARGO_TARGET_DIR") or ROOT / "target")
INPUT = TARGET / "bench" / "inputs" / "photo_4032x3024.heic"
RUNS = 5


def libheif_ms():
    pillow_heif.options.DECODE_THREADS = 1
    times = []
    for _ in range(RUNS):
        started = time.perf_counter()
        image = pillow_heif.open_heif(INPUT, convert_hdr_to_8bit=True)
        image.data  # decodes the primary image
        times.append((time.perf_counter() - started) * 1e3)
    return statistics.median(times)


def imgpipe_ms():
    out = subprocess.run([TARGET / "release" / "imgpipe-bench", "--iterations", str(RUNS), "--threads", "1", INPUT],
                         check=True, capture_output=True, env=dict(os.environ, RAYON_NUM_THREADS="1")).stdout
    return json.loads(out)["stage_median_ms"]["decode"]


def main():
    ours, theirs = imgpipe_ms(), libheif_ms()
    print(f"12 MP HEIC (4032x3024, 512 px x265 grid), 1 thread: imgpipe {ours:.1f} ms, "
          f"libheif {pillow_heif.libheif_version()} + libde265 (pillow-heif {pillow_heif.__version__}) {theirs:.1f} ms, "
          f"ratio {ours / theirs:.2f}")


if __name__ == "__main__":
    main()
