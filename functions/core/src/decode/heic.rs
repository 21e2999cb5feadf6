//! HEIC/HEIF (HEVC) through heic-decoder: pure Rust, grids (iPhone tiles) assembled by the decoder,
//! 8- and 10-bit, alpha auxiliary images, ICC or `nclx` colour, EXIF from the `Exif` item.
//!
//! Orientation is applied exactly once, by the pipeline's orient step: the decoder returns pixels as
//! coded and [`probe`] reports HEIF's `irot`/`imir` as the equivalent EXIF orientation, which the
//! pipeline uses instead of the EXIF Orientation tag (iPhones write both, describing the same turn).
//! Only when the item also has a `clap` crop does the decoder apply all transforms itself (crop
//! before turn) and the pipeline turns nothing.
//!
//! A HEIF file whose primary item is AV1 without an AVIF brand is decoded by [`super::avif`].

use crate::cicp::{self, ToSrgb};
use crate::colour::ColourSpace;
use crate::error::{PipelineError, Result};
use crate::format::SourceFormat;
use crate::heif::{self, Colour};
use crate::pixels::Pixels;
use crate::probe::Header;

/// Maps a heic-decoder error to a pipeline error (limits → over_limit, unsupported → unsupported,
/// everything else → corrupt).
fn heic_error(action: &str, error: heic_decoder::HeifError) -> PipelineError {
    use heic_decoder::HeifError as E;
    match error {
        E::LimitExceeded(what) => PipelineError::over_limit(format!(
            "could not {action}: {what}; the HEIC image is larger than the decoder allows"
        )),
        E::Unsupported(what) => PipelineError::unsupported(format!(
            "could not {action}: unsupported HEIC feature ({what}); re-save it as JPEG or a plain HEIC"
        )),
        other => PipelineError::corrupt(format!(
            "could not {action}: {other}; the HEIC file is truncated or corrupt, upload it again"
        )),
    }
}

/// Reads size, depth, alpha, colour and orientation from the boxes and the HEVC parameter sets.
pub fn probe(bytes: &[u8]) -> Result<Header> {
    let container = heif::parse(bytes)?;
    if &container.primary.kind == b"av01" {
        return super::avif::probe(bytes);
    }
    let info = heic_decoder::probe(bytes).map_err(|e| heic_error("read the HEIC header", e))?;
    let orientation = heif::orientation(&container.primary.properties.transforms);
    let (width, height) = match orientation {
        Some(_) => (info.coded_width, info.coded_height),
        None => (info.width, info.height), // clap: the decoder applies every transform
    };
    let dim =
        |v: usize| u32::try_from(v).map_err(|_| PipelineError::corrupt("HEIC size overflows"));
    let properties = &container.primary.properties;
    let (icc_profile, cicp) = colour_of(properties.colour.as_ref());
    // heic-decoder keeps every sample as i32: luma 4 bytes, chroma 2 (4:2:0) to 8 (4:4:4), alpha 4;
    // a grid holds its tiles and the canvas at once; then the 16-bit RGBA conversion (8 bytes).
    let chroma = match info.chroma_format_idc {
        0 => 0.0,
        1 => 2.0,
        2 => 4.0,
        _ => 8.0,
    };
    let planes = 4.0
        + chroma
        + if info.alpha_bit_depth.is_some() {
            4.0
        } else {
            0.0
        };
    let grid = if container.grid.is_some() { 2.0 } else { 1.0 };
    Ok(Header {
        format: SourceFormat::Heic,
        width: dim(width)?,
        height: dim(height)?,
        progressive: false,
        lossless: false,
        colour_space: if info.chroma_format_idc == 0 {
            ColourSpace::Gray
        } else {
            ColourSpace::Rgb
        },
        bit_depth: u8::try_from(info.bit_depth_luma).unwrap_or(16),
        alpha: info.alpha_bit_depth.is_some(),
        frames: 1,
        working_bytes_per_pixel: planes * grid + 8.0,
        icc_profile,
        cicp,
        orientation: Some(orientation.unwrap_or(1)),
        gain_map: false,
    })
}

/// ICC profile, or code points when the item is described by `nclx` only.
pub(super) fn colour_of(colour: Option<&Colour>) -> (Option<Vec<u8>>, Option<heif::Cicp>) {
    match colour {
        Some(Colour::Icc(icc)) => (Some(icc.clone()), None),
        Some(Colour::Nclx(cicp)) => (None, Some(*cicp)),
        None => (None, None),
    }
}

/// Decodes the primary image as coded (or fully transformed when it has a `clap` crop).
pub fn decode(bytes: &[u8], header: &Header) -> Result<Pixels> {
    let container = heif::parse(bytes)?;
    if &container.primary.kind == b"av01" {
        return super::avif::decode(bytes, header);
    }
    let apply_transforms = heif::orientation(&container.primary.properties.transforms).is_none();
    let options = heic_decoder::DecodeOptions { apply_transforms };
    let image =
        heic_decoder::decode_with(bytes, &options).map_err(|e| heic_error("decode the HEIC", e))?;
    let (width, height) = (image.width as u32, image.height as u32);
    if (width, height) != (header.width, header.height) {
        return Err(PipelineError::corrupt(format!(
            "HEIC decodes to {width}x{height} but its header says {}x{}; the file is corrupt",
            header.width, header.height
        )));
    }
    let alpha = image.alpha.is_some();
    // Code points from the container or, failing that, the HEVC VUI; never when an ICC profile
    // describes the colour (the profile is applied later).
    let cicp = match header.icc_profile {
        Some(_) => None,
        None => image.color_info.map(|c| heif::Cicp {
            primaries: c.color_primaries,
            transfer: c.transfer_characteristics,
            matrix: c.matrix_coefficients,
            full_range: c.full_range,
        }),
    };
    let convert = cicp.filter(|c| !cicp::is_srgb(c));
    let (channels, data, premultiplied) = if image.bit_depth_luma <= 8 && convert.is_none() {
        if alpha {
            let rgba = image
                .to_rgba8()
                .map_err(|e| heic_error("convert the HEIC to RGB", e))?;
            (4u8, rgba.data, rgba.premultiplied)
        } else {
            let rgb = image
                .to_rgb8()
                .map_err(|e| heic_error("convert the HEIC to RGB", e))?;
            (3, rgb.data, false)
        }
    } else {
        let (channels, samples, premultiplied) = if alpha {
            let rgba = image
                .to_rgba16()
                .map_err(|e| heic_error("convert the HEIC to RGB", e))?;
            (4u8, rgba.data, rgba.premultiplied)
        } else {
            let rgb = image
                .to_rgb16()
                .map_err(|e| heic_error("convert the HEIC to RGB", e))?;
            (3, rgb.data, false)
        };
        drop(image);
        let to_srgb = ToSrgb::new(&convert.unwrap_or(cicp::SRGB));
        (
            channels,
            to_srgb.convert(&samples, usize::from(channels)),
            premultiplied,
        )
    };
    let mut pixels = Pixels::new(width, height, channels, data);
    if premultiplied {
        pixels = pixels.unpremultiply();
    }
    Ok(if alpha {
        pixels.drop_opaque_alpha()
    } else {
        pixels
    })
}
