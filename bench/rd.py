#!/usr/bin/env python3
"""`make bench` (and `make bench-rd`): rate–distortion of imgpipe's encoders vs sharp's, same pixels in.

1. `imgpipe-bench --rd-refs`: each photo through the real pipeline to a lossless PNG at 1200 and 200 px
   (longest side), and sharp's own task (2725x2225 -> 720x588): the references.
2. `rd-sharp.mjs`: sharp (libjpeg-turbo, mozjpeg: true, WebP, AVIF) encodes those same pixels over the ladder.
3. `imgpipe-bench --rd`: imgpipe's encoders over the ladder; every output decoded and scored with
   SSIMULACRA2 against its reference; encode ms best of three, one thread.
4. Here: BD-rate (`imgpipe-bench --bd-rate`: log-bytes vs score, PCHIP, over the shared score range) of
   each encoder against sharp's default JPEG per reference, averaged; a table; an SVG of the mean curves;
   target/bench/rd.json. Nothing here is a pass/fail test.
"""
import collections
import json
import os
import pathlib
import shutil
import statistics
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
# cargo's target directory: ./target, or CARGO_TARGET_DIR (make test under CI=true builds outside the clone)
TARGET = pathlib.Path(os.environ.get("CARGO_TARGET_DIR") or ROOT / "target")
BENCH = ROOT / "bench"
FIXTURES = ROOT / "tests" / "fixtures" / "images"
OUT = TARGET / "bench"
RD = OUT / "rd"
TOOL = TARGET / "release" / "imgpipe-bench"
LADDER = [30, 40, 50, 60, 70, 75, 80, 85, 90, 95]
BASELINE = "sharp jpeg (libjpeg-turbo)"
MOZJPEG = "sharp jpeg mozjpeg"
WEBP_BASELINE = "sharp webp"
AVIF_BASELINE = "sharp avif"

# Real photos from the fixtures (see tests/fixtures/images/MANIFEST.tsv): five cameras, a phone HEIC, a
# concert shot with a gamma-2.2 profile.
PHOTOS = [
    "camera_iphone6_gps-altitude_8mp.jpg",
    "camera_nokia-8-3-5g_gps_9mp.jpg",
    "large_olympus-e-p3_12mp.jpg",
    "camera_canon-sx60hs_orient6.jpg",
    "progressive_nikon-d300_exif.jpeg",
    "gray_concert_gamma22-icc.jpg",
    "heic_iphone11promax_gps_p3.heic",
    "Landscape_1.jpg",
]
SHARP_TASK = OUT / "inputs" / "photo_2725x2225.jpg"


def sh(cmd, **kw):
    print("+", " ".join(str(c) for c in cmd), flush=True)
    return subprocess.run([str(c) for c in cmd], check=True, **kw)


def prepare():
    sh(["cargo", "build", "--release", "-q", "-p", "imgpipe-bench"], cwd=ROOT)
    if not (BENCH / "node_modules" / "sharp").exists():
        sh(["npm", "install", "--no-audit", "--no-fund", "--loglevel=error"], cwd=BENCH)
    if not SHARP_TASK.exists():
        (OUT / "inputs").mkdir(parents=True, exist_ok=True)
        sh(["node", BENCH / "make-inputs.mjs", FIXTURES / "large_olympus-e-p3_12mp.jpg", OUT / "inputs"])


def size_class(reference):
    return reference.rsplit("-", 1)[1]


def bd_rates(points, baseline):
    """{encoder: {reference: bd_rate}} against `baseline`, one curve file per reference."""
    curves = collections.defaultdict(lambda: collections.defaultdict(list))
    for p in points:
        curves[p["reference"]][p["encoder"]].append([p["bytes"], p["score"]])
    files, names = [], []
    for reference, by_encoder in sorted(curves.items()):
        if baseline not in by_encoder:
            continue
        doc = {"reference": by_encoder[baseline]}
        doc.update({e: c for e, c in by_encoder.items() if e != baseline})
        slug = "".join(c if c.isalnum() else "-" for c in baseline)
        path = RD / "curves" / f"{reference}-vs-{slug}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(doc))
        files.append(path)
        names.append(reference)
    out = json.loads(sh([TOOL, "--bd-rate", *files], capture_output=True).stdout)
    rates = collections.defaultdict(dict)
    for reference, report in zip(names, out):
        for encoder, value in report.items():
            rates[encoder][reference] = value["bd_rate"]
    return rates


