//! Unit tests of [`super`].

use super::*;

/// `process` on the CPU engine, which must succeed.
fn on_cpu(bytes: &[u8], source: &SourceRef, presets: &PresetSet, options: &Options) -> Processed {
    process(bytes, source, presets, options, &mut Engine::default()).unwrap()
}

/// Encodes every JPEG as the same marker bytes (or fails), and takes nothing else.
struct JpegDevice {
    fails: bool,
}
impl crate::Accelerator for JpegDevice {
    fn name(&self) -> &str {
        "jpeg-device"
    }
    fn resample(&mut self, _: &Pixels, _: u32, _: u32) -> std::result::Result<Pixels, String> {
        Err("no resampler".into())
    }
    fn encode_jpeg(
        &mut self,
        pixels: &Pixels,
        _: &crate::Preset,
    ) -> Option<std::result::Result<Vec<u8>, String>> {
        assert_eq!(pixels.channels, 3, "flattened before the device");
        Some(if self.fails {
            Err("encoder lost".into())
        } else {
            Ok(b"device jpeg".to_vec())
        })
    }
}

/// Counts the calls of the device-resident path: fused decode (a real full-size CPU decode),
/// resamples of the upright frame (declined, so the CPU resizes), releases.
#[derive(Default)]
struct Calls {
    fused: usize,
    upright_resamples: usize,
    other_resamples: usize,
    releases: usize,
}
struct Resident(std::sync::Arc<std::sync::Mutex<Calls>>);
impl crate::Accelerator for Resident {
    fn name(&self) -> &str {
        "resident"
    }
    fn resample(&mut self, _: &Pixels, _: u32, _: u32) -> std::result::Result<Pixels, String> {
        self.0.lock().unwrap().other_resamples += 1;
        Err("declined".into())
    }
    fn resample_upright(
        &mut self,
        _: &Pixels,
        _: u32,
        _: u32,
    ) -> std::result::Result<Pixels, String> {
        self.0.lock().unwrap().upright_resamples += 1;
        Err("declined".into())
    }
    fn release_image(&mut self) {
        self.0.lock().unwrap().releases += 1;
    }
    fn decode_jpeg_upright(
        &mut self,
        bytes: &[u8],
        _: Option<&crate::colour::MatrixShaper>,
        orientation: u8,
    ) -> Option<std::result::Result<Pixels, String>> {
        self.0.lock().unwrap().fused += 1;
        let header = probe::probe(bytes).unwrap();
        let pixels = decode::decode(bytes, &header, 1, None, 1 << 30).unwrap();
        Some(Ok(crate::orient::orient(pixels, orientation)))
    }
}

#[test]
fn the_fused_decode_feeds_whole_frame_resamples_of_the_upright_frame_and_is_released() {
    let bytes = crate::testing::fixture("camera_canon-sx60hs_orient6.jpg");
    let source = SourceRef::default();
    let presets = PresetSet::default_set();
    let calls = std::sync::Arc::new(std::sync::Mutex::new(Calls::default()));
    let mut engine = Engine::with_backend(Box::new(Resident(calls.clone())));
    let done = process(&bytes, &source, &presets, &Options::default(), &mut engine).unwrap();
    let cpu = on_cpu(&bytes, &source, &presets, &Options::default());
    let sizes = |p: &Processed| -> Vec<(u32, u32)> {
        p.derivatives.iter().map(|d| (d.width, d.height)).collect()
    };
    assert_eq!(sizes(&done), sizes(&cpu));
    let calls = calls.lock().unwrap();
    assert_eq!(calls.fused, 1);
    // Resamples from the upright frame are marked as such; those from intermediates are not.
    assert!(calls.upright_resamples >= 1);
    assert!(calls.upright_resamples + calls.other_resamples >= presets.presets().len() - 1);
    assert_eq!(calls.releases, 2, "released before and after the image");
}

