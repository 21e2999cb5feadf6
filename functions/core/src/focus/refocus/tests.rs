use super::*;
use crate::metadata::FocusInfo;
use crate::{Engine, Options, SourceRef, process};

/// Every kind of preset a focus change meets: eager covers that follow the manual point (`auto`,
/// `focal`), one that does not (`faces`), one that is not a cover, and on-request
/// presets of both kinds.
const SET: &str = r#"
[[preset]]
name = "thumbnail"
width = 120
height = 120
fit = "cover"
gravity = "auto"
format = "jpeg"

[[preset]]
name = "preview"
width = 200
format = "jpeg"

[[preset]]
name = "square"
width = 80
height = 80
fit = "cover"
gravity = "focal"
format = "webp"

[[preset]]
name = "headshot"
width = 60
height = 60
fit = "cover"
gravity = "faces"
format = "jpeg"

[[preset]]
name = "card"
width = 90
height = 90
fit = "cover"
gravity = "auto"
format = "webp"
on_request = true

[[preset]]
name = "wide"
width = 300
format = "webp"
on_request = true
"#;

fn set() -> PresetSet {
    PresetSet::from_toml(SET).unwrap()
}

fn processed(
    focus: Option<FocalPoint>,
    analysis: Option<Analysis>,
    set: &PresetSet,
) -> crate::Processed {
    let source = SourceRef {
        focus,
        analysis,
        ..crate::testing::source("face.jpg")
    };
    process(
        &crate::testing::fixture("crafted_face_portrait_320x512.jpg"),
        &source,
        set,
        &Options::default(),
        &mut Engine::default(),
    )
    .unwrap()
}

const LOW: FocalPoint = FocalPoint { x: 0.5, y: 0.95 };
const HIGH: FocalPoint = FocalPoint { x: 0.3, y: 0.05 };

#[test]
fn only_the_eager_covers_that_follow_the_manual_point_are_remade() {
    let remade = presets(&set()).unwrap();
    let names: Vec<&str> = remade.presets().iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["thumbnail", "square"]);
    let none = PresetSet::from_toml(
        "[[preset]]\nname='t'\nwidth=9\nheight=9\nfit='cover'\ngravity='faces'\n\n[[preset]]\nname='c'\nwidth=9\nheight=9\nfit='cover'\ngravity='auto'\non_request=true",
    )
    .unwrap();
    assert_eq!(presets(&none), None);
}

#[test]
fn a_new_point_is_needed_only_when_it_differs_from_the_recorded_one() {
    let with_faces = processed(None, None, &set()).metadata;
    assert_eq!(with_faces.focus.unwrap().source, FocusSource::Faces);
    assert!(!needed(&with_faces, None));
    assert!(needed(&with_faces, Some(LOW)));
    let manual = processed(Some(LOW), None, &set()).metadata;
    assert_eq!(recorded(&manual), Some(LOW));
    assert!(!needed(&manual, Some(LOW)));
    // Compared as documents record them: 4 decimals.
    assert!(!needed(
        &manual,
        Some(FocalPoint {
            x: 0.500_04,
            y: 0.95
        })
    ));
    assert!(needed(&manual, Some(HIGH)));
    assert!(needed(&manual, None), "a point removed is a change too");
    // A set that looks for nothing has no focus to change.
    let plain = processed(
        Some(LOW),
        None,
        &PresetSet::from_toml("[[preset]]\nname='p'\nwidth=100").unwrap(),
    )
    .metadata;
    assert_eq!(plain.focus, None);
    assert!(!needed(&plain, Some(HIGH)));
}

#[test]
fn the_stored_analysis_is_reused_with_the_new_point() {
    let manual = processed(Some(LOW), None, &set()).metadata;
    let reused = analysis(&manual, Some(HIGH)).unwrap();
    assert_eq!(reused.manual, Some(HIGH));
    assert_eq!(reused.faces, manual.faces.clone().unwrap());
    // Removing the point leaves the faces, which still answer `auto`.
    assert_eq!(analysis(&manual, None).unwrap().manual, None);
    // With no face, and the attention point not recorded (the manual point was), only the pixels
    // can answer: analyse again.
    let mut faceless = manual.clone();
    faceless.faces = Some(Vec::new());
    assert_eq!(analysis(&faceless, None), None);
    assert!(analysis(&faceless, Some(HIGH)).is_some());
}

