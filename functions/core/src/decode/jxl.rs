//! JPEG XL through jxl-oxide (pure Rust): the first keyframe, rendered to sRGB by jxl-oxide with
//! moxcms (embedded ICC, enumerated colour, XYB and its HDR tone-mapping all handled there), every
//! allocation counted against the decode budget by jxl-oxide's allocation tracker.
//!
//! jxl-oxide renders upright; to keep "orientation is applied once, by the orient step" true for
//! every format, the rendered pixels are turned back to stored order here (only when the header's
//! orientation is not 1) and the header reports the orientation.

use std::io::Cursor;

use jxl_oxide::{
    AllocTracker, EnumColourEncoding, InitializeResult, JxlImage, Moxcms, RenderingIntent,
};

use crate::colour::ColourSpace;
use crate::error::{PipelineError, Result};
use crate::format::SourceFormat;
use crate::orient::orient;
use crate::pixels::Pixels;
use crate::probe::Header;

/// Memory jxl-oxide may use to read the headers when probing.
const PROBE_BUDGET: usize = 64 << 20;

fn jxl_error(action: &str, error: impl std::fmt::Display) -> PipelineError {
    let text = error.to_string();
    if text.to_ascii_lowercase().contains("memory") {
        PipelineError::over_limit(format!(
            "could not {action}: {text}; the JPEG XL image needs more memory than the decode budget"
        ))
    } else {
        PipelineError::corrupt(format!(
            "could not {action}: {text}; the JPEG XL file is truncated or corrupt, upload it again"
        ))
    }
}

fn open(bytes: &[u8], budget: usize) -> Result<JxlImage> {
    JxlImage::builder()
        .alloc_tracker(AllocTracker::with_limit(budget))
        .read(Cursor::new(bytes))
        .map_err(|e| jxl_error("read the JPEG XL header", e))
}

/// Reads size, depth, alpha and orientation from the headers. The size comes from imgpipe's own
/// read of the codestream's SizeHeader ([`declared_size`]), so a header declaring 100 000 × 100 000
/// pixels is measured (and refused by the limits) whatever follows it; jxl-oxide's streaming
/// initialiser then reads the rest of the image header without touching frame data.
pub fn probe(bytes: &[u8]) -> Result<Header> {
    let (width, height) = declared_size(bytes).ok_or_else(|| {
        PipelineError::corrupt("the JPEG XL size header is missing or cut short; upload it again")
    })?;
    let mut header = Header {
        format: SourceFormat::Jxl,
        width,
        height,
        progressive: false,
        lossless: false,
        colour_space: ColourSpace::Rgb,
        bit_depth: 8,
        alpha: false,
        frames: 1,
        // jxl-oxide works in f32: 4 bytes per channel of the frame, plus its output buffer.
        working_bytes_per_pixel: 32.0,
        icc_profile: None,
        cicp: None,
        orientation: Some(1),
        gain_map: false,
    };
    // The rest of the image header; if it cannot be read, the size alone goes to the limit check
    // and the decode reports the damage.
    let mut uninit = JxlImage::builder()
        .alloc_tracker(AllocTracker::with_limit(PROBE_BUDGET))
        .build_uninit();
    if uninit.feed_bytes(bytes).is_ok()
        && let Ok(InitializeResult::Initialized(image)) = uninit.try_init()
    {
        let metadata = &image.image_header().metadata;
        let format = image.pixel_format();
        header.colour_space = if format.is_grayscale() {
            ColourSpace::Gray
        } else {
            ColourSpace::Rgb
        };
        header.bit_depth = u8::try_from(metadata.bit_depth.bits_per_sample()).unwrap_or(32);
        header.alpha = format.has_alpha();
        header.orientation = Some(u8::try_from(metadata.orientation).unwrap_or(1));
    }
    Ok(header)
}