#[test]
fn jpeg_derivatives_go_to_the_device_encoder_and_the_rest_stay_on_the_cpu() {
    let bytes = crate::testing::fixture("Landscape_2.jpg");
    let source = crate::testing::source("k.jpg");
    let presets = PresetSet::default_set();
    let options = Options {
        encode_threads: 2,
        ..Options::default()
    };
    let cpu = on_cpu(&bytes, &source, &presets, &options);
    let mut device = Engine::with_backend(Box::new(JpegDevice { fails: false }));
    let on_device = process(&bytes, &source, &presets, &options, &mut device).unwrap();
    assert!(
        presets
            .presets()
            .iter()
            .any(|p| p.format == OutputFormat::Jpeg)
    );
    for (d, c) in on_device.derivatives.iter().zip(&cpu.derivatives) {
        assert_eq!(
            (&d.preset, d.width, d.height),
            (&c.preset, c.width, c.height)
        );
        if d.format == OutputFormat::Jpeg {
            assert_eq!(d.bytes, b"device jpeg", "{}", d.preset);
        } else {
            assert_eq!(d.bytes, c.bytes, "{}", d.preset);
        }
    }
    let mut failing = Engine::with_backend(Box::new(JpegDevice { fails: true }));
    let fallback = process(&bytes, &source, &presets, &options, &mut failing).unwrap();
    assert_eq!(fallback.derivatives, cpu.derivatives);
    let jpegs = presets
        .presets()
        .iter()
        .filter(|p| p.format == OutputFormat::Jpeg)
        .count() as u64;
    // Every JPEG encode failed over to the CPU, besides every resample.
    let (failures, last) = failing.backend_failures();
    assert!(failures >= jpegs, "{failures}");
    assert!(last.unwrap().starts_with("jpeg-device: "), "{last:?}");
}

#[test]
fn jpegli_presets_stay_on_the_cpu_beside_a_device() {
    let bytes = crate::testing::fixture("Landscape_2.jpg");
    let source = crate::testing::source("k.jpg");
    let presets = PresetSet::from_toml(
        "[[preset]]\nname='turbo'\nwidth=120\n\n\
         [[preset]]\nname='jpegli'\nwidth=120\nencoder='jpegli'",
    )
    .unwrap();
    let options = Options::default();
    let cpu = on_cpu(&bytes, &source, &presets, &options);
    let mut device = Engine::with_backend(Box::new(JpegDevice { fails: false }));
    let on_device = process(&bytes, &source, &presets, &options, &mut device).unwrap();
    assert_eq!(on_device.derivatives[0].bytes, b"device jpeg");
    assert!(
        on_device.derivatives[1].bytes == cpu.derivatives[1].bytes,
        "the jpegli preset was not encoded on the CPU"
    );
    // jpegli's output differs from libjpeg-turbo's at the same quality and size.
    assert_ne!(cpu.derivatives[0].bytes, cpu.derivatives[1].bytes);
    assert_eq!(&cpu.derivatives[1].bytes[..2], &[0xFF, 0xD8]);
}

