#!/usr/bin/env python3
"""Calibrates the peak-memory prediction (imgpipe_core::memory) against measured peak RSS.

For every image of the corpus (and a 24 MP JPEG made here), runs `imgpipe-bench --iterations 1` on
that one file in a fresh process and reads its peak RSS (VmHWM, which it prints); the peak of a process that only
reads a tiny file is the baseline subtracted from each. Prints measured vs predicted, the ratio, and
writes target/bench/memory.json. The prediction must stay above the measurement: admission relies on
it (`make test` checks the admission itself on the real binary).

    python3 bench/memory.py [--binary target/release/imgpipe-bench]
"""

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# cargo's target directory: ./target, or CARGO_TARGET_DIR (make test under CI=true builds outside the clone)
TARGET = Path(os.environ.get("CARGO_TARGET_DIR") or ROOT / "target")
CORPUS = ROOT / "tests" / "fixtures" / "images"


def peak_rss(command: list[str]) -> tuple[int, dict]:
    """Runs `command`; returns the peak resident set it reports (its own VmHWM, in bytes) and its JSON.
    Not its VmHWM's ru_maxrss: Linux carries this (large) Python process's high-water mark into it."""
    proc = subprocess.run(command, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{command}: {proc.stderr[-500:]}")
    report = json.loads(proc.stdout)
    return report["peak_rss_bytes"], report


def make_24mp(path: Path) -> None:
    """A 24 MP JPEG (8064×3024, the 12 MP Olympus photo twice side by side), quality 90."""
    from PIL import Image

    half = Image.open(CORPUS / "large_olympus-e-p3_12mp.jpg").convert("RGB")
    whole = Image.new("RGB", (half.width * 2, half.height))
    whole.paste(half, (0, 0))
    whole.paste(half.transpose(Image.Transpose.FLIP_LEFT_RIGHT), (half.width, 0))
    whole.save(path, quality=90)


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--binary", default=str(TARGET / "release" / "imgpipe-bench"))
    args = p.parse_args()
    out_dir = TARGET / "bench"
    out_dir.mkdir(parents=True, exist_ok=True)
    big = out_dir / "olympus_24mp.jpg"
    if not big.exists():
        make_24mp(big)
    files = sorted(
        f
        for f in CORPUS.iterdir()
        if f.suffix.lower() in {".jpg", ".jpeg", ".png", ".webp", ".gif", ".heic", ".avif", ".jxl", ".tif", ".tiff"}
        and not f.name.startswith(("bomb_", "truncated_", "corrupt_", "not_an_image", "crafted_png_ztxt"))
    ) + [big]
    predictions = json.loads(subprocess.check_output([args.binary, "--predict-peak", *map(str, files)]))["predictions"]
    tiny = CORPUS / "Landscape_1.jpg"
    baseline, _ = peak_rss([args.binary, "--predict-peak", str(tiny)])
    rows = []
    for file, predicted in zip(files, predictions):
        if "error" in predicted:
            continue
        try:
            rss, _ = peak_rss([args.binary, "--iterations", "1", str(file)])
        except RuntimeError as e:  # a file the pipeline refuses (by design) has no peak to compare
            print(f"skipped {file.name}: {str(e)[-120:]}", file=sys.stderr)
            continue
        measured = rss - baseline
        rows.append(
            {
                "file": file.name,
                "measured_mib": round(measured / 2**20, 1),
                "predicted_mib": round(predicted["bytes"] / 2**20, 1),
                "ratio": round(predicted["bytes"] / max(measured, 1), 2),
            }
        )
    rows.sort(key=lambda r: r["measured_mib"])
    print(f"baseline (process reading one small file): {baseline / 2**20:.1f} MiB")
    print(f"{'file':48} {'measured MiB':>12} {'predicted MiB':>13} {'pred/meas':>9}")
    for r in rows:
        print(f"{r['file'][:48]:48} {r['measured_mib']:12.1f} {r['predicted_mib']:13.1f} {r['ratio']:9.2f}")
    under = [r for r in rows if r["ratio"] < 1.0 and r["measured_mib"] > 8]
    print(f"predictions under the measurement (peaks > 8 MiB): {len(under)} of {len(rows)}")
    (out_dir / "memory.json").write_text(json.dumps({"baseline_bytes": baseline, "rows": rows}, indent=2))
    return 1 if under else 0


if __name__ == "__main__":
    sys.exit(main())
