//! Opaque AVIF at 4:2:0: rav1e driven directly, because ravif always encodes full-resolution
//! chroma (4:4:4), which rav1e supports only partly and which costs bytes the eye (and
//! SSIMULACRA2) hardly sees: at equal score ravif's 4:4:4 needed 16–18 % more bytes than libaom's
//! 4:2:0 (docs/benchmarks.md, the rate-distortion harness). The rest follows ravif 0.13: BT.601
//! full-range YCbCr, its quality → quantizer mapping, a still picture, psychovisual tuning, and
//! avif-serialize for the container (now with the 4:2:0 flags and AV1 Main profile).

use rav1e::prelude::*;

use crate::error::{PipelineError, Result};
use crate::pixels::Pixels;

/// ravif's mapping from a 1–100 quality to rav1e's quantizer (0 best – 255 worst), so a preset's
/// `quality` means the same at 4:2:0 as it did through ravif.
fn quantizer(quality: u8) -> usize {
    let q = f32::from(quality) / 100.;
    let x = if q >= 0.82 {
        (1. - q) * 2.6
    } else if q > 0.25 {
        q.mul_add(-0.5, 1. - 0.125)
    } else {
        1. - q
    };
    (x * 255.).round() as usize
}

/// Y'CbCr planes of an RGB picture, BT.601 full range; chroma averaged over 2×2 blocks (the last
/// column or row alone when a side is odd).
fn planes(pixels: &Pixels) -> (Vec<u8>, Vec<u8>, Vec<u8>, usize) {
    let (w, h) = (pixels.width as usize, pixels.height as usize);
    let (cw, ch) = (w.div_ceil(2), h.div_ceil(2));
    let stride = pixels.stride();
    let mut y = vec![0u8; w * h];
    let (mut cb, mut cr) = (vec![0u8; cw * ch], vec![0u8; cw * ch]);
    let (kr, kg, kb) = (0.299f32, 0.587f32, 0.114f32);
    let rgb = |row: usize, col: usize| {
        let at = row * stride + col * 3;
        let d = &pixels.data[at..at + 3];
        (f32::from(d[0]), f32::from(d[1]), f32::from(d[2]))
    };
    for row in 0..h {
        for col in 0..w {
            let (r, g, b) = rgb(row, col);
            y[row * w + col] = (kr * r + kg * g + kb * b).round().clamp(0., 255.) as u8;
        }
    }
    for crow in 0..ch {
        for ccol in 0..cw {
            let (mut r, mut g, mut b, mut n) = (0f32, 0f32, 0f32, 0f32);
            for row in (2 * crow)..(2 * crow + 2).min(h) {
                for col in (2 * ccol)..(2 * ccol + 2).min(w) {
                    let (pr, pg, pb) = rgb(row, col);
                    (r, g, b, n) = (r + pr, g + pg, b + pb, n + 1.);
                }
            }
            let (r, g, b) = (r / n, g / n, b / n);
            let luma = kr * r + kg * g + kb * b;
            let at = crow * cw + ccol;
            cb[at] = ((b - luma) * 0.5 / (1. - kb) + 128.)
                .round()
                .clamp(0., 255.) as u8;
            cr[at] = ((r - luma) * 0.5 / (1. - kr) + 128.)
                .round()
                .clamp(0., 255.) as u8;
        }
    }
    (y, cb, cr, cw)
}

