use super::window::{head, in_pixels, place};
use super::*;
use crate::plan::CropFraction;

/// The face in `crafted_face_portrait_320x512.jpg`, drawn by hand (brows to chin, ear to ear), in
/// upright pixels: x 118–216, y 62–182.
const HAND_DRAWN: Rect = Rect {
    x: 118.0 / 320.0,
    y: 62.0 / 512.0,
    w: 98.0 / 320.0,
    h: 120.0 / 512.0,
};

fn iou(a: &Rect, b: &Rect) -> f64 {
    let ix = (a.x + a.w).min(b.x + b.w) - a.x.max(b.x);
    let iy = (a.y + a.h).min(b.y + b.h) - a.y.max(b.y);
    if ix <= 0.0 || iy <= 0.0 {
        return 0.0;
    }
    ix * iy / (a.w * a.h + b.w * b.h - ix * iy)
}

fn contains(crop: &CropFraction, r: &Rect) -> bool {
    let e = 1e-9;
    r.x >= crop.left - e
        && r.y >= crop.top - e
        && r.x + r.w <= crop.left + crop.width + e
        && r.y + r.h <= crop.top + crop.height + e
}

/// The centre crop a 200×200 cover preset makes of a `w`×`h` upright picture.
fn square_window(w: f64, h: f64) -> CropFraction {
    let side = w.min(h);
    CropFraction {
        left: (w - side) / 2.0 / w,
        top: (h - side) / 2.0 / h,
        width: side / w,
        height: side / h,
    }
}

fn rect(x: f64, y: f64, w: f64, h: f64) -> Rect {
    Rect { x, y, w, h }
}

fn upright(name: &str) -> Pixels {
    let bytes = crate::testing::fixture(name);
    let header = crate::probe::probe(&bytes).unwrap();
    let orientation = header
        .orientation
        .unwrap_or(crate::exif::read(&bytes).orientation);
    let decoded = crate::decode::decode(&bytes, &header, 1, None, u64::MAX).unwrap();
    crate::orient::orient(decoded, orientation)
}

#[test]
fn the_portrait_face_is_found_where_a_person_drew_it() {
    let analysis = analyse(
        &upright("crafted_face_portrait_320x512.jpg"),
        None,
        ANALYSIS_SIDE,
        &mut Engine::default(),
    )
    .unwrap();
    assert_eq!(analysis.faces.len(), 1, "{:?}", analysis.faces);
    let found = analysis.faces[0].rect();
    assert!(iou(&found, &HAND_DRAWN) >= 0.5, "{found:?}");
    assert!(analysis.faces[0].score >= faces::MIN_SCORE);
    assert_eq!(
        analysis.attention, None,
        "attention is only looked for without faces"
    );
}

#[test]
fn an_exif_rotated_source_gives_upright_coordinates() {
    let mut engine = Engine::default();
    let straight = analyse(
        &upright("crafted_face_portrait_320x512.jpg"),
        None,
        ANALYSIS_SIDE,
        &mut engine,
    )
    .unwrap();
    let turned = upright("crafted_face_portrait_orient6.jpg");
    assert_eq!((turned.width, turned.height), (320, 512));
    let rotated = analyse(&turned, None, ANALYSIS_SIDE, &mut engine).unwrap();
    assert_eq!(rotated.faces.len(), 1, "{:?}", rotated.faces);
    let (a, b) = (straight.faces[0].rect(), rotated.faces[0].rect());
    assert!(iou(&a, &b) > 0.8, "{a:?} vs {b:?}");
    assert!(iou(&b, &HAND_DRAWN) >= 0.5, "{b:?}");
}

#[test]
fn tiny_and_faceless_images_give_no_faces_and_an_attention_point() {
    let mut engine = Engine::default();
    for (w, h) in [(1, 1), (7, 300), (39, 39), (64, 48)] {
        let flat = Pixels::new(w, h, 3, vec![128; (w * h * 3) as usize]);
        let analysis = analyse(&flat, None, ANALYSIS_SIDE, &mut engine).unwrap();
        assert!(analysis.faces.is_empty(), "{w}x{h}");
        let point = analysis.attention.expect("attention without faces");
        assert!((0.0..=1.0).contains(&point.x) && (0.0..=1.0).contains(&point.y));
    }
}

