//! Unit tests of [`super`].

use super::*;

const DIR: &str = "derived/photos/cat.jpg/";

fn keys() -> SigningKeys {
    SigningKeys::parse(&"k".repeat(32)).unwrap()
}

fn webp(width: Option<u32>, height: Option<u32>, fit: Fit, quality: Option<u8>) -> Params {
    Params {
        width,
        height,
        fit,
        quality,
        format: OutputFormat::Webp,
    }
}

fn ask(segment: &str) -> Result<Request, Refusal> {
    parse(
        DIR,
        segment,
        &PresetSet::default_set(),
        &VariantLimits::default(),
        Some(&keys()),
    )
}

#[test]
fn the_signature_is_hmac_sha256_truncated_to_16_bytes_base64url() {
    // Computed independently: Python's hmac.new(b"k" * 32, msg, sha256).digest()[:16], urlsafe
    // base64 without padding; the docs' Python and JS examples produce the same.
    assert_eq!(
        keys().sign("derived/photos/cat.jpg/_w640-cover-q70.webp"),
        "8PkP8Bf9nLa8Nz5BJw4Chg"
    );
}

#[test]
fn a_signed_canonical_variant_is_accepted_with_its_options() {
    let params = webp(Some(640), None, Fit::Cover, Some(70));
    let segment = signed_segment(&keys(), DIR, &params);
    assert_eq!(segment, "_w640-cover-q70.8PkP8Bf9nLa8Nz5BJw4Chg.webp");
    assert_eq!(ask(&segment), Ok(Request::Parametric(params)));
    let both = webp(Some(640), Some(480), Fit::Fill, None);
    assert_eq!(both.canonical(), "_w640-h480-fill.webp");
    assert_eq!(
        ask(&signed_segment(&keys(), DIR, &both)),
        Ok(Request::Parametric(both))
    );
}

#[test]
fn unsigned_tampered_or_other_folder_variants_are_forbidden() {
    let signed = signed_segment(&keys(), DIR, &webp(Some(640), None, Fit::Inside, None));
    let forbidden = |segment: &str| matches!(ask(segment), Err(Refusal::Forbidden(_)));
    assert!(forbidden("_w640.webp"), "no signature");
    assert!(
        forbidden(&signed.replace("_w640", "_w648")),
        "other options"
    );
    assert!(forbidden(&signed.replace(".webp", ".avif")), "other format");
    let mut tampered = signed.clone().into_bytes();
    tampered[8] = if tampered[8] == b'A' { b'B' } else { b'A' };
    assert!(
        forbidden(&String::from_utf8(tampered).unwrap()),
        "one character changed"
    );
    // The signature covers the folder: another source's path does not verify.
    let other = parse(
        "derived/photos/dog.jpg/",
        &signed,
        &PresetSet::default_set(),
        &VariantLimits::default(),
        Some(&keys()),
    );
    assert!(matches!(other, Err(Refusal::Forbidden(_))));
    // Without a configured key, nothing parametric is allowed.
    let off = parse(
        DIR,
        &signed,
        &PresetSet::default_set(),
        &VariantLimits::default(),
        None,
    );
    assert_eq!(off.map_err(|r| r.status()), Err(403));
}

#[test]
fn a_thousand_distinct_unsigned_or_tampered_variants_are_all_refused() {
    let valid = signed_segment(&keys(), DIR, &webp(Some(640), None, Fit::Inside, None));
    let signature = valid.split('.').nth(1).unwrap();
    // 1 000 widths other than the signed 640, three spellings each.
    for i in (1..=1001u32).filter(|i| *i != 80) {
        let width = i * 8;
        let segments = [
            format!("_w{width}.webp"),
            format!("_w{width}.{signature}.webp"),
            format!("_w{width}-q{}.{signature}.jpg", i % 100 + 1),
        ];
        for segment in segments {
            let refused = ask(&segment).expect_err(&segment);
            assert!(
                matches!(refused.status(), 400 | 403),
                "{segment}: {refused:?}"
            );
        }
    }
}

