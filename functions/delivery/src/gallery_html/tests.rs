//! Unit tests of [`super`].

use super::*;
use imgpipe_core::metadata::{Placeholder, SourceInfo};

fn derivative(preset: &str, group: &str, format: &str, width: u32) -> DerivativeInfo {
    DerivativeInfo {
        preset: preset.into(),
        group: Some(group.into()),
        key: format!("derived/a&b.jpg/{preset}-{width}.{format}"),
        format: format.into(),
        content_type: format!("image/{format}"),
        width,
        height: width / 2,
        frames: 1,
        bytes: 12_345,
        url: None,
        compression_ratio: 2.0,
        quality: None,
        crop: None,
    }
}

fn entry(metadata: Metadata) -> Entry {
    let urls = metadata
        .derivatives
        .iter()
        .map(|d| (d.key.clone(), format!("https://cdn/{}?sig=1&x=2", d.key)))
        .collect();
    Entry {
        metadata_key: "derived/a&b.jpg/metadata.json".into(),
        metadata: Ok(metadata),
        urls,
    }
}

fn page() -> Page {
    Page {
        origin: "s3://out/derived/".into(),
        generated_at: "2026-11-30T00:00:00Z".into(),
        show_gps: true,
    }
}

fn done() -> Metadata {
    let mut m = Metadata::new(
        SourceInfo {
            key: "a&b.jpg".into(),
            format: Some("jpeg".into()),
            width: Some(2000),
            height: Some(1000),
            ..Default::default()
        },
        "0123456789abcdef",
    );
    m.placeholder = Some(Placeholder {
        thumbhash: "1QcSHQRnd2eHeIeHiHeHiHiHd4iHeHh3eIiHd4d3Z3eHeHh3".into(),
        dominant_color: "#112233".into(),
        average_color: "#223344".into(),
    });
    m.derivatives = vec![
        derivative("thumbnail", "thumbnail", "jpeg", 200),
        derivative("hero", "hero", "webp", 320),
        derivative("hero", "hero", "webp", 640),
        derivative("hero-jpeg", "hero", "jpeg", 320),
        derivative("hero-jpeg", "hero", "jpeg", 640),
    ];
    m.groups = imgpipe_core::groups::groups(&m.derivatives);
    m.gps = Some(imgpipe_core::exif::GpsPosition {
        latitude: 48.85837,
        longitude: 2.29448,
        altitude_m: None,
    });
    m
}

#[test]
fn a_done_source_has_frames_with_placeholders_and_a_responsive_picture() {
    let html = render(&[entry(done())], &page());
    // One frame per plain derivative, one picture for the ladder group.
    assert_eq!(html.matches("<canvas class=\"thumbhash\"").count(), 2);
    assert_eq!(html.matches("<picture>").count(), 1);
    assert!(html.contains("<source type=\"image/webp\" srcset=\"https://cdn/derived/a&amp;b.jpg/hero-320.webp?sig=1&amp;x=2 320w, "));
    assert!(html.contains("sizes=\"(max-width: 640px) 100vw, 640px\""));
    // The canvas comes before its image in the document, and the paint script right after it.
    let canvas = html.find("<canvas").unwrap();
    assert!(html[canvas..].find("paintThumbHash").unwrap() < html[canvas..].find("<img").unwrap());
    assert!(html.contains("GPS 48.85837, 2.29448"));
    assert!(html.contains("<h2>a&amp;b.jpg</h2>"));
    // No external assets: nothing is fetched but the images.
    assert!(!html.contains("<link") && !html.contains("<script src"));
}

