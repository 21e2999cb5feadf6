//! Unit tests of [`super`].

use super::*;

/// Each preset file of `cases` is refused with a message containing its expected part.
fn assert_refused(cases: &[(&str, &str)]) {
    for (text, expected) in cases {
        let err = PresetSet::from_toml(text).unwrap_err();
        assert!(
            err.message.contains(expected),
            "{text:?} gave {}",
            err.message
        );
    }
}

#[test]
fn jpegli_is_opt_in_per_preset_and_never_on_the_device() {
    let turbo = PresetSet::from_toml("[[preset]]\nname='x'\nwidth=1\nquality=80").unwrap();
    let said =
        PresetSet::from_toml("[[preset]]\nname='x'\nwidth=1\nquality=80\nencoder='turbo'").unwrap();
    let jpegli =
        PresetSet::from_toml("[[preset]]\nname='x'\nwidth=1\nquality=80\nencoder='jpegli'")
            .unwrap();
    // Saying the default changes nothing (no reprocessing); choosing jpegli is a new preset set.
    assert_eq!(turbo.hash(), said.hash());
    assert_ne!(turbo.hash(), jpegli.hash());
    assert_eq!(jpegli.presets()[0].encoder, JpegEncoder::Jpegli);
    assert_eq!(turbo.presets()[0].device_jpeg_quality(), Some(80));
    assert_eq!(jpegli.presets()[0].device_jpeg_quality(), None);
}

#[test]
fn default_set_is_valid_and_has_the_seed_outputs() {
    let set = PresetSet::default_set();
    let names: Vec<&str> = set.presets().iter().map(|p| p.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "thumbnail",
            "preview",
            "webp",
            "avif",
            "blur",
            "low-quality"
        ]
    );
    assert_eq!(set.hash().len(), 16);
    // The on-request AVIF joined the set without marking any stored image stale: the hash is the
    // eager presets' alone.
    let eager: Vec<Preset> = set
        .presets()
        .iter()
        .filter(|p| !p.on_request)
        .cloned()
        .collect();
    assert_eq!(eager.len(), 5);
    assert_eq!(PresetSet::new(eager).unwrap().hash(), set.hash());
    let avif = &set.presets()[3];
    assert!(avif.on_request && avif.format == OutputFormat::Avif && avif.group_name() == "preview");
    assert_eq!(set.edge_groups()["preview"]["avif"], "avif.avif");
    let preview = &set.presets()[1];
    assert!(
        preview.progressive && preview.quality == Quality::Fixed(85) && preview.fit == Fit::Inside
    );
}

#[test]
fn hash_changes_with_any_field() {
    let a = PresetSet::from_toml("[[preset]]\nname='a'\nwidth=10").unwrap();
    let b = PresetSet::from_toml("[[preset]]\nname='a'\nwidth=11").unwrap();
    let a2 = PresetSet::from_toml("[[preset]]\nname = 'a'\nwidth = 10\n").unwrap();
    assert_ne!(a.hash(), b.hash());
    assert_eq!(a.hash(), a2.hash());
}

#[test]
fn on_request_presets_are_outside_the_hash_but_negotiated_at_the_edge() {
    let base = "[[preset]]\nname='a'\nwidth=10\n";
    let with = |extra: &str| PresetSet::from_toml(&format!("{base}{extra}")).unwrap();
    let eager = with("");
    let card = "[[preset]]\nname='card'\nwidth=300\nformat='webp'\non_request=true\n";
    let on_request = with(card);
    assert_eq!(
        eager.hash(),
        on_request.hash(),
        "adding an on-request preset marks nothing stale"
    );
    assert_eq!(
        on_request.hash(),
        with(&card.replace("300", "320")).hash(),
        "nor does changing one"
    );
    assert_ne!(
        eager.hash(),
        with(&card.replace("on_request=true\n", "")).hash()
    );
    // The edge negotiates it (a miss renders it), though upload never makes it.
    assert_eq!(on_request.edge_groups()["card"]["webp"], "card.webp");
    assert!(on_request.presets()[1].on_request);
}