#[test]
fn a_responsive_ladder_yields_named_rungs_and_a_srcset_per_format() {
    let bytes = crate::testing::fixture("camera_canon-sx60hs_orient6.jpg");
    let source = crate::testing::source("a b.jpg");
    let presets = PresetSet::from_toml(include_str!("../../presets/responsive.toml")).unwrap();
    let done = on_cpu(&bytes, &source, &presets, &Options::default());
    let hero: Vec<(&str, u32, &str)> = done
        .derivatives
        .iter()
        .filter(|d| d.group == "hero")
        .map(|d| (d.name.as_str(), d.width, d.key.as_str()))
        .collect();
    // 1536×2048 upright (EXIF 6): the height cap of 1600 makes the 1600 rung 1200 wide.
    assert_eq!(hero.len(), 8, "{hero:?}");
    assert!(hero.contains(&("hero-640w", 640, "derived/a b.jpg/hero-640w.webp")));
    assert!(hero.contains(&(
        "hero-jpeg-1200w",
        1200,
        "derived/a b.jpg/hero-jpeg-1200w.jpg"
    )));
    let group = &done.metadata.groups["hero"];
    assert_eq!((group.width, group.height), (1200, 1600));
    assert_eq!(group.sizes, "(max-width: 1200px) 100vw, 1200px");
    let formats: Vec<&str> = group.variants.iter().map(|v| v.format.as_str()).collect();
    assert_eq!(formats, ["webp", "jpeg"]);
    assert!(
        group.variants[0].srcset.starts_with(
            "/derived/a%20b.jpg/hero-320w.webp 320w, /derived/a%20b.jpg/hero-640w.webp 640w"
        ),
        "{}",
        group.variants[0].srcset
    );
    let preview = &done.metadata.groups["preview"];
    let formats: Vec<&str> = preview.variants.iter().map(|v| v.format.as_str()).collect();
    assert_eq!(formats, ["avif", "webp", "jpeg"]);
    // The on-request AVIF is listed (where it will be, its size) but was not made.
    assert_eq!(preview.variants[0].src, "/derived/a%20b.jpg/avif.avif");
    assert!(!done.derivatives.iter().any(|d| d.preset == "avif"));
    assert!(!done.metadata.derivatives.iter().any(|d| d.preset == "avif"));
    crate::testing::assert_valid_metadata(&done.metadata);
}

#[test]
fn an_on_request_ladder_is_listed_in_its_group_from_the_source_size_but_not_made() {
    let bytes = crate::testing::fixture("camera_canon-sx60hs_orient6.jpg");
    let source = crate::testing::source("k.jpg");
    let presets = PresetSet::from_toml(
        "[[preset]]\nname='thumbnail'\nwidth=200\n\
         [[preset]]\nname='hero'\nwidths=[320, 1024, 2000, 4000]\nformat='webp'\non_request=true\n",
    )
    .unwrap();
    let options = Options {
        cdn_base_url: Some("https://cdn.example".into()),
        ..Options::default()
    };
    let done = on_cpu(&bytes, &source, &presets, &options);
    let made: Vec<&str> = done.derivatives.iter().map(|d| d.name.as_str()).collect();
    assert_eq!(made, ["thumbnail"]);
    let hero = &done.metadata.groups["hero"];
    // 1536×2048 upright: the rungs past the source's width collapse into one at 1536.
    assert_eq!(
        hero.variants[0].srcset,
        "https://cdn.example/derived/k.jpg/hero-320w.webp 320w, \
         https://cdn.example/derived/k.jpg/hero-1024w.webp 1024w, \
         https://cdn.example/derived/k.jpg/hero-1536w.webp 1536w"
    );
    assert_eq!((hero.width, hero.height), (1536, 2048));
    assert_eq!(done.metadata.derivatives.len(), 1);
}

#[test]
fn a_perceptual_target_is_searched_on_the_cpu_and_recorded_in_metadata() {
    let bytes = crate::testing::fixture("camera_nokia-8-3-5g_gps_9mp.jpg");
    let presets = PresetSet::from_toml(
        "[[preset]]\nname='fixed'\nwidth=400\nquality=80\n\
         [[preset]]\nname='high'\nwidth=400\nquality='high'\n\
         [[preset]]\nname='web'\nwidth=400\nformat='webp'\nquality={ target = 65 }",
    )
    .unwrap();
    // The device takes fixed-quality JPEGs only: the target preset never reaches it.
    let mut engine = Engine::with_backend(Box::new(JpegDevice { fails: false }));
    let done = process(
        &bytes,
        &SourceRef::default(),
        &presets,
        &Options::default(),
        &mut engine,
    )
    .unwrap();
    let info = |name: &str| {
        done.metadata
            .derivatives
            .iter()
            .find(|d| d.preset == name)
            .unwrap()
            .clone()
    };
    assert_eq!(info("fixed").quality, None);
    assert_eq!(
        done.derivatives[0].bytes, b"device jpeg",
        "fixed JPEG on the device"
    );
    let high = info("high").quality.expect("the search is recorded");
    assert_eq!(high.target, 80.0);
    assert!(
        high.reached && high.score >= 80.0 && high.trials >= 1,
        "{high:?}"
    );
    assert!(
        done.derivatives[1].bytes.starts_with(b"\xFF\xD8"),
        "target JPEG on the CPU"
    );
    let web = info("web").quality.unwrap();
    assert!(web.reached && web.score >= 65.0, "{web:?}");
    assert!(web.setting < high.setting, "{web:?} vs {high:?}");
    crate::testing::assert_valid_metadata(&done.metadata);
}

