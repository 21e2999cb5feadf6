//! The decoder against libjpeg-turbo on the same files and scales. At full scale (all 64
//! coefficients kept) the two differ only by IDCT arithmetic (float here, libjpeg's `islow` there), so
//! a mis-decoded coefficient anywhere shows as a block error far beyond the bound; below full scale
//! libjpeg-turbo's 4×4 and 2×2 IDCTs also fold in higher frequencies that this one drops, so the
//! bound is looser but still far from a wrong block.

use super::*;
use crate::decode::jpeg::decode_with_libjpeg;
use crate::testing::fixture;
use turbojpeg::{Compressor, Image, PixelFormat, Subsamp};

/// Peak signal-to-noise ratio of `a` against `b` in dB, and the largest sample difference.
fn psnr(a: &Pixels, b: &Pixels) -> (f64, u8) {
    assert_eq!((a.width, a.height), (b.width, b.height), "same size");
    let (mut sum, mut max) = (0f64, 0u8);
    for (&x, &y) in a.data.iter().zip(&b.data) {
        let d = x.abs_diff(y);
        max = max.max(d);
        sum += f64::from(d) * f64::from(d);
    }
    let mse = sum / a.data.len() as f64;
    (10.0 * (255.0f64 * 255.0 / mse.max(1e-9)).log10(), max)
}

/// Progressive files of every layout this decoder takes: a camera's, two crafted with restart
/// intervals (in blocks, in MCU rows), and libjpeg-turbo's own progression (which refines DC and AC
/// bands by successive approximation) for 4:4:4, 4:2:0, 4:4:0 and grey at odd sizes.
fn files() -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<(String, Vec<u8>)> = [
        "progressive_nikon-d300_exif.jpeg",
        "crafted_progressive_420_restart-blocks_203x157.jpg",
        "crafted_progressive_422_restart-rows_157x203.jpg",
    ]
    .iter()
    .map(|name| (name.to_string(), fixture(name)))
    .collect();
    let source = reference_pixels();
    for (subsamp, (w, h)) in [
        (Subsamp::None, (203, 157)),
        (Subsamp::Sub2x2, (333, 250)),
        (Subsamp::Sub1x2, (97, 61)),
        (Subsamp::Gray, (203, 157)),
    ] {
        files.push((
            format!("libjpeg-turbo {subsamp:?} {w}x{h}"),
            progressive(&source, subsamp, w, h),
        ));
    }
    files
}

fn reference_pixels() -> Pixels {
    let png = fixture("crafted_olympus_srgb-reference.png");
    crate::decode::decode(&png, &crate::probe::probe(&png).unwrap(), 1, None, 1 << 30).unwrap()
}

/// The top-left `w`×`h` of `source` as a progressive JPEG from libjpeg-turbo.
fn progressive(source: &Pixels, subsamp: Subsamp, w: usize, h: usize) -> Vec<u8> {
    let stride = source.width as usize * 3;
    let pixels: Vec<u8> = source
        .data
        .chunks_exact(stride)
        .take(h)
        .flat_map(|row| row[..w * 3].iter().copied())
        .collect();
    let mut compressor = Compressor::new().unwrap();
    compressor.set_quality(90).unwrap();
    compressor.set_subsamp(subsamp).unwrap();
    compressor.set_progressive(true).unwrap();
    let image = Image {
        pixels: pixels.as_slice(),
        width: w,
        pitch: w * 3,
        height: h,
        format: PixelFormat::RGB,
    };
    compressor.compress_to_vec(image).unwrap()
}

fn compare(bytes: &[u8], denominator: u32) -> (f64, u8) {
    let ours = decode(bytes, denominator).unwrap_or_else(|e| panic!("1/{denominator}: {e}"));
    let reference = decode_with_libjpeg(bytes, denominator, None).unwrap();
    psnr(&ours, &reference)
}

#[test]
fn matches_libjpeg_turbo_at_full_scale() {
    for (name, bytes) in files() {
        let (db, max) = compare(&bytes, 1);
        assert!(db >= 45.0 && max <= 12, "{name}: {db:.1} dB, max {max}");
    }
}

#[test]
fn matches_libjpeg_turbo_at_reduced_scales() {
    for (name, bytes) in files() {
        for denominator in [2, 4, 8] {
            let (db, _) = compare(&bytes, denominator);
            assert!(db >= 33.0, "{name} at 1/{denominator}: {db:.1} dB");
        }
    }
}

#[test]
fn jpegli_progressions_with_many_refinement_scans_decode_alike() {
    // jpegli's progressive script refines DC and AC bands bit by bit: every scan kind, many times.
    let jpeg = crate::jpegli::encode(
        &reference_pixels(),
        85,
        crate::preset::ChromaSubsampling::Yuv420,
        true,
    )
    .unwrap();
    for denominator in [1, 2, 4] {
        let (db, _) = compare(&jpeg, denominator);
        let floor = if denominator == 1 { 45.0 } else { 33.0 };
        assert!(db >= floor, "1/{denominator}: {db:.1} dB");
    }
}

#[test]
fn keeps_only_the_corner_the_scale_reads() {
    // 4:2:0: luma keeps N×N; chroma 2N×2N (its IDCT replaces upsampling) up to 8×8.
    let bytes = fixture("crafted_progressive_420_restart-blocks_203x157.jpg");
    let (body, _) = segments::payload(&bytes, find_marker(&bytes, 0xC2) + 2).unwrap();
    let frame = segments::frame(body).unwrap();
    for (n, luma, chroma) in [(4, 4, 8), (2, 2, 4), (1, 1, 2)] {
        let store = Store::new(&frame, n).unwrap();
        let sizes: Vec<usize> = store.planes.iter().map(|p| p.n).collect();
        assert_eq!(sizes, [luma, chroma, chroma], "{n}/8 scale");
        for (plane, c) in store.planes.iter().zip(&frame.components) {
            // A 64-bit mask, the DC, and n×n coefficients: at 1/2 scale 42 bytes a luma block, not 128.
            let bytes = plane.masks.len() * 8 + plane.dc.len() * 2 + plane.coefs.len() * 2;
            assert_eq!(
                bytes,
                c.padded_w * c.padded_h * (10 + 2 * plane.n * plane.n)
            );
        }
    }
}

