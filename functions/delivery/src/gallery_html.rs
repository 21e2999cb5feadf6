//! Renders the gallery: one self-contained HTML page (inline CSS and JS, no external assets), so it
//! opens from `file://`, from a bucket, or behind the CDN.
//!
//! Per source: its facts (format, size, bytes, camera, date, GPS when present and shown), then each
//! derivative in a frame that first shows the ThumbHash placeholder (decoded by the inline script,
//! painted before the `<img>` exists) with its preset, format, size and bytes; responsive groups as
//! one `<picture>` with a `srcset` per format and the group's `sizes`. Failed sources show their
//! error kind and message.

use std::fmt::Write;

use imgpipe_core::Metadata;
use imgpipe_core::metadata::{DerivativeInfo, Status};

use crate::gallery::Entry;

const THUMBHASH_JS: &str = include_str!("../assets/thumbhash.js");

/// Page-wide settings.
#[derive(Debug, Clone)]
pub struct Page {
    /// Where the documents came from, e.g. `s3://bucket/derived/`.
    pub origin: String,
    /// When the page was made (RFC 3339).
    pub generated_at: String,
    /// Show GPS positions the metadata holds (the handler's GPS policy already applied).
    pub show_gps: bool,
}

/// The whole page.
pub fn render(entries: &[Entry], page: &Page) -> String {
    let done = entries
        .iter()
        .filter(|e| matches!(&e.metadata, Ok(m) if m.status == Status::Done))
        .count();
    let mut html = String::with_capacity(64 * 1024);
    let _ = write!(
        html,
        r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>imgpipe gallery: {origin}</title>
<style>{CSS}</style>
<script>{THUMBHASH_JS}</script>
</head>
<body>
<input type="checkbox" id="show-focus"><label for="show-focus">show faces and focus</label>
<header><h1>imgpipe gallery</h1><p>{origin} · {count} sources, {done} done, {failed} failed · made {generated}</p></header>
<main>
"#,
        origin = escape(&page.origin),
        count = entries.len(),
        failed = entries.len() - done,
        generated = escape(&page.generated_at),
    );
    for entry in entries {
        render_entry(&mut html, entry, page);
    }
    if entries.is_empty() {
        html.push_str("<p class=\"empty\">No metadata documents under this prefix yet.</p>\n");
    }
    html.push_str("</main>\n</body>\n</html>\n");
    html
}

fn render_entry(html: &mut String, entry: &Entry, page: &Page) {
    let metadata = match &entry.metadata {
        Ok(m) => m,
        Err(why) => {
            let _ = writeln!(
                html,
                "<section class=\"source failed\"><h2>{}</h2><p class=\"error\">unreadable: {}</p></section>",
                escape(&entry.metadata_key),
                escape(why)
            );
            return;
        }
    };
    let status = if metadata.status == Status::Done {
        "done"
    } else {
        "failed"
    };
    let _ = write!(
        html,
        "<section class=\"source {status}\" data-key=\"{key}\"><h2>{key}</h2>\n<p class=\"facts\">{facts}</p>\n",
        key = escape(&metadata.source.key),
        facts = facts(metadata, page.show_gps),
    );
    if let Some(error) = &metadata.error {
        let _ = writeln!(
            html,
            "<p class=\"error\"><b>{}</b>: {} <i>({})</i></p>",
            escape(&error.kind),
            escape(&error.message),
            if error.retryable {
                "retryable"
            } else {
                "permanent: sent to the dead-letter queue"
            }
        );
    }
    let thumbhash = metadata.placeholder.as_ref().map(|p| p.thumbhash.as_str());
    // Responsive groups (more than one width) as one <picture>; the rest one frame per derivative.
    let responsive: Vec<&String> = metadata
        .groups
        .iter()
        .filter(|(name, _)| {
            let widths: std::collections::BTreeSet<u32> =
                members(metadata, name).map(|d| d.width).collect();
            widths.len() > 1
        })
        .map(|(name, _)| name)
        .collect();
    html.push_str("<div class=\"strip\">\n");
    for d in &metadata.derivatives {
        if responsive
            .iter()
            .any(|g| d.group.as_deref() == Some(g.as_str()))
        {
            continue;
        }
        let Some(url) = entry.urls.get(&d.key) else {
            continue;
        };
        let img = format!(
            "<img src=\"{}\" width=\"{}\" height=\"{}\" alt=\"{} of {}\" decoding=\"async\" onload=\"this.dataset.loadedAt=performance.now()\">",
            escape(url),
            d.width,
            d.height,
            escape(&d.preset),
            escape(&metadata.source.key)
        );
        let overlay = focus_overlay(metadata, d.crop);
        frame(
            html,
            d.width,
            d.height,
            thumbhash,
            &format!("{img}{overlay}"),
            &caption(d),
        );
    }
    html.push_str("</div>\n");
    for group in responsive {
        render_responsive(html, entry, metadata, group, thumbhash);
    }
    html.push_str("</section>\n");
}

