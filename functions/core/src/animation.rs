//! Animated sources kept animated: for presets with `animated = true` on a GIF/WebP with more than one
//! frame. Frames are decoded one at a time (the `image` crate composites each onto the full canvas,
//! honouring GIF disposal and offsets), converted to sRGB, oriented, resized for every such preset and
//! fed to an [`AnimatedWebp`] encoder. Memory: one canvas plus what the encoders keep.

use std::io::Cursor;

use image::{AnimationDecoder, ImageDecoder};

use crate::colour::{self, Profile};
use crate::encode::AnimatedWebp;
use crate::engine::Engine;
use crate::error::{PipelineError, Result};
use crate::format::SourceFormat;
use crate::pixels::Pixels;
use crate::plan::Target;
use crate::preset::PresetSet;
use crate::probe::{Header, image_error};
use crate::{decode, orient};

/// One animated derivative: preset index, encoded WebP and its frame count.
pub struct Animated {
    /// Output name of the target (see [`Target::name`]).
    pub name: String,
    /// The animated WebP file.
    pub bytes: Vec<u8>,
    /// Frames in it.
    pub frames: u32,
}

/// What [`animate`] needs besides the bytes.
pub struct AnimationInput<'a> {
    /// The probed header (GIF or WebP with `frames > 1`).
    pub header: &'a Header,
    /// Embedded profile, if any.
    pub profile: Option<&'a Profile>,
    /// EXIF orientation (WebP may carry EXIF).
    pub orientation: u8,
    /// Most frames to encode.
    pub max_frames: u32,
    /// Allocation cap for the decoder.
    pub max_alloc: u64,
}

/// Encodes every target in `targets` (all WebP presets with `animated = true`) as an animation.
pub fn animate(
    bytes: &[u8],
    input: &AnimationInput<'_>,
    targets: &[&Target],
    presets: &PresetSet,
    engine: &mut Engine,
) -> Result<Vec<Animated>> {
    let mut encoders = targets
        .iter()
        .map(|t| AnimatedWebp::new(t.width, t.height, &presets.presets()[t.preset]))
        .collect::<Result<Vec<_>>>()?;
    let format = input.header.format;
    for frame in frames(bytes, input)?.take(input.max_frames as usize) {
        let frame = frame.map_err(|e| image_error(format, e))?;
        let (numerator, denominator) = frame.delay().numer_denom_ms();
        let duration_ms = numerator / denominator.max(1);
        let canvas = frame.into_buffer();
        let (width, height) = canvas.dimensions();
        let pixels = Pixels::new(width, height, 4, canvas.into_raw());
        let pixels = orient::orient(
            colour::rgb_to_srgb(pixels, input.profile),
            input.orientation,
        );
        for (target, encoder) in targets.iter().zip(&mut encoders) {
            let resized = engine.resize(&pixels, target.crop, target.width, target.height)?;
            encoder.add(&resized, duration_ms)?;
        }
    }
    targets
        .iter()
        .zip(encoders)
        .map(|(target, encoder)| {
            let bytes = encoder.finish()?;
            // libwebp merges frames that come out identical, so count what the file holds.
            let frames = crate::probe::webp_frame_count(&bytes);
            Ok(Animated {
                name: target.name.clone(),
                bytes,
                frames,
            })
        })
        .collect()
}

fn frames<'a>(bytes: &'a [u8], input: &AnimationInput<'_>) -> Result<image::Frames<'a>> {
    let format = input.header.format;
    let limits = decode::image_limits(input.header, input.max_alloc);
    let fail = |e| image_error(format, e);
    match format {
        SourceFormat::Gif => {
            let mut decoder =
                image::codecs::gif::GifDecoder::new(Cursor::new(bytes)).map_err(fail)?;
            decoder.set_limits(limits).map_err(fail)?;
            Ok(decoder.into_frames())
        }
        SourceFormat::Webp => {
            let mut decoder =
                image::codecs::webp::WebPDecoder::new(Cursor::new(bytes)).map_err(fail)?;
            decoder.set_limits(limits).map_err(fail)?;
            Ok(decoder.into_frames())
        }
        other => Err(PipelineError::internal(format!(
            "{} is not an animation format",
            other.as_str()
        ))),
    }
}