def svg(points, path):
    """Mean bits per pixel vs mean SSIMULACRA2 per encoder and quality, one panel per size class."""
    refs = json.loads((RD / "refs.json").read_text())
    pixels = {r["name"]: r["width"] * r["height"] for r in refs}
    classes = sorted({size_class(p["reference"]) for p in points}, key=lambda c: -len(c))
    encoders = sorted({p["encoder"] for p in points})
    colours = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
               "#bcbd22", "#17becf", "#393b79", "#ad494a"]
    panel_w, panel_h, margin = 460, 340, 55
    width = margin + len(classes) * (panel_w + margin)
    height = panel_h + 2 * margin + 22 * len(encoders)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             'font-family="sans-serif" font-size="12"><rect width="100%" height="100%" fill="white"/>']
    for i, cls in enumerate(classes):
        x0, y0 = margin + i * (panel_w + margin), margin
        curves = {}
        for enc in encoders:
            curve = []
            for q in LADDER:
                at = [p for p in points if p["encoder"] == enc and p["quality"] == q
                      and size_class(p["reference"]) == cls]
                if at:
                    bpp = statistics.mean(8 * p["bytes"] / pixels[p["reference"]] for p in at)
                    curve.append((bpp, statistics.mean(p["score"] for p in at)))
            curves[enc] = curve
        xs = [b for c in curves.values() for b, _ in c]
        ys = [s for c in curves.values() for _, s in c]
        xmax, ymin, ymax = max(xs) * 1.05, min(ys) - 2, min(100, max(ys) + 2)
        sx = lambda b: x0 + b / xmax * panel_w  # noqa: E731
        sy = lambda s: y0 + panel_h - (s - ymin) / (ymax - ymin) * panel_h  # noqa: E731
        parts.append(f'<rect x="{x0}" y="{y0}" width="{panel_w}" height="{panel_h}" fill="none" stroke="#999"/>')
        parts.append(f'<text x="{x0 + panel_w / 2}" y="{y0 - 12}" text-anchor="middle" font-weight="bold">'
                     f'{cls} px: SSIMULACRA2 vs bits per pixel (mean over photos)</text>')
        for k in range(6):
            b = xmax * k / 5
            s = ymin + (ymax - ymin) * k / 5
            parts.append(f'<text x="{sx(b):.1f}" y="{y0 + panel_h + 16}" text-anchor="middle">{b:.2f}</text>')
            parts.append(f'<text x="{x0 - 6}" y="{sy(s) + 4:.1f}" text-anchor="end">{s:.0f}</text>')
            parts.append(f'<line x1="{x0}" x2="{x0 + panel_w}" y1="{sy(s):.1f}" y2="{sy(s):.1f}" stroke="#eee"/>')
        parts.append(f'<text x="{x0 + panel_w / 2}" y="{y0 + panel_h + 34}" text-anchor="middle">bits per pixel</text>')
        for j, enc in enumerate(encoders):
            pts = " ".join(f"{sx(b):.1f},{sy(s):.1f}" for b, s in curves[enc])
            dash = ' stroke-dasharray="5,3"' if enc.startswith("sharp") else ""
            parts.append(f'<polyline points="{pts}" fill="none" stroke="{colours[j % len(colours)]}" stroke-width="1.8"{dash}/>')
    for j, enc in enumerate(encoders):
        y = panel_h + 2 * margin + 22 * j
        dash = ' stroke-dasharray="5,3"' if enc.startswith("sharp") else ""
        parts.append(f'<line x1="{margin}" x2="{margin + 30}" y1="{y - 4}" y2="{y - 4}" stroke="{colours[j % len(colours)]}" '
                     f'stroke-width="2"{dash}/><text x="{margin + 38}" y="{y}">{enc}</text>')
    parts.append("</svg>")
    path.write_text("\n".join(parts))


def interpolate_bytes(curve, score):
    """Bytes at `score` on a [(score, bytes)] curve sorted by score, log-bytes linear between points."""
    import math
    for (s0, b0), (s1, b1) in zip(curve, curve[1:]):
        if s0 <= score <= s1:
            t = (score - s0) / (s1 - s0)
            return math.exp(math.log(b0) + t * (math.log(b1) - math.log(b0)))
    return float("nan")