#[test]
fn attention_finds_a_bright_saturated_subject_off_centre() {
    // Grey, with a red disc around (0.8, 0.25): edges, saturation and skin-ish red all point there.
    let (w, h) = (300u32, 200u32);
    let mut data = vec![110u8; (w * h * 3) as usize];
    for y in 0..h {
        for x in 0..w {
            let (dx, dy) = (f64::from(x) - 240.0, f64::from(y) - 50.0);
            if dx * dx + dy * dy < 30.0 * 30.0 {
                let i = ((y * w + x) * 3) as usize;
                data[i..i + 3].copy_from_slice(&[220, 60, 40]);
            }
        }
    }
    let point = attention::point(&Pixels::new(w, h, 3, data));
    assert!(
        (point.x - 0.8).abs() < 0.1 && (point.y - 0.25).abs() < 0.12,
        "{point:?}"
    );
}

#[test]
fn a_face_at_the_top_edge_gets_a_crop_at_the_top_edge() {
    let window = square_window(320.0, 512.0);
    let face = rect(0.37, 0.12, 0.3, 0.23);
    let crop = place(window, &Subject::Faces(vec![face]));
    assert_eq!(crop.top, 0.0);
    assert!(contains(&crop, &face) && contains(&crop, &head(&face)));
    assert!(!contains(&window, &face), "the centre crop cuts this face");
    // Same size: only the position moves.
    assert_eq!((crop.width, crop.height), (window.width, window.height));
}

#[test]
fn faces_at_the_side_edges_of_a_landscape_are_kept() {
    let window = square_window(600.0, 300.0);
    for face in [rect(0.0, 0.3, 0.08, 0.2), rect(0.93, 0.3, 0.07, 0.2)] {
        let crop = place(window, &Subject::Faces(vec![face]));
        assert!(contains(&crop, &face), "{face:?} {crop:?}");
        assert!(crop.left == 0.0 || (crop.left + crop.width - 1.0).abs() < 1e-9);
    }
}

#[test]
fn several_faces_that_fit_are_all_kept_else_the_largest() {
    let window = square_window(400.0, 600.0); // 400×400: 1.0 × 0.667
    let largest = rect(0.1, 0.1, 0.2, 0.12);
    let small = rect(0.6, 0.5, 0.12, 0.08);
    let crop = place(window, &Subject::Faces(vec![largest, small]));
    assert!(
        contains(&crop, &largest) && contains(&crop, &small),
        "{crop:?}"
    );
    // Too far apart for one window: the largest face wins.
    let far = rect(0.7, 0.85, 0.1, 0.07);
    let crop = place(window, &Subject::Faces(vec![largest, far]));
    assert!(contains(&crop, &largest), "{crop:?}");
    assert!(!contains(&crop, &far));
    // A face larger than the window: centred on it, inside the picture.
    let huge = rect(0.0, 0.0, 1.0, 0.9);
    let crop = place(window, &Subject::Faces(vec![huge]));
    assert!(crop.top >= 0.0 && crop.top + crop.height <= 1.0 + 1e-9);
    assert!((crop.top + crop.height / 2.0 - 0.45).abs() < 1e-9);
}

#[test]
fn a_point_is_centred_and_clamped() {
    let window = square_window(300.0, 600.0);
    let at = |x, y| {
        place(
            window,
            &Subject::Point(FocalPoint { x, y }, FocusSource::Manual),
        )
    };
    assert_eq!(at(0.5, 0.0).top, 0.0);
    assert!((at(0.5, 1.0).top - 0.5).abs() < 1e-9);
    assert!((at(0.5, 0.6).top - 0.35).abs() < 1e-9);
    assert_eq!(at(0.5, 0.5), window);
}