fn members<'a>(
    metadata: &'a Metadata,
    group: &'a str,
) -> impl Iterator<Item = &'a DerivativeInfo> + 'a {
    metadata
        .derivatives
        .iter()
        .filter(move |d| d.group.as_deref().unwrap_or(&d.preset) == group)
}

fn render_responsive(
    html: &mut String,
    entry: &Entry,
    metadata: &Metadata,
    group: &str,
    thumbhash: Option<&str>,
) {
    let info = &metadata.groups[group];
    let srcset = |format: &str| -> String {
        let mut outputs: Vec<&DerivativeInfo> = members(metadata, group)
            .filter(|d| d.format == format)
            .collect();
        outputs.sort_by_key(|d| d.width);
        outputs
            .iter()
            .filter_map(|d| {
                entry
                    .urls
                    .get(&d.key)
                    .map(|u| format!("{} {}w", escape(u), d.width))
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    let Some((last, first)) = info.variants.split_last() else {
        return;
    };
    let mut picture = String::from("<picture>");
    for variant in first {
        // The page shows what was made: a format only rendered on request has no file to link yet.
        let set = srcset(&variant.format);
        if set.is_empty() {
            continue;
        }
        let _ = write!(
            picture,
            "<source type=\"{}\" srcset=\"{}\" sizes=\"{}\">",
            escape(&variant.content_type),
            set,
            escape(&info.sizes)
        );
    }
    let fallback = members(metadata, group)
        .filter(|d| d.format == last.format)
        .max_by_key(|d| d.width)
        .and_then(|d| entry.urls.get(&d.key))
        .map(|u| escape(u))
        .unwrap_or_default();
    let _ = write!(
        picture,
        "<img class=\"responsive\" data-group=\"{g}\" src=\"{fallback}\" srcset=\"{set}\" sizes=\"{sizes}\" width=\"{w}\" height=\"{h}\" alt=\"{g} of {key}\" onload=\"this.dataset.loadedAt=performance.now()\"></picture>",
        g = escape(group),
        set = srcset(&last.format),
        sizes = escape(&info.sizes),
        w = info.width,
        h = info.height,
        key = escape(&metadata.source.key),
    );
    let rungs: Vec<String> = members(metadata, group)
        .map(|d| format!("{} {}×{} {}", d.format, d.width, d.height, bytes(d.bytes)))
        .collect();
    let caption = format!(
        "<b>{}</b> (srcset, sizes=\"{}\"): the browser picks one of {}",
        escape(group),
        escape(&info.sizes),
        escape(&rungs.join(" · "))
    );
    html.push_str("<div class=\"wide\">\n");
    let picture = format!("{picture}{}", focus_overlay(metadata, None));
    frame(html, info.width, info.height, thumbhash, &picture, &caption);
    html.push_str("</div>\n");
}

/// The faces found at upload (green boxes) and the focus point (a dot, coloured by where it came
/// from), placed over an image showing `crop` of the upright source (`None`: all of it), in percent
/// of the frame; hidden until the page's "show faces and focus" box is ticked (CSS only).
fn focus_overlay(metadata: &Metadata, crop: Option<imgpipe_core::metadata::CropInfo>) -> String {
    let (width, height) = (
        f64::from(metadata.source.width.unwrap_or(1).max(1)),
        f64::from(metadata.source.height.unwrap_or(1).max(1)),
    );
    // The view as fractions of the upright source.
    let (vx, vy, vw, vh) = crop.map_or((0.0, 0.0, 1.0, 1.0), |c| {
        (
            f64::from(c.x) / width,
            f64::from(c.y) / height,
            f64::from(c.w) / width,
            f64::from(c.h) / height,
        )
    });
    let x = |v: f64| (v - vx) / vw * 100.0;
    let y = |v: f64| (v - vy) / vh * 100.0;
    let mut overlay = String::new();
    for face in metadata.faces.iter().flatten() {
        let _ = write!(
            overlay,
            "<i class=\"face\" style=\"left:{:.2}%;top:{:.2}%;width:{:.2}%;height:{:.2}%\" title=\"face, score {}\"></i>",
            x(face.x),
            y(face.y),
            face.w / vw * 100.0,
            face.h / vh * 100.0,
            face.score
        );
    }
    if let Some(focus) = metadata.focus {
        let source = serde_json::to_value(focus.source)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        let _ = write!(
            overlay,
            "<i class=\"focus {source}\" style=\"left:{:.2}%;top:{:.2}%\" title=\"focus ({source})\"></i>",
            x(focus.x),
            y(focus.y)
        );
    }
    overlay
}

/// A frame of the image's aspect ratio: the placeholder canvas, painted by the script right after it
/// (before the image element exists), then the image on top.
fn frame(
    html: &mut String,
    width: u32,
    height: u32,
    thumbhash: Option<&str>,
    image: &str,
    caption: &str,
) {
    let _ = write!(
        html,
        "<figure><div class=\"frame\" style=\"aspect-ratio: {width} / {height}; max-width: {width}px\">"
    );
    if let Some(hash) = thumbhash {
        let _ = write!(
            html,
            "<canvas class=\"thumbhash\" data-thumbhash=\"{}\"></canvas><script>paintThumbHash(document.currentScript.previousElementSibling)</script>",
            escape(hash)
        );
    }
    let _ = writeln!(
        html,
        "{image}</div><figcaption>{caption}</figcaption></figure>"
    );
}

fn caption(d: &DerivativeInfo) -> String {
    format!(
        "<b>{}</b> {} {}×{} · {}{}",
        escape(&d.preset),
        escape(&d.format),
        d.width,
        d.height,
        bytes(d.bytes),
        if d.frames > 1 {
            format!(" · {} frames", d.frames)
        } else {
            String::new()
        }
    )
}

fn facts(m: &Metadata, show_gps: bool) -> String {
    let s = &m.source;
    let mut parts: Vec<String> = Vec::new();
    if let Some(format) = &s.format {
        parts.push(format.to_uppercase());
    }
    if let (Some(w), Some(h)) = (s.width, s.height) {
        parts.push(format!("{w}×{h}"));
    }
    if let Some(b) = s.bytes {
        parts.push(bytes(b));
    }
    if let Some(o) = s.orientation.filter(|o| *o != 1) {
        parts.push(format!("orientation {o}"));
    }
    if let Some(icc) = &s.icc_profile {
        parts.push(icc.clone());
    }
    if let Some(hdr) = &s.hdr {
        parts.push(format!("HDR {} (tone-mapped)", hdr.to_uppercase()));
    }
    if let Some(camera) = &m.exif {
        let body: Vec<&str> = [camera.make.as_deref(), camera.model.as_deref()]
            .into_iter()
            .flatten()
            .collect();
        if !body.is_empty() {
            parts.push(body.join(" "));
        }
        if let Some(lens) = &camera.lens {
            parts.push(lens.clone());
        }
        let mut exposure = Vec::new();
        if let Some(f) = camera.focal_length_mm {
            exposure.push(format!("{f:.0} mm"));
        }
        if let Some(f) = camera.f_number {
            exposure.push(format!("f/{f}"));
        }
        if let Some(t) = &camera.exposure_time {
            exposure.push(format!("{t} s"));
        }
        if let Some(iso) = camera.iso {
            exposure.push(format!("ISO {iso}"));
        }
        if !exposure.is_empty() {
            parts.push(exposure.join(" "));
        }
        if let Some(date) = &camera.date_taken {
            parts.push(format!("taken {date}"));
        }
    }
    if show_gps && let Some(gps) = &m.gps {
        let altitude = gps
            .altitude_m
            .map(|a| format!(", {a:.0} m"))
            .unwrap_or_default();
        parts.push(format!(
            "<span class=\"gps\">GPS {:.5}, {:.5}{altitude}</span>",
            gps.latitude, gps.longitude
        ));
    }
    if let Some(p) = &m.placeholder {
        parts.push(format!(
            "<span class=\"swatch\" style=\"background:{0}\"></span>dominant {0}",
            escape(&p.dominant_color)
        ));
    }
    if m.status == Status::Done {
        parts.push(format!("{:.0} ms", m.timings_ms.total));
    }
    parts
        .into_iter()
        .map(|p| if p.starts_with('<') { p } else { escape(&p) })
        .collect::<Vec<_>>()
        .join(" · ")
}

fn bytes(n: u64) -> String {
    match n {
        0..1_000 => format!("{n} B"),
        1_000..1_000_000 => format!("{:.1} KB", n as f64 / 1e3),
        _ => format!("{:.2} MB", n as f64 / 1e6),
    }
}

/// Escapes text for HTML text and double-quoted attributes.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

const CSS: &str = "
:root { color-scheme: light dark; font: 15px/1.45 system-ui, sans-serif; }
body { margin: 0; background: Canvas; color: CanvasText; }
header { padding: 16px 24px; border-bottom: 1px solid #8884; }
header h1 { margin: 0; font-size: 20px; }
header p, .facts, figcaption { color: #888; margin: 4px 0; }
main { padding: 8px 24px 48px; }
.source { border-bottom: 1px solid #8883; padding: 16px 0; }
.source h2 { font-size: 16px; margin: 0; word-break: break-all; }
.source.failed h2 { color: #c33; }
.error { color: #c33; }
.strip { display: flex; flex-wrap: wrap; gap: 12px; align-items: flex-end; margin-top: 8px; }
figure { margin: 0; }
.strip figure { width: 240px; }
.wide figure { max-width: 100%; margin-top: 12px; }
.frame { position: relative; width: 100%; overflow: hidden; border-radius: 4px; background: #8882; }
.frame canvas, .frame img { position: absolute; inset: 0; width: 100%; height: 100%; }
.frame img { object-fit: contain; }
.frame canvas { image-rendering: auto; }
figcaption { font-size: 13px; }
#show-focus { margin: 12px 4px 0 24px; }
label[for=show-focus] { font-size: 13px; color: #888; }
.face, .focus { display: none; position: absolute; pointer-events: none; }
.face { border: 2px solid #2e2; box-sizing: border-box; border-radius: 3px; }
.focus { width: 12px; height: 12px; margin: -6px 0 0 -6px; border-radius: 50%; border: 2px solid #fff; background: #e2e; }
.focus.manual { background: #28f; } .focus.attention { background: #fa2; } .focus.centre { background: #888; }
#show-focus:checked ~ main .face, #show-focus:checked ~ main .focus { display: block; }
.swatch { display: inline-block; width: 10px; height: 10px; border-radius: 2px; margin-right: 4px; vertical-align: middle; }
";

#[cfg(test)]
mod tests;