fn find_marker(bytes: &[u8], marker: u8) -> usize {
    bytes
        .windows(2)
        .position(|w| w == [0xFF, marker])
        .expect("marker present")
}

#[test]
fn refuses_what_libjpeg_turbo_should_decode() {
    let baseline = fixture("large_olympus-e-p3_12mp.jpg");
    assert_eq!(
        decode(&baseline, 2).unwrap_err(),
        Refusal::Unsupported("not a Huffman-coded progressive JPEG")
    );
    let progressive = fixture("progressive_nikon-d300_exif.jpeg");
    for cut in [progressive.len() / 2, progressive.len() - 2] {
        assert!(
            matches!(decode(&progressive[..cut], 2), Err(Refusal::Corrupt(_))),
            "cut at {cut}"
        );
    }
    let mut bad_restart = fixture("crafted_progressive_420_restart-blocks_203x157.jpg");
    let first = find_marker(&bad_restart, 0xD0);
    bad_restart[first + 1] = 0xD3;
    assert!(matches!(decode(&bad_restart, 2), Err(Refusal::Corrupt(_))));
    assert!(matches!(
        decode(&progressive, 3),
        Err(Refusal::Unsupported(_))
    ));
}

#[test]
fn a_damaged_file_still_fails_through_the_jpeg_decoder() {
    let progressive = fixture("progressive_nikon-d300_exif.jpeg");
    let cut = &progressive[..progressive.len() * 2 / 3];
    let err = crate::decode::jpeg::decode(cut, 2, true, None).unwrap_err();
    assert!(err.to_string().contains("Premature end"), "{err}");
}

#[test]
fn derivatives_are_as_good_as_from_libjpeg_turbo() {
    // What matters downstream: a Lanczos3 derivative at the plan's margins (1.5× the output, the
    // least the planner allows, and 2.5×), scored against one made from the full-scale decode.
    use crate::plan::CropFraction;
    use crate::resize::{CpuResizer, Filter};
    let mut resizer = CpuResizer::default();
    for (name, bytes) in files() {
        let full = decode_with_libjpeg(&bytes, 1, None).unwrap();
        for denominator in [2, 4] {
            let ours = decode(&bytes, denominator).unwrap();
            let libjpeg = decode_with_libjpeg(&bytes, denominator, None).unwrap();
            for margin in [1.5, 2.5] {
                let (w, h) = (
                    (f64::from(ours.width) / margin).round() as u32,
                    (f64::from(ours.height) / margin).round() as u32,
                );
                if w < 16 || h < 16 {
                    continue;
                }
                let mut make = |p: &Pixels| {
                    resizer
                        .resample(p, CropFraction::FULL, w, h, Filter::Lanczos3)
                        .unwrap()
                };
                let (reference, a, b) = (make(&full), make(&ours), make(&libjpeg));
                let scorer = crate::perceptual::Scorer::new(&reference, [255; 3]).unwrap();
                let (ours_db, libjpeg_db) = (psnr(&a, &reference).0, psnr(&b, &reference).0);
                let (ours_s2, libjpeg_s2) = (scorer.score(&a).unwrap(), scorer.score(&b).unwrap());
                let case = format!("{name} 1/{denominator} margin {margin}");
                assert!(
                    ours_db >= libjpeg_db - 0.5,
                    "{case}: {ours_db:.2} vs {libjpeg_db:.2} dB"
                );
                assert!(
                    ours_s2 >= libjpeg_s2 - 2.5,
                    "{case}: SSIMULACRA2 {ours_s2:.2} vs {libjpeg_s2:.2}"
                );
            }
        }
    }
}

#[test]
fn damaged_files_never_panic_and_decoded_ones_have_the_scaled_size() {
    // Deterministic mutations (byte changes, bit flips, cuts, inserted markers) of progressive files
    // in every layout: a new parser of untrusted bytes must refuse or decode, never panic or
    // return a wrong-sized picture. `make fuzz` (target `progressive_jpeg`) goes further.
    let mut seed = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let (mut decoded, mut refused) = (0, 0);
    for (name, original) in files() {
        for _ in 0..150 {
            let mut bytes = original.clone();
            for _ in 0..1 + next() % 4 {
                let at = (next() as usize) % bytes.len();
                match next() % 4 {
                    0 => bytes[at] = next() as u8,
                    1 => bytes[at] ^= 1 << (next() % 8),
                    2 => bytes.truncate(at.max(2)),
                    _ => bytes
                        .splice(at..at, [0xFF, 0xC0 + (next() % 64) as u8])
                        .for_each(drop),
                }
            }
            // The size the (possibly mutated) frame header declares.
            let declared = crate::probe::probe(&bytes).map(|h| (h.width, h.height));
            for denominator in [2, 4, 8] {
                match decode(&bytes, denominator) {
                    Ok(pixels) => {
                        decoded += 1;
                        if let Ok((w, h)) = declared {
                            assert_eq!(
                                (pixels.width, pixels.height),
                                (w.div_ceil(denominator), h.div_ceil(denominator)),
                                "{name}"
                            );
                        }
                    }
                    Err(_) => refused += 1,
                }
            }
        }
    }
    assert!(
        decoded > 0 && refused > 0,
        "{decoded} decoded, {refused} refused"
    );
}