#[test]
fn a_refocused_document_equals_a_fresh_one_with_the_new_point() {
    let set = set();
    let before = processed(Some(LOW), None, &set);
    let wanted = Some(HIGH);
    let reuse = analysis(&before.metadata, wanted).unwrap();
    let subset = presets(&set).unwrap();
    let remade = processed(wanted, Some(reuse.clone()), &subset);
    let merged = merge(
        &before.metadata,
        Some(&remade.metadata),
        &reuse,
        &Version::default(),
    );
    let fresh = processed(wanted, None, &set);
    // The presets alone may decode the JPEG at a smaller scale than the whole set: the pixels of a
    // re-made file can differ slightly from a whole-set run's, never its crop, size or key.
    let shape = |m: &Metadata| {
        m.derivatives
            .iter()
            .map(|d| (d.key.clone(), d.width, d.height, d.crop, d.preset.clone()))
            .collect::<Vec<_>>()
    };
    assert_eq!(shape(&merged), shape(&fresh.metadata));
    assert_eq!(merged.focus, fresh.metadata.focus);
    assert_eq!(merged.faces, fresh.metadata.faces);
    assert_eq!(merged.groups, fresh.metadata.groups);
    crate::testing::assert_valid_metadata(&merged);
    // The files not re-made are the ones listed before, byte for byte.
    for d in merged
        .derivatives
        .iter()
        .filter(|d| d.preset == "preview" || d.preset == "headshot")
    {
        assert!(before.metadata.derivatives.contains(d), "{d:?}");
    }
    assert_eq!(
        remade
            .derivatives
            .iter()
            .map(|d| d.preset.as_str())
            .collect::<Vec<_>>(),
        ["thumbnail", "square"]
    );
    let crop = |m: &Metadata, name: &str| {
        m.derivatives
            .iter()
            .find(|d| d.preset == name)
            .and_then(|d| d.crop)
            .unwrap()
    };
    assert_eq!(crop(&before.metadata, "thumbnail").y, 192);
    assert_eq!(crop(&merged, "thumbnail").y, 0);
    // What does not follow the point is left: the face crop, the preview, their places.
    assert_eq!(
        crop(&merged, "headshot"),
        crop(&before.metadata, "headshot")
    );
    let order = |m: &Metadata| {
        m.derivatives
            .iter()
            .map(|d| d.key.clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(order(&merged), order(&before.metadata));
    assert_eq!(merged.placeholder, before.metadata.placeholder);
}

#[test]
fn with_nothing_eager_to_remake_only_the_focus_changes() {
    let before = processed(None, None, &set()).metadata;
    let reuse = analysis(&before, Some(HIGH)).unwrap();
    let merged = merge(&before, None, &reuse, &Version::default());
    assert_eq!(merged.derivatives, before.derivatives);
    assert_eq!(
        merged.focus,
        Some(FocusInfo {
            x: 0.3,
            y: 0.05,
            source: FocusSource::Manual
        })
    );
}

#[test]
fn cover_variants_rendered_on_request_are_stale_the_rest_is_not() {
    let set = set();
    for stale in [
        "_w200-h200-cover.0123456789abcdef.webp",
        "_w64-h64-cover-q70.aa.jpg",
        "card.webp",
    ] {
        assert!(stale_on_request(stale, &set), "{stale}");
    }
    for kept in [
        "_w200-h200.0123456789abcdef.webp",
        "_w200-fill.aa.webp",
        "wide.webp",
        "headshot.jpg",
        "preview-320w.jpg",
        "card.jpg",
        "thumbnail-120w.jpg",
        "notes",
    ] {
        assert!(!stale_on_request(kept, &set), "{kept}");
    }
}

#[test]
fn the_document_records_the_version_the_new_point_came_with() {
    let mut before = processed(None, None, &set()).metadata;
    before.source.version_id = Some("v1".into());
    before.source.sequencer = Some("0055AED6DCD90281E5".into());
    let reuse = analysis(&before, Some(HIGH)).unwrap();
    let copy = Version {
        version_id: Some("v2".into()),
        sequencer: Some("0055AED6DCD90281F0".into()),
    };
    let merged = merge(&before, None, &reuse, &copy);
    assert_eq!(
        (merged.source.version_id, merged.source.sequencer),
        (copy.version_id.clone(), copy.sequencer.clone()),
        "expiring v1 must not be taken for the removal of v2"
    );
    // An event without them (an unversioned bucket, a backfill job) keeps what was recorded.
    let kept = merge(&before, None, &reuse, &Version::default());
    assert_eq!(kept.source.version_id.as_deref(), Some("v1"));
    assert_eq!(kept.source.sequencer, before.source.sequencer);
}
