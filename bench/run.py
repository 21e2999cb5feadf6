#!/usr/bin/env python3
"""`make bench`: imgpipe vs sharp, side by side, interleaved, on the same inputs.

For each task and each tool (imgpipe core in-process via `imgpipe-bench`, the `imgpipe` CLI as a whole
process, and sharp via `sharp-bench.mjs`), it runs a child process at 1 thread (median ms per image) and
at N threads (N = cores, images/s), rounds interleaved so machine noise hits every tool alike. Peak RSS is
the child's `ru_maxrss` from wait4. Prints a table with imgpipe/sharp ratios measured in this run and
writes target/bench/results.json. Nothing here is a pass/fail test.
"""
import json
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
# cargo's target directory: ./target, or CARGO_TARGET_DIR (make test under CI=true builds outside the clone)
TARGET = pathlib.Path(os.environ.get("CARGO_TARGET_DIR") or ROOT / "target")
BENCH = ROOT / "bench"
FIXTURES = ROOT / "tests" / "fixtures" / "images"
OUT = TARGET / "bench"
INPUTS = OUT / "inputs"
RELEASE = TARGET / "release"
CORES = os.cpu_count() or 2
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "2"))
# BENCH_TASKS=d (or "b,d"): only those tasks, and no encoder rows (a quick re-measure after a change).
ONLY = [t for t in os.environ.get("BENCH_TASKS", "").split(",") if t]

TASKS = [
    # name, description, files, preset file (None = default set), sharp pipeline, iterations
    ("a", "sharp's task: 2725x2225 JPEG -> 720x588 Lanczos3 JPEG q80",
     [INPUTS / "photo_2725x2225.jpg"], BENCH / "presets" / "sharp-task.toml", "sharp-task", 20),
    ("b", "default presets (5 outputs) on 3 photos, 8-12 MP",
     [FIXTURES / "camera_iphone6_gps-altitude_8mp.jpg", FIXTURES / "camera_nokia-8-3-5g_gps_9mp.jpg",
      FIXTURES / "large_olympus-e-p3_12mp.jpg"], None, "default", 5),
    ("c", "default presets on a 2048x1536 RGBA PNG",
     [FIXTURES / "png_rgba_blackbug_2048x1536.png"], None, "default", 10),
    ("d", "default presets on a 24 MP progressive JPEG",
     [INPUTS / "progressive_6000x4000_24mp.jpg"], None, "default", 5),
    ("e", "default presets on a 12 MP iPhone-style HEIC (4032x3024 grid of 512 px x265 tiles)",
     [INPUTS / "photo_4032x3024.heic"], None, "default", 3),
    ("f", "default presets on a 12 MP AVIF (4032x3024, 8-bit 4:2:0, libaom)",
     [INPUTS / "photo_4032x3024.avif"], None, "default", 3),
]

# Encoder only, 1200x900, one thread (imgpipe: the encode stage's median; sharp: encode from raw).
ENCODE_INPUT = INPUTS / "photo_1200x900.jpg"
ENCODERS = [
    # label, imgpipe preset file, sharp pipeline
    ("WebP q80 (effort 4)", BENCH / "presets" / "encode-webp.toml", "encode-webp"),
    ("AVIF q60 speed 6 (imgpipe default) / effort 4 (sharp default)", BENCH / "presets" / "encode-avif.toml",
     "encode-avif"),
    ("AVIF q60 speed 8", BENCH / "presets" / "encode-avif-s8.toml", None),
    ("AVIF q60 speed 4", BENCH / "presets" / "encode-avif-s4.toml", None),
]


def sh(cmd, **kw):
    print("+", " ".join(str(c) for c in cmd), flush=True)
    subprocess.run(cmd, check=True, **kw)


