//! The scenarios the simulator explores, and the sources they upload.

use std::sync::OnceLock;

use crate::driver::{Action, Expect, Scenario};

/// A real photo (tests/fixtures/images, see its MANIFEST.tsv) made small once with the pipeline
/// itself, so each of the thousands of schedules decodes a 64-pixel JPEG, not a 600-pixel one.
fn small(source: &'static [u8], width: u32) -> &'static [u8] {
    let presets = crate::driver::presets(&format!(
        "[[preset]]\nname = \"s\"\nwidth = {width}\nheight = {width}\nfit = \"inside\"\nformat = \"jpeg\"\nquality = 80\n"
    ));
    let source_ref = imgpipe_core::SourceRef {
        bucket: "fixtures".into(),
        key: "photo.jpg".into(),
        ..Default::default()
    };
    let mut engine = imgpipe_core::Engine::default();
    let out = imgpipe_core::process(
        source,
        &source_ref,
        &presets,
        &Default::default(),
        &mut engine,
    )
    .expect("the fixture processes");
    Box::leak(
        out.derivatives
            .into_iter()
            .next()
            .unwrap()
            .bytes
            .into_boxed_slice(),
    )
}

/// A file of the repository's `tests/fixtures/images`, read once (at run time: the build cache
/// builds crates away from the repository, so nothing outside the crate is compiled in).
fn fixture(name: &str) -> &'static [u8] {
    let crate_dir = std::env::var_os("CARGO_MANIFEST_DIR").expect("run by cargo test");
    let path = std::path::Path::new(&crate_dir)
        .join("../../tests/fixtures/images")
        .join(name);
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    Box::leak(bytes.into_boxed_slice())
}

pub fn photo() -> &'static [u8] {
    static PHOTO: OnceLock<&'static [u8]> = OnceLock::new();
    PHOTO.get_or_init(|| small(fixture("Landscape_1.jpg"), 64))
}

pub fn other_photo() -> &'static [u8] {
    static PHOTO: OnceLock<&'static [u8]> = OnceLock::new();
    PHOTO.get_or_init(|| small(fixture("Portrait_2.jpg"), 64))
}

/// The portrait with a face in its top third (tests/fixtures/images), made 40×64: its square
/// cover crop moves with the focal point.
pub fn portrait() -> &'static [u8] {
    static PHOTO: OnceLock<&'static [u8]> = OnceLock::new();
    PHOTO.get_or_init(|| small(fixture("crafted_face_portrait_320x512.jpg"), 64))
}

/// A text file named .jpg: `unsupported`, a permanent failure.
pub fn not_an_image() -> &'static [u8] {
    static FILE: OnceLock<&'static [u8]> = OnceLock::new();
    FILE.get_or_init(|| fixture("not_an_image_text.jpg"))
}