def auto_quality(points):
    """`quality = { target }` on the 1200 px references against fixed qualities: the target is the mean
    score the fixed quality reaches on the set, so the two compare at equal mean score."""
    runs = [
        # label, encoder in the ladder, its fixed quality, preset lines
        ("JPEG auto vs q85", "imgpipe jpeg turbo progressive", 85, "format='jpeg'\\nprogressive=true"),
        ("JPEG auto vs q80", "imgpipe jpeg turbo progressive", 80, "format='jpeg'\\nprogressive=true"),
        ("WebP auto vs q80", "imgpipe webp m4", 80, "format='webp'"),
        ("JPEG jpegli 4:4:4 auto vs jpegli 4:4:4 q85", "imgpipe jpeg jpegli progressive 4:4:4", 85,
         "format='jpeg'\\nprogressive=true\\nencoder='jpegli'\\nchroma_subsampling='4:4:4'"),
    ]
    levels = [("JPEG eco (60)", 60.0), ("JPEG good/auto (70)", 70.0), ("JPEG high (80)", 80.0)]
    rows = []
    for label, encoder, q, settings in runs + [(name, "imgpipe jpeg turbo progressive", None,
                                               "format='jpeg'\\nprogressive=true") for name, _ in levels]:
        fixed = [p for p in points if p["encoder"] == encoder and size_class(p["reference"]) == "1200"
                 and p["quality"] == (q or 85)]
        target = round(statistics.mean(p["score"] for p in fixed), 1) if q else dict(levels)[label]
        got = json.loads(sh([TOOL, "--rd", RD, "--rd-auto", "1200", "--rd-target", target, "--rd-settings", settings],
                            capture_output=True).stdout)
        scores = [g["score"] for g in got]
        row = {"label": label, "target": target, "mean_score": statistics.mean(scores),
               "spread": max(scores) - min(scores), "mean_bytes": statistics.mean(g["bytes"] for g in got),
               "mean_trials": statistics.mean(g["trials"] for g in got),
               "qualities": [g["quality"] for g in got], "mean_ms": statistics.mean(g["ms"] for g in got)}
        # The fixed-quality encoder's mean curve over the ladder, log-bytes interpolated at the auto
        # run's mean score: its bytes at exactly equal mean score.
        curve = sorted((statistics.mean(p["score"] for p in at), statistics.mean(p["bytes"] for p in at))
                       for at in ([p for p in points if p["encoder"] == encoder and p["quality"] == lq
                                   and size_class(p["reference"]) == "1200"] for lq in LADDER))
        row["fixed_bytes_at_equal_score"] = interpolate_bytes(curve, row["mean_score"])
        if q:
            row.update({"fixed_quality": q, "fixed_mean_score": statistics.mean(p["score"] for p in fixed),
                        "fixed_spread": max(p["score"] for p in fixed) - min(p["score"] for p in fixed),
                        "fixed_mean_bytes": statistics.mean(p["bytes"] for p in fixed),
                        "fixed_mean_ms": statistics.mean(p["ms"] for p in fixed)})
        rows.append(row)
    print()
    print("quality = { target }: SSIMULACRA2 reached per photo (1200 px) vs a fixed quality at the same mean score")
    print("| run | target | mean score (spread) | mean bytes | encodes | ms | fixed: mean score (spread) | fixed mean bytes "
          "| bytes vs fixed at equal mean score |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        fixed = (f"q{r['fixed_quality']}: {r['fixed_mean_score']:.1f} ({r['fixed_spread']:.1f}) | "
                 f"{r['fixed_mean_bytes']:.0f}" if "fixed_quality" in r else "— | —")
        versus = 100 * (r["mean_bytes"] / r["fixed_bytes_at_equal_score"] - 1)
        print(f"| {r['label']} | {r['target']} | {r['mean_score']:.1f} ({r['spread']:.1f}) | {r['mean_bytes']:.0f} | "
              f"{r['mean_trials']:.2f} | {r['mean_ms']:.1f} | {fixed} | {versus:+.1f} % |")
    return rows


