#!/usr/bin/env python3
"""`make gpu-check`, part 2: images/s of the worker's pipeline with the GPU backend (nvJPEG decode and
encode where they passed their self-checks, CUDA orientation and resize) vs the CPU backend on all
cores, 12 MP JPEGs, for the JPEG-only preset set and the default set. WebP outputs are encoded on CPU
threads in both runs: their share is reported separately, as the default set's extra encode time over
the JPEG-only set's. Also the median decode / resize / encode ms per image and how many device calls
fell back to the CPU. Needs a CUDA device; prints a table and writes target/bench/gpu.json. Not a
pass/fail test (the kernel checks run before it)."""
import json
import os
import pathlib
import subprocess

ROOT = pathlib.Path(__file__).resolve().parents[1]
# cargo's target directory: ./target, or CARGO_TARGET_DIR (make test under CI=true builds outside the clone)
TARGET = pathlib.Path(os.environ.get("CARGO_TARGET_DIR") or ROOT / "target")
BENCH = TARGET / "release" / "imgpipe-bench"
PHOTO = ROOT / "tests" / "fixtures" / "images" / "large_olympus-e-p3_12mp.jpg"
CORES = os.cpu_count() or 2
ITERATIONS = int(os.environ.get("GPU_BENCH_ITERATIONS", str(max(20, 4 * CORES))))


def run(backend, presets, compare=False):
    cmd = [BENCH, "--backend", backend, "--threads", str(CORES), "--iterations", str(ITERATIONS), PHOTO]
    if compare:
        cmd[1:1] = ["--compare-cpu"]
    if presets:
        cmd[1:1] = ["--presets", presets]
    out = subprocess.run([str(c) for c in cmd], check=True, capture_output=True, text=True).stdout
    return json.loads(out)


def main():
    rows = {}
    for name, presets in [("jpeg-only", ROOT / "bench" / "presets" / "jpeg-only.toml"), ("default", None)]:
        cpu, gpu = run("cpu", presets), run("gpu", presets, compare=True)
        rows[name] = {"cpu_img_s": cpu["images_per_s"], "gpu_img_s": gpu["images_per_s"],
                      "gpu_vs_cpu": gpu["images_per_s"] / cpu["images_per_s"], "device": gpu.get("device"),
                      "jpeg_decoder": gpu.get("jpeg_decoder"), "jpeg_encoder": gpu.get("jpeg_encoder"),
                      "cpu_stage_ms": cpu["stage_median_ms"], "gpu_stage_ms": gpu["stage_median_ms"],
                      "gpu_device_fallbacks": gpu["device_fallbacks"], "vs_cpu": gpu["vs_cpu"]}
        print(f"{name:<10} CPU ({CORES} threads) {cpu['images_per_s']:8.2f} img/s   "
              f"GPU {gpu['images_per_s']:8.2f} img/s   x{rows[name]['gpu_vs_cpu']:.2f}   ({gpu.get('device')}, "
              f"decode {gpu.get('jpeg_decoder')}, encode {gpu.get('jpeg_encoder')}, "
              f"{gpu['device_fallbacks']} fallbacks)")
        vs = gpu["vs_cpu"]
        print(f"           GPU derivatives vs CPU: max {vs['max_levels']} levels "
              f"(relative {vs['max_relative_error']:.4f}), mean {vs['mean_levels']:.3f}")
        for label, run_ in (("CPU", cpu), ("GPU", gpu)):
            st = run_["stage_median_ms"]
            print(f"           {label} median ms/image: decode {st['decode']:.1f}  resize {st['resize']:.1f}  "
                  f"encode {st['encode']:.1f}")
    gpu_default, gpu_jpeg = rows["default"]["gpu_stage_ms"], rows["jpeg-only"]["gpu_stage_ms"]
    total = sum(gpu_default.values())
    webp = max(0.0, gpu_default["encode"] - gpu_jpeg["encode"])
    rows["webp_share_of_gpu_default"] = webp / total if total else None
    print(f"WebP (CPU threads) share of the GPU run's per-image time, default set: {webp:.1f} of {total:.1f} ms "
          f"({100 * webp / total if total else 0:.0f} %)")
    out = TARGET / "bench"
    out.mkdir(parents=True, exist_ok=True)
    (out / "gpu.json").write_text(json.dumps({"cores": CORES, "iterations": ITERATIONS, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