/// Encodes opaque 8-bit RGB `pixels` as a 4:2:0 AVIF at `quality` and rav1e `speed`.
pub fn encode(pixels: &Pixels, quality: u8, speed: u8) -> Result<Vec<u8>> {
    debug_assert_eq!(pixels.channels, 3, "opaque RGB only");
    let (width, height) = (pixels.width as usize, pixels.height as usize);
    let fail = |what: &str, e: &dyn std::fmt::Display| {
        PipelineError::internal(format!("AVIF encoder (rav1e): {what}: {e}"))
    };
    let mut speed_settings = SpeedSettings::from_preset(speed);
    // A still picture: nothing to gain from motion search or look-ahead.
    speed_settings.multiref = false;
    speed_settings.rdo_lookahead_frames = 1;
    speed_settings.scene_detection_mode = SceneDetectionSpeed::None;
    speed_settings.motion.include_near_mvs = false;
    let quantizer = quantizer(quality);
    let config = Config::new()
        .with_encoder_config(EncoderConfig {
            width,
            height,
            bit_depth: 8,
            chroma_sampling: ChromaSampling::Cs420,
            chroma_sample_position: ChromaSamplePosition::Unknown,
            pixel_range: PixelRange::Full,
            color_description: Some(ColorDescription {
                transfer_characteristics: TransferCharacteristics::SRGB,
                color_primaries: ColorPrimaries::BT709,
                matrix_coefficients: MatrixCoefficients::BT601,
            }),
            still_picture: true,
            quantizer,
            min_quantizer: quantizer as u8,
            tune: Tune::Psychovisual,
            speed_settings,
            ..Default::default()
        })
        .with_threads(1);
    let mut context: Context<u8> = config
        .new_context()
        .map_err(|e| fail("configuration", &e))?;
    let (y, cb, cr, chroma_width) = planes(pixels);
    let mut frame = context.new_frame();
    frame.planes[0].copy_from_raw_u8(&y, width, 1);
    frame.planes[1].copy_from_raw_u8(&cb, chroma_width, 1);
    frame.planes[2].copy_from_raw_u8(&cr, chroma_width, 1);
    context
        .send_frame(frame)
        .map_err(|e| fail("send frame", &e))?;
    context.flush();
    let mut av1 = Vec::new();
    loop {
        match context.receive_packet() {
            Ok(mut packet) => {
                if packet.frame_type == FrameType::KEY {
                    av1.append(&mut packet.data);
                }
            }
            Err(EncoderStatus::Encoded) => continue,
            Err(EncoderStatus::LimitReached) => break,
            Err(e) => return Err(fail("encode", &e)),
        }
    }
    let mut container = avif_serialize::Aviffy::new();
    container
        .set_chroma_subsampling((true, true))
        .set_seq_profile(0)
        .set_full_color_range(true)
        .matrix_coefficients(avif_serialize::constants::MatrixCoefficients::Bt601);
    Ok(container.to_vec(&av1, None, pixels.width, pixels.height, 8))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::perceptual::{Scorer, decode_output};

    fn photo() -> Pixels {
        let bytes = crate::testing::fixture("Landscape_1.jpg");
        decode_output(&bytes).unwrap()
    }

    #[test]
    fn a_photo_round_trips_at_4_2_0_with_its_colours_and_fewer_bytes_than_4_4_4() {
        let pixels = photo();
        let avif = encode(&pixels, 80, 8).unwrap();
        let decoded = decode_output(&avif).unwrap();
        assert_eq!(
            (decoded.width, decoded.height),
            (pixels.width, pixels.height)
        );
        // A swapped plane or a wrong matrix scores far below this.
        let score = Scorer::new(&pixels, [255, 255, 255])
            .unwrap()
            .score_encoded(&avif)
            .unwrap();
        assert!(score > 70.0, "SSIMULACRA2 {score}");
        // ravif's 4:4:4 at the same quality and speed.
        use rgb::FromSlice;
        let full = ravif::Encoder::new()
            .with_quality(80.0)
            .with_speed(8)
            .with_num_threads(Some(1))
            .encode_rgb(ravif::Img::new(
                pixels.data.as_rgb(),
                pixels.width as usize,
                pixels.height as usize,
            ))
            .unwrap()
            .avif_file;
        assert!(
            avif.len() < full.len(),
            "4:2:0 {} bytes, 4:4:4 {}",
            avif.len(),
            full.len()
        );
    }

    #[test]
    fn odd_sizes_keep_their_last_row_and_column() {
        let mut pixels = photo();
        let (w, h) = (101u32, 67u32);
        let stride = pixels.stride();
        let data: Vec<u8> = (0..h as usize)
            .flat_map(|row| pixels.data[row * stride..row * stride + w as usize * 3].to_vec())
            .collect();
        pixels = Pixels::new(w, h, 3, data);
        let decoded = decode_output(&encode(&pixels, 70, 10).unwrap()).unwrap();
        assert_eq!((decoded.width, decoded.height), (w, h));
    }
}