def prepare():
    sh(["cargo", "build", "--release", "-q", "-p", "imgpipe-bench", "-p", "imgpipe-cli"], cwd=ROOT)
    if not (BENCH / "node_modules" / "sharp").exists():
        sh(["npm", "install", "--no-audit", "--no-fund", "--loglevel=error"], cwd=BENCH)
    INPUTS.mkdir(parents=True, exist_ok=True)
    if not (INPUTS / "photo_1200x900.jpg").exists():
        sh(["node", BENCH / "make-inputs.mjs", FIXTURES / "large_olympus-e-p3_12mp.jpg", INPUTS])
    if not (INPUTS / "photo_4032x3024.heic").exists():
        venv = ROOT / ".venv" / "bin" / "python"
        sh([venv, "-m", "pip", "install", "-q", "pillow==12.0.0", "numpy", "pypng", "pillow-heif==1.8.1"])
        sh([venv, BENCH / "make-heic-input.py", FIXTURES / "large_olympus-e-p3_12mp.jpg",
            INPUTS / "photo_4032x3024.heic"])


class Unsupported(Exception):
    """The tool cannot do the task (sharp's prebuilt libvips has no HEVC decoder)."""


def child(cmd, env=None, may_fail=False):
    """Runs cmd; returns (stdout, wall seconds, peak RSS MiB). A failure ends the run, unless
    `may_fail`, where it raises Unsupported."""
    started = time.perf_counter()
    proc = subprocess.Popen([str(c) for c in cmd], stdout=subprocess.PIPE, stderr=subprocess.PIPE if may_fail else None,
                            env=env, cwd=ROOT)
    out = proc.stdout.read().decode()
    err = proc.stderr.read().decode() if may_fail else ""
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        if may_fail:
            lines = [line.strip() for line in err.splitlines() if line.strip()]
            reason = next((line for line in reversed(lines) if "rror" in line and "Error()" not in line),
                          lines[-1] if lines else f"exit {proc.returncode}")
            raise Unsupported(reason)
        sys.exit(f"failed ({proc.returncode}): {cmd}")
    return out, time.perf_counter() - started, usage.ru_maxrss / 1024


def one_thread_env(threads):
    """At 1 thread, rayon (HEIC grid tiles, JPEG XL) gets one thread too: an honest 1-thread figure."""
    return dict(os.environ, RAYON_NUM_THREADS="1") if threads == 1 else None


def run_lib(task, threads):
    _, _, files, presets, _, iterations = task
    cmd = [RELEASE / "imgpipe-bench", "--iterations", iterations, "--threads", threads]
    if presets:
        cmd += ["--presets", presets]
    out, _, rss = child(cmd + files, env=one_thread_env(threads))
    return json.loads(out), rss


def run_sharp(task, threads):
    _, _, files, _, pipeline, iterations = task
    env = dict(os.environ, UV_THREADPOOL_SIZE=str(max(threads, 1)))
    cmd = ["node", BENCH / "sharp-bench.mjs", "--pipeline", pipeline, "--iterations", iterations,
           "--threads", threads]
    out, _, rss = child(cmd + files, env=env, may_fail=True)
    return json.loads(out), rss