#[test]
fn errors_name_the_preset_and_field() {
    let cases = [
        ("[[preset]]\nname='x'\nwidth=0", "preset 'x': width"),
        (
            "[[preset]]\nname='x'\nwidth=10\nquality=101",
            "preset 'x': quality: 101 is outside 1..=100",
        ),
        (
            "[[preset]]\nname='x'\nwidth=10\nformat='png'\nquality='auto'",
            "preset 'x': quality: a perceptual target needs format \"jpeg\" or \"webp\" (png",
        ),
        (
            "[[preset]]\nname='x'\nwidth=10\nformat='avif'\nquality={ target = 80 }",
            "preset 'x': quality: a perceptual target needs format",
        ),
        (
            "[[preset]]\nname='x'\nwidth=10\nformat='webp'\nanimated=true\nquality='high'",
            "preset 'x': quality: an animated preset takes a quality 1-100",
        ),
        (
            "[[preset]]\nname='x'\nwidth=10\nquality={ target = 20 }",
            "preset 'x': quality: target 20 is outside 30..=95",
        ),
        (
            "[[preset]]\nname='x'\nwidth=10\nfit='cover'",
            "preset 'x': fit",
        ),
        ("[[preset]]\nname='x'", "preset 'x': width"),
        (
            "[[preset]]\nname='Bad Name'\nwidth=1",
            "preset 'Bad Name': name",
        ),
        (
            "[[preset]]\nname='x'\nwidth=1\n[[preset]]\nname='x'\nwidth=2",
            "preset 'x': name: defined twice",
        ),
        (
            "[[preset]]\nname='x'\nwidth=1\nformat='webp'\nprogressive=true",
            "preset 'x': progressive",
        ),
        (
            "[[preset]]\nname='x'\nwidth=1\nblur=-1.0",
            "preset 'x': blur",
        ),
        (
            "[[preset]]\nname='x'\nwidth=1\nwebp_method=9",
            "preset 'x': webp_method",
        ),
        (
            "[[preset]]\nname='x'\nwidth=1\nwebp_multithread=true",
            "preset 'x': webp_multithread: only WebP output",
        ),
        (
            "[[preset]]\nname='x'\nwidth=1\nformat='webp'\nencoder='jpegli'",
            "preset 'x': encoder: only JPEG output",
        ),
        (
            "[[preset]]\nname='x'\nwidth=1\nencoder='mozjpeg'",
            "unknown variant `mozjpeg`, expected `turbo` or `jpegli`",
        ),
    ];
    assert_refused(&cases);
    let unknown = PresetSet::from_toml("[[preset]]\nname='x'\nwidht=1").unwrap_err();
    assert!(unknown.message.contains("widht"), "{}", unknown.message);
}

#[test]
fn avif_presets_take_a_speed_and_others_refuse_it() {
    let set =
        PresetSet::from_toml("[[preset]]\nname='a'\nwidth=10\nformat='avif'\nspeed=8").unwrap();
    assert_eq!(set.presets()[0].speed, Some(8));
    let err =
        PresetSet::from_toml("[[preset]]\nname='a'\nwidth=10\nformat='webp'\nspeed=8").unwrap_err();
    assert!(err.message.contains("speed"), "{}", err.message);
    let err = PresetSet::from_toml("[[preset]]\nname='a'\nwidth=10\nformat='avif'\nspeed=11")
        .unwrap_err();
    assert!(err.message.contains("1..=10"), "{}", err.message);
    // Presets without a speed hash as before the field existed.
    let plain = PresetSet::from_toml("[[preset]]\nname='a'\nwidth=10").unwrap();
    assert!(
        !serde_json::to_string(plain.presets())
            .unwrap()
            .contains("speed")
    );
}