#[test]
fn one_variant_has_one_spelling() {
    let cases = [
        ("_h480-w640.sig.webp", "_w640-h480.webp"),
        ("_w640-inside.sig.webp", "'inside' is not an option"),
        ("_w0640.sig.webp", "'w0640' is not an option"),
        ("_q70-w640.sig.webp", "_w640-q70.webp"),
        ("_w640-w320.sig.webp", "_w320.webp"),
        ("_cover.sig.webp", "needs w<px> or h<px>"),
        ("_w640.sig.gif", "not an output format"),
        ("_w640.a.b.webp", "_<options>.<signature>.<ext>"),
        ("_w640-q101.sig.webp", "'q101' is not an option"),
    ];
    for (segment, reason) in cases {
        match ask(segment) {
            Err(Refusal::Malformed(why)) => assert!(why.contains(reason), "{segment}: {why}"),
            other => panic!("{segment}: {other:?}"),
        }
    }
}

#[test]
fn limits_apply_after_the_signature() {
    let signed = |w| signed_segment(&keys(), DIR, &webp(Some(w), None, Fit::Inside, None));
    assert!(matches!(ask(&signed(4096)), Ok(Request::Parametric(_))));
    for width in [4104, 641] {
        match ask(&signed(width)) {
            Err(Refusal::Malformed(why)) => {
                assert!(why.contains("multiple of 8 up to 4096"), "{why}")
            }
            other => panic!("{width}: {other:?}"),
        }
    }
    let jpeg_only = VariantLimits {
        formats: vec![OutputFormat::Jpeg],
        ..VariantLimits::default()
    };
    let refused = parse(
        DIR,
        &signed(640),
        &PresetSet::default_set(),
        &jpeg_only,
        Some(&keys()),
    );
    assert_eq!(refused.map_err(|r| r.status()), Err(400));
}

#[test]
fn keys_rotate_the_first_signs_and_any_verifies() {
    let (old, new) = ("o".repeat(32), "n".repeat(40));
    let before = SigningKeys::parse(&old).unwrap();
    let during = SigningKeys::parse(&format!("{new} {old}")).unwrap();
    let path = "derived/a.jpg/_w320.webp";
    assert!(
        during.verify(path, &before.sign(path)),
        "old links keep working"
    );
    assert!(during.verify(path, &during.sign(path)));
    assert!(
        !before.verify(path, &during.sign(path)),
        "the new key signs"
    );
    assert!(
        SigningKeys::parse("short")
            .unwrap_err()
            .contains("at least 32")
    );
    assert!(SigningKeys::parse("  ").is_err());
    assert!(!during.verify(path, "not base64!"));
}

#[test]
fn ladder_rungs_are_allowed_only_as_the_presets_offer_them() {
    let presets = PresetSet::from_file_text(
        "t.toml",
        "[[preset]]\nname = \"hero\"\nwidths = [320, 640, 1280]\nformat = \"webp\"\n",
    )
    .unwrap();
    let ask = |segment: &str| parse(DIR, segment, &presets, &VariantLimits::default(), None);
    assert_eq!(
        ask("hero-640w.webp"),
        Ok(Request::Rung {
            preset: "hero".into(),
            width: 640,
            format: OutputFormat::Webp
        })
    );
    for segment in ["hero-1281w.webp", "hero-640w.jpg", "villain-640w.webp"] {
        assert_eq!(ask(segment).map_err(|r| r.status()), Err(403), "{segment}");
    }
    // Below the top rung, an unlisted width parses (a collapsed top rung) but needs the source's
    // metadata to list it before anything renders it.
    let collapsed = ask("hero-1000w.webp").unwrap();
    assert!(needs_listing(&collapsed, &presets));
    assert!(!needs_listing(&ask("hero-640w.webp").unwrap(), &presets));
    assert!(matches!(ask("hero-0640w.webp"), Err(Refusal::Malformed(_))));
    assert_eq!(ask("preview"), Ok(Request::Named("preview".into())));
    assert_eq!(
        ask("thumbnail.jpg"),
        Ok(Request::Named("thumbnail.jpg".into()))
    );
    assert_eq!(
        ask("low-quality.jpg"),
        Ok(Request::Named("low-quality.jpg".into()))
    );
}

#[test]
fn snapping_rounds_to_the_step() {
    assert_eq!(snap(641, 8), 640);
    assert_eq!(snap(645, 8), 648);
    assert_eq!(snap(1, 8), 8);
    assert_eq!(snap(0, 8), 8);
}
