//! `--faces DIR`: how well cover crops keep faces, on a labelled set. `DIR/boxes.tsv` has one row
//! per human-drawn face box (`file width height face_x face_y face_w face_h …`, pixels of the
//! stored, upright image) and `DIR/images/` the photos (`bench/faces.md` says where the set comes
//! from and how to rebuild it).
//!
//! Every image goes through `imgpipe_core::process` twice with a one-preset set, the default
//! `thumbnail` (200×200 cover) with `gravity = "centre"` and with `gravity = "auto"`, as an upload
//! would; the crop each derivative records is checked against the image's primary face (the largest
//! labelled box): is the whole box inside? The `auto` run's `faces` are matched to the labelled
//! boxes at IoU ≥ 0.5 for the detector's recall and precision. `timings_ms.detect` of the `auto` run
//! is the analysis cost (small copy + faces + attention) at one thread.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Context;
use imgpipe_core::metadata::CropInfo;
use imgpipe_core::{Engine, Options, PresetSet, SourceRef, process};

#[derive(Clone, Copy, Debug)]
struct Box2 {
    x: f64,
    y: f64,
    w: f64,
    h: f64,
}

impl Box2 {
    fn iou(&self, o: &Box2) -> f64 {
        let ix = (self.x + self.w).min(o.x + o.w) - self.x.max(o.x);
        let iy = (self.y + self.h).min(o.y + o.h) - self.y.max(o.y);
        if ix <= 0.0 || iy <= 0.0 {
            return 0.0;
        }
        let inter = ix * iy;
        inter / (self.w * self.h + o.w * o.h - inter)
    }

    fn inside(&self, crop: &CropInfo) -> bool {
        self.x >= f64::from(crop.x) - 0.5
            && self.y >= f64::from(crop.y) - 0.5
            && self.x + self.w <= f64::from(crop.x + crop.w) + 0.5
            && self.y + self.h <= f64::from(crop.y + crop.h) + 0.5
    }
}

fn thumbnail(gravity: &str) -> PresetSet {
    PresetSet::from_toml(&format!(
        "[[preset]]\nname='thumbnail'\nwidth=200\nheight=200\nfit='cover'\ngravity='{gravity}'\nquality=80"
    ))
    .expect("a valid preset")
}

/// Runs the evaluation and returns its JSON report.
pub fn evaluate(dir: &Path, focus_side: u32) -> anyhow::Result<serde_json::Value> {
    let tsv = std::fs::read_to_string(dir.join("boxes.tsv"))
        .with_context(|| format!("reading {}/boxes.tsv", dir.display()))?;
    let mut labels: BTreeMap<String, Vec<Box2>> = BTreeMap::new();
    for (n, line) in tsv.lines().enumerate().skip(1) {
        let cols: Vec<&str> = line.split('\t').collect();
        anyhow::ensure!(cols.len() >= 7, "boxes.tsv line {}: 7+ columns", n + 1);
        let num = |i: usize| -> anyhow::Result<f64> {
            cols[i]
                .parse()
                .with_context(|| format!("boxes.tsv line {} column {}", n + 1, i + 1))
        };
        labels.entry(cols[0].to_string()).or_default().push(Box2 {
            x: num(3)?,
            y: num(4)?,
            w: num(5)?,
            h: num(6)?,
        });
    }
    let options = Options {
        focus_side,
        ..Options::default()
    };
    let (centre, auto) = (thumbnail("centre"), thumbnail("auto"));
    let mut engine = Engine::default();
    let (
        mut kept_centre,
        mut kept_auto,
        mut portrait,
        mut kept_auto_portrait,
        mut kept_centre_portrait,
    ) = (0, 0, 0, 0, 0);
    let (mut true_pos, mut detections, mut labelled) = (0usize, 0usize, 0usize);
    let mut sources: BTreeMap<String, usize> = BTreeMap::new();
    let mut detect_ms = Vec::new();
    let mut rows = Vec::new();
    for (file, boxes) in &labels {
        let bytes = std::fs::read(dir.join("images").join(file))
            .with_context(|| format!("reading images/{file}"))?;
        let source = SourceRef {
            key: file.clone(),
            ..Default::default()
        };
        let run = |set: &PresetSet, engine: &mut Engine| {
            process(&bytes, &source, set, &options, engine)
                .map_err(|f| anyhow::anyhow!("{file}: {}", f.error.message))
        };
        let with_centre = run(&centre, &mut engine)?;
        let with_auto = run(&auto, &mut engine)?;
        let primary = boxes
            .iter()
            .copied()
            .max_by(|a, b| (a.w * a.h).total_cmp(&(b.w * b.h)))
            .expect("a labelled image has a box");
        let crop =
            |p: &imgpipe_core::Processed| p.metadata.derivatives[0].crop.expect("cover crop");
        let (in_centre, in_auto) = (
            primary.inside(&crop(&with_centre)),
            primary.inside(&crop(&with_auto)),
        );
        let m = &with_auto.metadata;
        let (w, h) = (
            f64::from(m.source.width.unwrap_or(1)),
            f64::from(m.source.height.unwrap_or(1)),
        );
        let found: Vec<Box2> = m
            .faces
            .iter()
            .flatten()
            .map(|f| Box2 {
                x: f.x * w,
                y: f.y * h,
                w: f.w * w,
                h: f.h * h,
            })
            .collect();
        let mut used = vec![false; boxes.len()];
        for d in &found {
            let best = (0..boxes.len())
                .filter(|&i| !used[i])
                .max_by(|&a, &b| d.iou(&boxes[a]).total_cmp(&d.iou(&boxes[b])));
            if let Some(i) = best.filter(|&i| d.iou(&boxes[i]) >= 0.5) {
                used[i] = true;
                true_pos += 1;
            }
        }
        detections += found.len();
        labelled += boxes.len();
        kept_centre += usize::from(in_centre);
        kept_auto += usize::from(in_auto);
        if h > w {
            portrait += 1;
            kept_centre_portrait += usize::from(in_centre);
            kept_auto_portrait += usize::from(in_auto);
        }
        let focus = m.focus.expect("an auto crop records its focus");
        *sources
            .entry(
                serde_json::to_value(focus.source)?
                    .as_str()
                    .unwrap_or("?")
                    .to_string(),
            )
            .or_default() += 1;
        detect_ms.push(m.timings_ms.detect);
        rows.push(serde_json::json!({
            "file": file, "centre": in_centre, "auto": in_auto, "focus": focus.source,
            "faces_found": found.len(), "faces_labelled": boxes.len(),
        }));
    }
    let images = labels.len();
    detect_ms.sort_by(f64::total_cmp);
    let share = |n: usize, of: usize| (n as f64 / of.max(1) as f64 * 1000.0).round() / 10.0;
    Ok(serde_json::json!({
        "images": images,
        "focus_side": focus_side,
        "primary_face_kept_pct": {"centre": share(kept_centre, images), "auto": share(kept_auto, images)},
        "portrait_images": portrait,
        "portrait_primary_face_kept_pct": {"centre": share(kept_centre_portrait, portrait), "auto": share(kept_auto_portrait, portrait)},
        "detector_at_iou_0_5": {
            "labelled": labelled, "detections": detections, "matched": true_pos,
            "recall_pct": share(true_pos, labelled), "precision_pct": share(true_pos, detections),
        },
        "focus_sources": sources,
        "detect_ms": {
            "median": detect_ms.get(images / 2).copied().unwrap_or(0.0),
            "p90": detect_ms.get(images * 9 / 10).copied().unwrap_or(0.0),
        },
        "per_image": rows,
    }))
}