#[test]
fn public_urls_encode_each_segment() {
    assert_eq!(
        public_url(
            "https://cdn.example.com/",
            "derived/a b/é+x.jpg/thumbnail.jpg"
        ),
        "https://cdn.example.com/derived/a%20b/%C3%A9%2Bx.jpg/thumbnail.jpg"
    );
}

#[test]
fn gps_policy_rounds_or_drops() {
    let gps = Some(GpsPosition {
        latitude: 40.446972,
        longitude: -3.724753,
        altitude_m: Some(639.6),
    });
    assert_eq!(GpsPolicy::Include.apply(gps), gps);
    assert_eq!(GpsPolicy::Omit.apply(gps), None);
    let coarse = GpsPolicy::Coarse.apply(gps).unwrap();
    assert_eq!(
        (coarse.latitude, coarse.longitude, coarse.altitude_m),
        (40.45, -3.72, None)
    );
}

/// The portrait's face as drawn by hand, in upright pixels (see `focus::tests`): x 118–216, y 62–182.
const FACE: [u32; 4] = [118, 62, 98, 120];

fn crop_of(processed: &Processed, preset: &str) -> Option<CropInfo> {
    processed
        .metadata
        .derivatives
        .iter()
        .find(|d| d.preset == preset)
        .expect("derivative")
        .crop
}

fn holds(crop: CropInfo, [x, y, w, h]: [u32; 4]) -> bool {
    crop.x <= x && crop.y <= y && x + w <= crop.x + crop.w && y + h <= crop.y + crop.h
}

#[test]
fn the_default_thumbnail_keeps_the_face_a_centre_crop_cuts() {
    let bytes = crate::testing::fixture("crafted_face_portrait_320x512.jpg");
    let source = crate::testing::source("face.jpg");
    let auto = on_cpu(
        &bytes,
        &source,
        &PresetSet::default_set(),
        &Options::default(),
    );
    crate::testing::assert_valid_metadata(&auto.metadata);
    let crop = crop_of(&auto, "thumbnail").expect("a cover derivative records its crop");
    assert!(holds(crop, FACE), "{crop:?}");
    assert_eq!((crop.w, crop.h), (320, 320));
    let m = &auto.metadata;
    let focus = m.focus.expect("focus recorded");
    assert_eq!(focus.source, crate::focus::FocusSource::Faces);
    assert_eq!(m.faces.as_ref().map(Vec::len), Some(1));
    assert!(m.timings_ms.detect > 0.0);
    assert_eq!(
        crop_of(&auto, "preview"),
        None,
        "inside derivatives have no crop"
    );
    // The same preset centred cuts the forehead, and looks for nothing.
    let centred =
        PresetSet::from_toml("[[preset]]\nname='thumbnail'\nwidth=200\nheight=200\nfit='cover'")
            .unwrap();
    let centre = on_cpu(&bytes, &source, &centred, &Options::default());
    let crop = crop_of(&centre, "thumbnail").unwrap();
    assert_eq!((crop.x, crop.y, crop.w, crop.h), (0, 96, 320, 320));
    assert!(!holds(crop, FACE));
    assert_eq!(
        (centre.metadata.focus, centre.metadata.faces.as_ref()),
        (None, None)
    );
    assert_eq!(centre.metadata.timings_ms.detect, 0.0);
    // Both documents are schema-valid; the public view drops the face boxes, keeps focus and crop.
    let public = auto.metadata.public_view();
    crate::testing::assert_valid_metadata(&public);
    assert_eq!((public.faces, public.focus), (None, auto.metadata.focus));
    assert_eq!(
        public.derivatives[0].crop,
        auto.metadata.derivatives[0].crop
    );
}