def main():
    prepare()
    shutil.rmtree(RD, ignore_errors=True)
    RD.mkdir(parents=True)
    sh([TOOL, "--rd-refs", RD, "--rd-sizes", "1200,200", *[FIXTURES / p for p in PHOTOS]])
    sh([TOOL, "--rd-refs", RD, "--rd-sizes", "720x588", SHARP_TASK])
    sh(["node", BENCH / "rd-sharp.mjs", RD, ",".join(map(str, LADDER))])
    points = json.loads(sh([TOOL, "--rd", RD], capture_output=True).stdout)

    vs_jpeg = bd_rates(points, BASELINE)
    vs_webp = bd_rates(points, WEBP_BASELINE)
    vs_moz = bd_rates(points, MOZJPEG)
    vs_avif = bd_rates(points, AVIF_BASELINE)
    encoders = sorted({p["encoder"] for p in points})
    classes = sorted({size_class(p["reference"]) for p in points}, key=lambda c: -len(c))
    summary = {}
    for enc in encoders:
        row = {}
        for cls in classes:
            rates = [v for r, v in vs_jpeg.get(enc, {}).items() if size_class(r) == cls]
            row[f"bd_rate_vs_sharp_jpeg_{cls}"] = statistics.mean(rates) if rates else (0.0 if enc == BASELINE else None)
        moz_rates = list(vs_moz.get(enc, {}).values())
        row["bd_rate_vs_sharp_mozjpeg"] = statistics.mean(moz_rates) if moz_rates else None
        webp_rates = list(vs_webp.get(enc, {}).values())
        row["bd_rate_vs_sharp_webp"] = statistics.mean(webp_rates) if webp_rates else None
        avif_rates = list(vs_avif.get(enc, {}).values())
        row["bd_rate_vs_sharp_avif"] = statistics.mean(avif_rates) if avif_rates else None
        at80 = [p for p in points if p["encoder"] == enc and p["quality"] == 80 and size_class(p["reference"]) == "1200"]
        row["ms_q80_1200"] = statistics.mean(p["ms"] for p in at80)
        row["score_q80_1200"] = statistics.mean(p["score"] for p in at80)
        at85 = [p for p in points if p["encoder"] == enc and p["quality"] == 85 and size_class(p["reference"]) == "1200"]
        row["score_q85_1200"] = statistics.mean(p["score"] for p in at85)
        row["score_spread_q85_1200"] = max(p["score"] for p in at85) - min(p["score"] for p in at85)
        summary[enc] = row

    pct = lambda v: "—" if v is None else f"{100 * v:+.1f} %"  # noqa: E731
    print()
    print("Rate–distortion, same resized pixels into every encoder; SSIMULACRA2; BD-rate = bytes at equal score")
    print(f"(negative = fewer bytes); {len(PHOTOS)} photos at 1200 and 200 px + sharp's 720x588 task; ladder q{LADDER[0]}–{LADDER[-1]}")
    head = ["encoder"] + [f"BD vs sharp JPEG @{c}" for c in classes] + ["BD vs sharp mozjpeg", "BD vs sharp WebP", "BD vs sharp AVIF",
                                                                         "encode ms q80 @1200",
                                                                         "score q80", "score q85 (spread)"]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for enc in encoders:
        r = summary[enc]
        cells = [enc] + [pct(r[f"bd_rate_vs_sharp_jpeg_{c}"]) for c in classes] + [
            pct(r["bd_rate_vs_sharp_mozjpeg"]), pct(r["bd_rate_vs_sharp_webp"]), pct(r["bd_rate_vs_sharp_avif"]), f"{r['ms_q80_1200']:.1f}", f"{r['score_q80_1200']:.1f}",
            f"{r['score_q85_1200']:.1f} ({r['score_spread_q85_1200']:.1f})"]
        print("| " + " | ".join(cells) + " |")
    auto = auto_quality(points)
    plot = OUT / "rd.svg"
    svg(points, plot)
    result = {"ladder": LADDER, "photos": PHOTOS, "summary": summary, "bd_rate_vs_sharp_jpeg": vs_jpeg,
              "bd_rate_vs_sharp_webp": vs_webp, "bd_rate_vs_sharp_mozjpeg": vs_moz, "bd_rate_vs_sharp_avif": vs_avif, "auto": auto, "points": points}
    (OUT / "rd.json").write_text(json.dumps(result, indent=1))
    print(f"\nplot: {plot}\nJSON: {OUT / 'rd.json'}")


if __name__ == "__main__":
    sys.exit(main())