#[test]
fn json_form_parses_like_toml() {
    let json = r#"{"preset":[{"name":"a","width":10,"format":"webp","quality":70}]}"#;
    let toml = "[[preset]]\nname='a'\nwidth=10\nformat='webp'\nquality=70";
    assert_eq!(
        PresetSet::from_json(json).unwrap(),
        PresetSet::from_toml(toml).unwrap()
    );
    assert!(PresetSet::from_json(r#"[{"name":"a","width":10}]"#).is_ok());
    assert!(PresetSet::from_file_text("p.json", "{").is_err());
}

#[test]
fn ladders_and_groups_are_checked() {
    let cases = [
        ("[[preset]]\nname='r'\nwidths=[640, 320]", "ascending"),
        ("[[preset]]\nname='r'\nwidths=[320, 320]", "ascending"),
        ("[[preset]]\nname='r'\nwidths=[]", "list 1 to 16"),
        ("[[preset]]\nname='r'\nwidths=[0]", "outside"),
        (
            "[[preset]]\nname='r'\nwidth=100\nwidths=[320]",
            "remove `width`",
        ),
        (
            "[[preset]]\nname='r'\nwidths=[320]\nheight=100\nfit='cover'",
            "fit = \"inside\"",
        ),
        (
            "[[preset]]\nname='a'\nwidth=1\n[[preset]]\nname='b'\nwidth=2\ngroup='a'",
            "group: 'a' already has a jpeg preset ('a')",
        ),
        ("[[preset]]\nname='a'\nwidth=1\ngroup='Big'", "group: use"),
        (
            "[[preset]]\nname='r'\nwidths=[320]\n[[preset]]\nname='r-640w'\nwidth=640",
            "clashes with the outputs of ladder 'r'",
        ),
    ];
    assert_refused(&cases);
}

#[test]
fn edge_groups_leave_ladders_out_and_the_responsive_set_is_valid() {
    let set = PresetSet::from_toml(include_str!("../../presets/responsive.toml")).unwrap();
    let groups = set.edge_groups();
    assert_eq!(groups["preview"]["webp"], "webp.webp");
    assert_eq!(groups["preview"]["jpeg"], "preview.jpg");
    assert!(!groups.contains_key("hero"));
    // The default set's hash moves only through `group` on its webp preset.
    assert_ne!(set.hash(), PresetSet::default_set().hash());
}

#[test]
fn gravity_is_for_cover_crops_and_centre_leaves_the_hash_alone() {
    let cover = "[[preset]]\nname='t'\nwidth=200\nheight=200\nfit='cover'";
    let plain = PresetSet::from_toml(cover).unwrap();
    let centre = PresetSet::from_toml(&format!("{cover}\ngravity='centre'")).unwrap();
    let center = PresetSet::from_toml(&format!("{cover}\ngravity='center'")).unwrap();
    let auto = PresetSet::from_toml(&format!("{cover}\ngravity='auto'")).unwrap();
    // Saying the default (either spelling) keeps the hash of sets written before gravity existed;
    // any other gravity is a new set (its images are stale: backfill re-crops them).
    assert_eq!(plain.hash(), centre.hash());
    assert_eq!(plain.hash(), center.hash());
    assert_ne!(plain.hash(), auto.hash());
    assert!(!plain.needs_focus() && auto.needs_focus());
    for gravity in ["faces", "attention", "focal"] {
        let set = PresetSet::from_toml(&format!("{cover}\ngravity='{gravity}'")).unwrap();
        assert!(set.needs_focus(), "{gravity}");
    }
    let inside = PresetSet::from_toml("[[preset]]\nname='t'\nwidth=200\ngravity='auto'")
        .unwrap_err()
        .message;
    assert!(
        inside.contains("preset 't'") && inside.contains("gravity") && inside.contains("cover"),
        "{inside}"
    );
    let unknown = PresetSet::from_toml(&format!("{cover}\ngravity='north'"))
        .unwrap_err()
        .message;
    assert!(
        unknown.contains("gravity") || unknown.contains("north"),
        "{unknown}"
    );
}

#[test]
fn the_default_thumbnail_keeps_faces_in_view() {
    let set = PresetSet::default_set();
    let thumbnail = &set.presets()[0];
    assert_eq!(thumbnail.name, "thumbnail");
    assert_eq!(
        (thumbnail.fit, thumbnail.gravity),
        (Fit::Cover, Gravity::Auto)
    );
    assert!(set.needs_focus());
}