#[test]
fn an_exif_rotated_portrait_is_cropped_in_upright_pixels() {
    let set = PresetSet::default_set();
    let upright = on_cpu(
        &crate::testing::fixture("crafted_face_portrait_320x512.jpg"),
        &crate::testing::source("a.jpg"),
        &set,
        &Options::default(),
    );
    let turned = on_cpu(
        &crate::testing::fixture("crafted_face_portrait_orient6.jpg"),
        &crate::testing::source("b.jpg"),
        &set,
        &Options::default(),
    );
    let crop = crop_of(&turned, "thumbnail").unwrap();
    assert_eq!(Some(crop), crop_of(&upright, "thumbnail"));
    assert!(holds(crop, FACE), "{crop:?}");
    let (a, b) = (
        &upright.metadata.faces.unwrap()[0],
        &turned.metadata.faces.unwrap()[0],
    );
    assert!(
        (a.x - b.x).abs() < 0.03 && (a.y - b.y).abs() < 0.03,
        "{a:?} {b:?}"
    );
}

#[test]
fn the_apps_focal_point_wins_and_a_stored_analysis_is_not_redone() {
    let bytes = crate::testing::fixture("crafted_face_portrait_320x512.jpg");
    let set = PresetSet::default_set();
    let manual = SourceRef {
        focus: Some(FocalPoint { x: 0.5, y: 0.9 }),
        ..crate::testing::source("face.jpg")
    };
    let processed = on_cpu(&bytes, &manual, &set, &Options::default());
    let crop = crop_of(&processed, "thumbnail").unwrap();
    assert_eq!(
        (crop.y, crop.h),
        (192, 320),
        "the window's bottom edge is the picture's"
    );
    let focus = processed.metadata.focus.unwrap();
    assert_eq!(
        (focus.x, focus.y, focus.source),
        (0.5, 0.9, crate::focus::FocusSource::Manual)
    );
    // The faces are still found and recorded: `gravity = "faces"` presets use them.
    assert_eq!(processed.metadata.faces.as_ref().map(Vec::len), Some(1));
    // A stored analysis (what a render on request passes) is used as it is: a face recorded at the
    // bottom moves the crop there though the pixels have their face at the top.
    let recorded = Analysis {
        faces: vec![crate::focus::Face {
            x: 0.4,
            y: 0.85,
            w: 0.2,
            h: 0.1,
            score: 9.0,
        }],
        ..Analysis::default()
    };
    let known = SourceRef {
        analysis: Some(recorded.clone()),
        ..crate::testing::source("face.jpg")
    };
    let again = on_cpu(&bytes, &known, &set, &Options::default());
    assert_eq!(crop_of(&again, "thumbnail").unwrap().y, 192);
    assert_eq!(again.metadata.faces, Some(recorded.faces.clone()));
    assert_eq!(again.metadata.analysis(), Some(recorded));
}

#[test]
fn a_set_whose_only_gravity_is_on_request_still_records_the_analysis() {
    // Nothing eager is aimed, but the render of the on-request preset will need the faces.
    let set = PresetSet::from_toml(
        "[[preset]]\nname='preview'\nwidth=300\n\n[[preset]]\nname='square'\nwidth=100\nheight=100\nfit='cover'\ngravity='faces'\non_request=true",
    )
    .unwrap();
    let processed = on_cpu(
        &crate::testing::fixture("crafted_face_portrait_320x512.jpg"),
        &crate::testing::source("face.jpg"),
        &set,
        &Options::default(),
    );
    let m = &processed.metadata;
    assert_eq!(m.faces.as_ref().map(Vec::len), Some(1), "{:?}", m.faces);
    assert_eq!(
        m.focus.map(|f| f.source),
        Some(crate::focus::FocusSource::Faces)
    );
    assert!(m.timings_ms.detect > 0.0);
    assert_eq!(crop_of(&processed, "preview"), None);
}