/// Width and height from the SizeHeader (ISO/IEC 18181-1 §A.3): the bare codestream after `FF 0A`,
/// or the same inside a container's first `jxlc`/`jxlp` box. Bits are read least significant first.
pub fn declared_size(bytes: &[u8]) -> Option<(u32, u32)> {
    let codestream = if bytes.starts_with(&[0xFF, 0x0A]) {
        bytes
    } else {
        match crate::heif::top_level_box(bytes, b"jxlc") {
            Some(body) => body,
            None => crate::heif::top_level_box(bytes, b"jxlp")?.get(4..)?,
        }
    };
    let data = codestream.strip_prefix(&[0xFF, 0x0A])?;
    let mut bit = 0usize;
    let mut read = |n: usize| -> Option<u64> {
        let mut value = 0u64;
        for i in 0..n {
            let byte = *data.get((bit + i) / 8)?;
            value |= u64::from((byte >> ((bit + i) % 8)) & 1) << i;
        }
        bit += n;
        Some(value)
    };
    let small = read(1)? == 1;
    let dimension = |read: &mut dyn FnMut(usize) -> Option<u64>| -> Option<u64> {
        if small {
            return Some((read(5)? + 1) * 8);
        }
        let bits = [9, 13, 18, 30][read(2)? as usize];
        Some(read(bits)? + 1)
    };
    let height = dimension(&mut read)?;
    let ratio = read(3)?;
    let width = match ratio {
        0 => dimension(&mut read)?,
        1 => height,
        2 => height * 12 / 10,
        3 => height * 4 / 3,
        4 => height * 3 / 2,
        5 => height * 16 / 9,
        6 => height * 5 / 4,
        _ => height * 2,
    };
    Some((u32::try_from(width).ok()?, u32::try_from(height).ok()?))
}

/// Decodes the first keyframe to sRGB, in stored (unturned) order.
pub fn decode(bytes: &[u8], header: &Header, max_alloc: u64) -> Result<Pixels> {
    let budget = usize::try_from(max_alloc).unwrap_or(usize::MAX);
    let mut image = open(bytes, budget)?;
    image.set_cms(Moxcms);
    image.request_color_encoding(EnumColourEncoding::srgb(RenderingIntent::Relative));
    let render = image
        .render_frame(0)
        .map_err(|e| jxl_error("decode the JPEG XL image", e))?;
    let buffer = render.image_all_channels();
    let (width, height, channels) = (buffer.width(), buffer.height(), buffer.channels());
    let alpha = header.alpha && (channels == 2 || channels >= 4);
    let grey = channels <= 2;
    let out_channels = if alpha { 4 } else { 3 };
    let to_u8 = |v: f32| (v * 255.0 + 0.5).clamp(0.0, 255.0) as u8;
    let mut data = Vec::with_capacity(width * height * out_channels);
    for px in buffer.buf().chunks_exact(channels) {
        if grey {
            let g = to_u8(px[0]);
            data.extend_from_slice(&[g, g, g]);
            if alpha {
                data.push(to_u8(px[1]));
            }
        } else {
            data.extend(px[..3].iter().map(|&v| to_u8(v)));
            if alpha {
                data.push(to_u8(px[3]));
            }
        }
    }
    let pixels = Pixels::new(width as u32, height as u32, out_channels as u8, data);
    // Undo jxl-oxide's turn so the orient step applies it once (6 and 8 are each other's inverse,
    // the other orientations their own).
    let stored = match header.orientation.unwrap_or(1) {
        6 => orient(pixels, 8),
        8 => orient(pixels, 6),
        other => orient(pixels, other),
    };
    Ok(stored.drop_opaque_alpha())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_size_header_of_real_and_hostile_files() {
        let fixture = crate::testing::fixture;
        assert_eq!(
            declared_size(&fixture("crafted_jxl_lossy.jxl")),
            Some((640, 480))
        );
        assert_eq!(
            declared_size(&fixture("bomb_jxl_header_100000x100000.jxl")),
            Some((100_000, 100_000))
        );
        // "small" form (multiples of 8) with a 16:9 ratio: div8 1, h_div8 − 1 = 8 → 72; ratio 5.
        let small = [0xFF, 0x0A, 0b0101_0001, 0b0000_0001];
        assert_eq!(declared_size(&small), Some((128, 72)));
        for cut in 0..6 {
            let _ = declared_size(&fixture("crafted_jxl_lossy.jxl")[..cut]);
        }
    }
}