#[test]
fn faces_and_focus_are_drawn_where_each_frame_shows_them_behind_a_toggle() {
    let mut m = done();
    m.faces = Some(vec![imgpipe_core::focus::Face {
        x: 0.6,
        y: 0.1,
        w: 0.1,
        h: 0.2,
        score: 7.5,
    }]);
    m.focus = Some(imgpipe_core::metadata::FocusInfo {
        x: 0.65,
        y: 0.2,
        source: imgpipe_core::focus::FocusSource::Faces,
    });
    // The thumbnail shows the 1000×1000 window of the 2000×1000 source starting at x = 800.
    m.derivatives[0].crop = Some(imgpipe_core::metadata::CropInfo {
        x: 800,
        y: 0,
        w: 1000,
        h: 1000,
    });
    let html = render(&[entry(m)], &page());
    // On the whole-picture ladder: where the source has them.
    assert!(html.contains("<i class=\"face\" style=\"left:60.00%;top:10.00%;width:10.00%;height:20.00%\" title=\"face, score 7.5\">"), "{html}");
    assert!(html.contains("<i class=\"focus faces\" style=\"left:65.00%;top:20.00%\""));
    // On the thumbnail: in its window's coordinates (0.6 of 2000 px is 400 px into the window).
    assert!(
        html.contains(
            "<i class=\"face\" style=\"left:40.00%;top:10.00%;width:20.00%;height:20.00%\""
        )
    );
    assert!(html.contains("<i class=\"focus faces\" style=\"left:50.00%;top:20.00%\""));
    // Hidden until the box is ticked, by CSS alone.
    assert!(html.contains("<input type=\"checkbox\" id=\"show-focus\">"));
    assert!(html.contains("#show-focus:checked ~ main .face"));
    // A document without an analysis draws nothing.
    let plain = render(&[entry(done())], &page());
    assert!(!plain.contains("<i class=\"face") && !plain.contains("<i class=\"focus"));
}

#[test]
fn a_format_only_made_on_request_gets_no_source_element() {
    let mut m = done();
    // An on-request AVIF member of the ladder group: listed in groups, never made.
    let mut listed = m.derivatives.clone();
    listed.push(derivative("hero-avif", "hero", "avif", 640));
    m.groups = imgpipe_core::groups::groups(&listed);
    assert_eq!(m.groups["hero"].variants[0].format, "avif");
    let html = render(&[entry(m)], &page());
    assert!(!html.contains("image/avif"), "a <source> with no file");
    assert!(html.contains("<source type=\"image/webp\""));
}

#[test]
fn gps_can_be_hidden_and_failures_show_their_reason() {
    let html = render(
        &[entry(done())],
        &Page {
            show_gps: false,
            ..page()
        },
    );
    assert!(!html.contains("GPS"));
    let mut failed = done();
    failed.fail("corrupt", "JPEG: <premature end>", false);
    let html = render(&[entry(failed)], &page());
    assert!(html.contains("<b>corrupt</b>: JPEG: &lt;premature end&gt;"));
    assert!(html.contains("0 done, 1 failed"));
    assert_eq!(html.matches("<img").count(), 0);
}

#[test]
fn an_unreadable_document_is_listed_with_the_reason() {
    let entry = Entry {
        metadata_key: "derived/x/metadata.json".into(),
        metadata: Err("not an imgpipe metadata document: EOF".into()),
        urls: Default::default(),
    };
    let html = render(&[entry], &page());
    assert!(html.contains("unreadable: not an imgpipe metadata document: EOF"));
}

/// The inline decoder must decode what the crate encodes: vectors shared with
/// assets/thumbhash.test.mjs (node), made here from the `thumbhash` crate.
#[test]
fn thumbhash_vectors_match_the_crate() {
    let path = std::path::Path::new(
        &std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR for tests"),
    )
    .join("assets/thumbhash-vectors.json");
    let mut vectors = Vec::new();
    for (w, h, alpha) in [(64usize, 40usize, false), (30, 90, false), (50, 50, true)] {
        let rgba: Vec<u8> = (0..w * h)
            .flat_map(|i| {
                let (x, y) = (i % w, i / w);
                let a = if alpha { ((x * 255) / w) as u8 } else { 255 };
                [
                    (x * 255 / w) as u8,
                    (y * 255 / h) as u8,
                    ((x + y) * 97 % 256) as u8,
                    a,
                ]
            })
            .collect();
        let hash = thumbhash::rgba_to_thumb_hash(w, h, &rgba);
        let (dw, dh, decoded) = thumbhash::thumb_hash_to_rgba(&hash).unwrap();
        vectors.push(serde_json::json!({ "hash": hash, "w": dw, "h": dh, "rgba": decoded }));
    }
    let expected = serde_json::Value::Array(vectors);
    if std::env::var_os("IMGPIPE_WRITE_VECTORS").is_some() {
        std::fs::write(&path, serde_json::to_string(&expected).unwrap()).unwrap();
    }
    let stored: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(
        stored, expected,
        "regenerate with IMGPIPE_WRITE_VECTORS=1 cargo test -p imgpipe-delivery"
    );
}