pub fn all() -> Vec<Scenario> {
    use Action::*;
    use Expect::*;
    let plain = |name, actions, expect| Scenario {
        name,
        actions,
        expect,
        ..Scenario::default()
    };
    vec![
        plain(
            "good upload",
            vec![Upload {
                key: "a.jpg",
                bytes: photo(),
            }],
            vec![("a.jpg", Good)],
        ),
        plain(
            "bad file",
            vec![Upload {
                key: "bad.jpg",
                bytes: not_an_image(),
            }],
            vec![("bad.jpg", Bad)],
        ),
        plain(
            "upload then delete",
            vec![
                Upload {
                    key: "a.jpg",
                    bytes: photo(),
                },
                Delete { key: "a.jpg" },
            ],
            vec![("a.jpg", Good)],
        ),
        plain(
            "re-upload with a new ETag",
            vec![
                Upload {
                    key: "a.jpg",
                    bytes: photo(),
                },
                Upload {
                    key: "a.jpg",
                    bytes: other_photo(),
                },
            ],
            vec![("a.jpg", Good)],
        ),
        plain(
            "preset change",
            vec![
                Upload {
                    key: "a.jpg",
                    bytes: photo(),
                },
                ChangePresets,
            ],
            vec![("a.jpg", Good)],
        ),
        Scenario {
            name: "redrive from the DLQ",
            // The source cannot be read for the message's 5 attempts: retries_exhausted, a
            // letter; the operator redrives it and it is processed.
            actions: vec![
                Upload {
                    key: "r.jpg",
                    bytes: photo(),
                },
                Redrive,
            ],
            expect: vec![("r.jpg", Good)],
            broken_reads: vec![("r.jpg", 5)],
            ..Scenario::default()
        },
        plain(
            "good and bad together",
            vec![
                Upload {
                    key: "a.jpg",
                    bytes: photo(),
                },
                Upload {
                    key: "bad.jpg",
                    bytes: not_an_image(),
                },
                Upload {
                    key: "b.jpg",
                    bytes: other_photo(),
                },
            ],
            vec![("a.jpg", Good), ("bad.jpg", Bad), ("b.jpg", Good)],
        ),
        // Both events wait together and arrive in the scheduler's order.
        Scenario {
            name: "delete before create",
            actions: vec![
                Upload {
                    key: "a.jpg",
                    bytes: photo(),
                },
                Delete { key: "a.jpg" },
            ],
            expect: vec![("a.jpg", Good)],
            eager: true,
            ..Scenario::default()
        },
        // S3 notifies a processed upload again while its metadata.json cannot be read: the
        // duplicate runs out of attempts and must leave the done image done (no operator).
        outage("duplicate notification during a metadata outage", "a.jpg", photo(), Good),
        // The same for a bad file: its document keeps the real reason (no operator).
        outage("bad file renotified during a metadata outage", "bad.jpg", not_an_image(), Bad),
        // A manifest of URLs: one image, one gone (404), one web page. The image is imported into
        // the ingest bucket, whose own S3 event processes it; the others are rejected.
        Scenario {
            name: "URL import",
            actions: vec![Upload {
                key: "manifests/urls.json",
                bytes: br#"["https://images.example/a.jpg", "https://images.example/gone.jpg", "https://images.example/page.html"]"#,
            }],
            expect: Vec::new(),
            routing: true,
            web: vec![
                ("https://images.example/a.jpg", photo()),
                ("https://images.example/page.html", b"<!doctype html><title>not an image</title>"),
            ],
            imports: vec![
                ("manifests/urls.json", 0, None),
                ("manifests/urls.json", 1, Some("http_status")),
                ("manifests/urls.json", 2, Some("not_an_image")),
            ],
            ..Scenario::default()
        },
        // The app sets the focal point of a processed portrait, then moves it: only the cover
        // that follows it is re-made (twice), from the stored analysis, and the CDN forgets it.
        Scenario {
            name: "focal point set twice",
            actions: vec![
                Upload {
                    key: "p.jpg",
                    bytes: portrait(),
                },
                SetFocus {
                    key: "p.jpg",
                    focus: "0.5,0.05",
                },
                SetFocus {
                    key: "p.jpg",
                    focus: "0.5,0.95",
                },
            ],
            expect: vec![("p.jpg", Good)],
            focus: true,
            ..Scenario::default()
        },
        // Every event goes to two webhook endpoints; the second answers 500 to everything.
        Scenario {
            name: "webhooks to two endpoints, one down",
            actions: vec![
                Upload {
                    key: "a.jpg",
                    bytes: photo(),
                },
                Upload {
                    key: "bad.jpg",
                    bytes: not_an_image(),
                },
                Delete { key: "a.jpg" },
            ],
            expect: vec![("a.jpg", Good), ("bad.jpg", Bad)],
            webhooks: true,
            ..Scenario::default()
        },
        // The items are uploaded (and processed), then a manifest fans them out again on the
        // GPU queue; its batch event follows the last item's end.
        Scenario {
            name: "manifest of 3 items, one bad",
            actions: vec![
                Upload {
                    key: "a.jpg",
                    bytes: photo(),
                },
                Upload {
                    key: "bad.jpg",
                    bytes: not_an_image(),
                },
                Upload {
                    key: "b.jpg",
                    bytes: other_photo(),
                },
                Upload {
                    key: "manifests/batch.json",
                    bytes: br#"["a.jpg", "bad.jpg", "b.jpg"]"#,
                },
            ],
            expect: vec![("a.jpg", Good), ("bad.jpg", Bad), ("b.jpg", Good)],
            routing: true,
            manifest: Some(("manifests/batch.json", 3, 2, 1)),
            ..Scenario::default()
        },
    ]
}

/// `key` uploaded and processed, then S3 notifies its upload again while its metadata.json cannot
/// be read for the duplicate's five attempts; checked without an operator's redrive.
fn outage(name: &'static str, key: &'static str, bytes: &'static [u8], expect: Expect) -> Scenario {
    let metadata_key: &'static str =
        Box::leak(format!("derived/{key}/metadata.json").into_boxed_str());
    Scenario {
        name,
        actions: vec![
            Action::Upload { key, bytes },
            Action::BreakReads {
                key: metadata_key,
                reads: 5,
            },
            Action::Renotify { key },
        ],
        expect: vec![(key, expect)],
        operator_redrive: false,
        ..Scenario::default()
    }
}