def run_cli(task, threads):
    """The whole `imgpipe derive` process (start-up, file reads and writes) once per image, `threads`
    processes at a time."""
    _, _, files, presets, _, iterations = task
    runs = max(3, iterations // 2)
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [RELEASE / "imgpipe", "derive", "--out", tmp]
        if presets:
            cmd += ["--presets", presets]
        jobs = [cmd + [f] for _ in range(runs) for f in files]
        started = time.perf_counter()
        peak, times, running = 0.0, [], []
        while jobs or running:
            while jobs and len(running) < threads:
                job = jobs.pop(0)
                running.append((subprocess.Popen([str(c) for c in job], stdout=subprocess.DEVNULL, cwd=ROOT,
                                                 env=one_thread_env(threads)),
                                time.perf_counter()))
            pid, status, usage = os.wait4(-1, 0)
            for entry in running:
                if entry[0].pid == pid:
                    running.remove(entry)
                    times.append(time.perf_counter() - entry[1])
                    entry[0].returncode = os.waitstatus_to_exitcode(status)
                    if entry[0].returncode != 0:
                        sys.exit(f"imgpipe derive failed: {job}")
            peak = max(peak, usage.ru_maxrss / 1024)
        wall = time.perf_counter() - started
    n = len(times)
    return {"median_ms": statistics.median(times) * 1e3, "images_per_s": n / wall}, peak


TOOLS = [("imgpipe (lib)", run_lib), ("imgpipe (cli)", run_cli), ("sharp", run_sharp)]


def main():
    prepare()
    results = {}
    for round_ in range(ROUNDS):
        for task in TASKS:
            if ONLY and task[0] not in ONLY:
                continue
            for tool, runner in TOOLS:
                for threads in (1, CORES):
                    try:
                        data, rss = runner(task, threads)
                    except Unsupported as e:
                        results.setdefault(task[0], {})[tool] = {"unsupported": str(e)}
                        print(f"round {round_ + 1} task {task[0]} {tool:<14} not supported: {e}", flush=True)
                        break
                    entry = results.setdefault(task[0], {}).setdefault(tool, {}).setdefault(threads, [])
                    entry.append({**data, "peak_rss_mib": rss})
                    print(f"round {round_ + 1} task {task[0]} {tool:<14} {threads} thr: "
                          f"{data.get('median_ms', 0):8.1f} ms  {data['images_per_s']:7.2f} img/s  "
                          f"{rss:6.1f} MiB", flush=True)
    summary = summarise(results)
    encoders = [] if ONLY else encode_rows()
    OUT.mkdir(parents=True, exist_ok=True)
    machine = {"cores": CORES, "cpu": cpu_name(), "rounds": ROUNDS,
               "sharp": sharp_versions(), "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    (OUT / "results.json").write_text(json.dumps({"machine": machine, "summary": summary, "encoders": encoders,
                                                  "raw": results}, indent=2))
    print_table(summary, machine)
    print_encoders(encoders)
    print(f"\nJSON: {OUT / 'results.json'}")


def encode_rows():
    """AVIF vs WebP encode time and bytes at 1200x900 on one thread, imgpipe and sharp."""
    rows = []
    iterations = 5
    for label, presets, sharp_pipeline in ENCODERS:
        cmd = [RELEASE / "imgpipe-bench", "--iterations", iterations, "--threads", 1, "--presets", presets,
               ENCODE_INPUT]
        out, _, _ = child(cmd, env=one_thread_env(1))
        data = json.loads(out)
        row = {"encoder": label, "imgpipe_ms": data["stage_median_ms"]["encode"],
               "imgpipe_bytes": data["output_bytes"]}
        if sharp_pipeline:
            try:
                out, _, _ = child(["node", BENCH / "sharp-bench.mjs", "--pipeline", sharp_pipeline, "--iterations",
                                   iterations, "--threads", 1, ENCODE_INPUT],
                                  env=dict(os.environ, UV_THREADPOOL_SIZE="1"), may_fail=True)
                sharp = json.loads(out)
                row["sharp_ms"], row["sharp_bytes"] = sharp["median_ms"], sharp["output_bytes"]
            except Unsupported as e:
                row["sharp_ms"] = f"not supported ({e})"
        rows.append(row)
        print(f"encode 1200x900 {label}: imgpipe {row['imgpipe_ms']:.1f} ms", flush=True)
    return rows


def print_encoders(rows):
    print("\nencoders at 1200x900, one thread (encode only)")
    print(f"{'encoder':<64}{'imgpipe ms':>11}{'KiB':>8}{'sharp ms':>10}{'KiB':>8}")
    for r in rows:
        sharp_ms = r.get("sharp_ms")
        sharp_ms = f"{sharp_ms:10.1f}" if isinstance(sharp_ms, float) else f"{'-':>10}"
        sharp_kib = f"{r['sharp_bytes'] / 1024:8.1f}" if "sharp_bytes" in r else f"{'-':>8}"
        print(f"{r['encoder']:<64}{r['imgpipe_ms']:11.1f}{r['imgpipe_bytes'] / 1024:8.1f}{sharp_ms}{sharp_kib}")


