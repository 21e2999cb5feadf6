#!/usr/bin/env python3
"""`make gpu-check`, part 2: images/s of the worker's pipeline with the GPU resize backend vs the CPU
backend on all cores, 12 MP JPEGs, for the JPEG-only preset set and the default set (WebP outputs are
encoded on CPU threads in both, so their share shows as the difference). Needs a CUDA device; prints a
table and writes target/bench/gpu.json. Not a pass/fail test (the kernel checks run before it)."""
import json
import os
import pathlib
import subprocess

ROOT = pathlib.Path(__file__).resolve().parents[1]
BENCH = ROOT / "target" / "release" / "imgpipe-bench"
PHOTO = ROOT / "tests" / "fixtures" / "images" / "large_olympus-e-p3_12mp.jpg"
CORES = os.cpu_count() or 2
ITERATIONS = int(os.environ.get("GPU_BENCH_ITERATIONS", str(max(20, 4 * CORES))))


def run(backend, presets):
    cmd = [BENCH, "--backend", backend, "--threads", str(CORES), "--iterations", str(ITERATIONS), PHOTO]
    if presets:
        cmd[1:1] = ["--presets", presets]
    out = subprocess.run([str(c) for c in cmd], check=True, capture_output=True, text=True).stdout
    return json.loads(out)


def main():
    rows = {}
    for name, presets in [("jpeg-only", ROOT / "bench" / "presets" / "jpeg-only.toml"), ("default", None)]:
        cpu, gpu = run("cpu", presets), run("gpu", presets)
        rows[name] = {"cpu_img_s": cpu["images_per_s"], "gpu_img_s": gpu["images_per_s"],
                      "gpu_vs_cpu": gpu["images_per_s"] / cpu["images_per_s"], "device": gpu.get("device")}
        print(f"{name:<10} CPU ({CORES} threads) {cpu['images_per_s']:8.2f} img/s   "
              f"GPU {gpu['images_per_s']:8.2f} img/s   x{rows[name]['gpu_vs_cpu']:.2f}   ({gpu.get('device')})")
    out = ROOT / "target" / "bench"
    out.mkdir(parents=True, exist_ok=True)
    (out / "gpu.json").write_text(json.dumps({"cores": CORES, "iterations": ITERATIONS, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