#[test]
fn gravity_rules() {
    let manual = FocalPoint { x: 0.1, y: 0.2 };
    let seen = FocalPoint { x: 0.7, y: 0.3 };
    let face = Face {
        x: 0.4,
        y: 0.1,
        w: 0.2,
        h: 0.1,
        score: 5.0,
    };
    let everything = Analysis {
        faces: vec![face],
        attention: Some(seen),
        manual: Some(manual),
    };
    let faces = Subject::Faces(vec![face.rect()]);
    let point = |p, s| Subject::Point(p, s);
    let centre = point(FocalPoint::CENTRE, FocusSource::Centre);
    assert_eq!(
        everything.subject(Gravity::Auto),
        point(manual, FocusSource::Manual)
    );
    assert_eq!(everything.subject(Gravity::Faces), faces);
    assert_eq!(
        everything.subject(Gravity::Attention),
        point(seen, FocusSource::Attention)
    );
    assert_eq!(
        everything.subject(Gravity::Focal),
        point(manual, FocusSource::Manual)
    );
    assert_eq!(everything.subject(Gravity::Centre), centre);
    let no_manual = Analysis {
        manual: None,
        ..everything.clone()
    };
    assert_eq!(no_manual.subject(Gravity::Auto), faces);
    assert_eq!(no_manual.subject(Gravity::Focal), centre);
    let only_attention = Analysis {
        faces: vec![],
        ..no_manual.clone()
    };
    assert_eq!(
        only_attention.subject(Gravity::Auto),
        point(seen, FocusSource::Attention)
    );
    assert_eq!(only_attention.subject(Gravity::Faces), centre);
    assert_eq!(Analysis::default().subject(Gravity::Auto), centre);
    assert_eq!(Analysis::default().subject(Gravity::Attention), centre);
    let (at, source) = no_manual.focus();
    assert_eq!(source, FocusSource::Faces);
    assert!((at.x - 0.5).abs() < 1e-9 && (at.y - 0.15).abs() < 1e-9);
}

#[test]
fn focal_points_parse_strictly() {
    assert_eq!(
        FocalPoint::parse(" 0.25, 0.4 ").unwrap(),
        FocalPoint { x: 0.25, y: 0.4 }
    );
    assert_eq!(
        FocalPoint::parse("0,1").unwrap(),
        FocalPoint { x: 0.0, y: 1.0 }
    );
    for bad in [
        "", "0.5", "0.5;0.5", "a,b", "1.5,0.5", "0.5,-0.1", "NaN,0.5", "inf,0",
    ] {
        let error = FocalPoint::parse(bad).unwrap_err();
        assert!(error.contains("focus"), "{bad}: {error}");
    }
    let p = FocalPoint {
        x: 1.0 / 3.0,
        y: 0.5,
    };
    assert_eq!(p.to_header(), "0.3333,0.5");
    assert_eq!(FocalPoint::parse(&p.to_header()).unwrap().x, 0.3333);
}

#[test]
fn crops_in_pixels_stay_inside_the_picture() {
    assert_eq!(
        in_pixels(square_window(320.0, 512.0), 320, 512),
        [0, 96, 320, 320]
    );
    let top = CropFraction {
        left: 0.0,
        top: 0.0,
        width: 1.0,
        height: 0.625,
    };
    assert_eq!(in_pixels(top, 320, 512), [0, 0, 320, 320]);
    let [x, y, w, h] = in_pixels(
        CropFraction {
            left: 0.999,
            top: 0.999,
            width: 0.01,
            height: 0.01,
        },
        3,
        3,
    );
    assert!(x + w <= 3 && y + h <= 3 && w >= 1 && h >= 1);
}

#[test]
fn the_analysis_copy_is_never_enlarged() {
    assert_eq!(analysis_size(4000, 3000, 576), (576, 432));
    assert_eq!(analysis_size(3000, 4000, 576), (432, 576));
    assert_eq!(analysis_size(200, 100, 576), (200, 100));
    assert_eq!(analysis_size(10_000, 1, 576), (576, 1));
}