def summarise(results):
    summary = {}
    for task in TASKS:
        if task[0] not in results:  # left out by BENCH_TASKS
            continue
        rows = {}
        for tool, _ in TOOLS:
            if "unsupported" in results[task[0]][tool]:
                rows[tool] = {"unsupported": results[task[0]][tool]["unsupported"]}
                continue
            one = results[task[0]][tool][1]
            many = results[task[0]][tool][CORES]
            rows[tool] = {
                "ms_1_thread": statistics.median(r["median_ms"] for r in one),
                "img_s_1_thread": statistics.median(r["images_per_s"] for r in one),
                f"img_s_{CORES}_threads": statistics.median(r["images_per_s"] for r in many),
                "peak_rss_mib_1_thread": max(r["peak_rss_mib"] for r in one),
                f"peak_rss_mib_{CORES}_threads": max(r["peak_rss_mib"] for r in many),
                "output_bytes": one[0].get("output_bytes"),
            }
        sharp = rows["sharp"]
        for tool, row in rows.items():
            if "unsupported" in row or "unsupported" in sharp:
                continue
            row["speedup_1_thread_vs_sharp"] = row["img_s_1_thread"] / sharp["img_s_1_thread"]
            row[f"speedup_{CORES}_threads_vs_sharp"] = row[f"img_s_{CORES}_threads"] / sharp[f"img_s_{CORES}_threads"]
            row["rss_vs_sharp"] = row["peak_rss_mib_1_thread"] / sharp["peak_rss_mib_1_thread"]
            if row["output_bytes"] and sharp["output_bytes"]:
                row["output_bytes_vs_sharp"] = row["output_bytes"] / sharp["output_bytes"]
        summary[task[0]] = {"description": task[1], "tools": rows}
    return summary


def print_table(summary, machine):
    print(f"\nimgpipe vs sharp {machine['sharp']} on {machine['cpu']} ({CORES} cores), "
          f"median of {ROUNDS} interleaved rounds")
    head = (f"{'task':<5}{'tool':<15}{'ms/img 1t':>10}{'img/s 1t':>10}{f'img/s {CORES}t':>10}"
            f"{'RSS MiB':>9}{'out KiB':>9}{'x sharp 1t':>11}{f'x sharp {CORES}t':>11}{'RSS/sharp':>10}{'bytes/sharp':>12}")
    print(head)
    print("-" * len(head))
    for name, task in summary.items():
        for tool, r in task["tools"].items():
            if "unsupported" in r:
                print(f"{name:<5}{tool:<15}not supported ({r['unsupported'][:70]})")
                continue
            if "speedup_1_thread_vs_sharp" not in r:
                out = f"{r['output_bytes'] / 1024:9.1f}" if r["output_bytes"] else f"{'-':>9}"
                print(f"{name:<5}{tool:<15}{r['ms_1_thread']:10.1f}{r['img_s_1_thread']:10.2f}"
                      f"{r[f'img_s_{CORES}_threads']:10.2f}{r['peak_rss_mib_1_thread']:9.1f}"
                      f"{out}   (sharp: not supported)")
                continue
            out = f"{r['output_bytes'] / 1024:9.1f}" if r["output_bytes"] else f"{'-':>9}"
            ratio = f"{r['output_bytes_vs_sharp']:12.3f}" if "output_bytes_vs_sharp" in r else f"{'-':>12}"
            print(f"{name:<5}{tool:<15}{r['ms_1_thread']:10.1f}{r['img_s_1_thread']:10.2f}"
                  f"{r[f'img_s_{CORES}_threads']:10.2f}{r['peak_rss_mib_1_thread']:9.1f}{out}"
                  f"{r['speedup_1_thread_vs_sharp']:11.2f}{r[f'speedup_{CORES}_threads_vs_sharp']:11.2f}"
                  f"{r['rss_vs_sharp']:10.2f}{ratio}")
        print(f"     ({task['description']})")


def cpu_name():
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown CPU"


def sharp_versions():
    try:
        out = subprocess.run(["node", "-e", "import('sharp').then(s=>console.log(JSON.stringify(s.default.versions)))"],
                             cwd=BENCH, capture_output=True, text=True, check=True).stdout
        v = json.loads(out)
        return f"sharp {v.get('sharp')} / libvips {v.get('vips')}"
    except Exception:  # noqa: BLE001 - only for the report header
        return "sharp"


if __name__ == "__main__":
    main()
