//! AVIF (AV1 still images): the HEIF boxes through [`crate::heif`], the AV1 data through [`super::av1`]
//! (rav1d), then Y'CbCr → sRGB through [`crate::cicp`] in one pass per pixel.
//!
//! - Limits come from `ispe` (or the grid's canvas) before any AV1 data is touched, and dav1d is
//!   told the same pixel budget, so a frame header that lies is refused too.
//! - 8-, 10- and 12-bit; 4:0:0, 4:2:0 (chroma taken from the co-sited sample), 4:2:2, 4:4:4.
//! - Colour: an ICC profile (`colr` `prof`) is applied later like any profile; `nclx` (or, without
//!   `colr`, the sequence header's code points) is converted here, PQ/HLG tone-mapped.
//! - Alpha auxiliary images (full or limited range; `prem` un-premultiplied).
//! - Grids of AV1 tiles are assembled; `irot`/`imir` are reported as an EXIF orientation for the
//!   orient step, like HEIC. A `clap` crop is ignored (rare in AVIF; the full frame is kept).

use crate::cicp::{self, ToSrgb, YcbcrToRgb};
use crate::colour::ColourSpace;
use crate::error::{PipelineError, Result};
use crate::format::SourceFormat;
use crate::heif::{self, Container, Item, Transform};
use crate::pixels::Pixels;
use crate::probe::Header;

use super::av1::{self, Frame, Layout};

fn unsupported_item(kind: &[u8; 4]) -> PipelineError {
    PipelineError::unsupported(format!(
        "the image's primary item is '{}', not an AV1 or HEVC image",
        String::from_utf8_lossy(kind)
    ))
}

/// Reads size, depth, alpha, colour and orientation from the boxes only.
pub fn probe(bytes: &[u8]) -> Result<Header> {
    let container = heif::parse(bytes)?;
    let primary = &container.primary;
    match &primary.kind {
        b"av01" => {}
        b"grid" => {
            if let Some(first) = container.grid.as_ref().and_then(|g| g.tiles.first())
                && container.item(*first).map(|i| &i.kind) != Some(b"av01")
            {
                return Err(unsupported_item(b"grid"));
            }
        }
        other => return Err(unsupported_item(other)),
    }
    let (width, height) = container.coded_size().ok_or_else(|| {
        PipelineError::corrupt("AVIF image has no size (ispe); the file is corrupt")
    })?;
    let tile = match &container.grid {
        Some(grid) => grid
            .tiles
            .first()
            .and_then(|id| container.item(*id))
            .map(|i| &i.properties),
        None => Some(&primary.properties),
    };
    let bit_depth = tile.and_then(|p| p.bit_depth).unwrap_or(8);
    let monochrome = tile.is_some_and(|p| p.monochrome);
    let (icc_profile, cicp) = super::heic::colour_of(primary.properties.colour.as_ref());
    let alpha = container.alpha.is_some();
    // dav1d's picture (16-bit storage above 8 bits, 4:4:4 worst case) and imgpipe's u16 copy of it.
    let sample = if bit_depth > 8 { 2.0 } else { 1.0 };
    let working = 3.0 * sample + 6.0 + if alpha { sample + 2.0 } else { 0.0 };
    Ok(Header {
        format: SourceFormat::Avif,
        width,
        height,
        progressive: false,
        lossless: false,
        colour_space: if monochrome {
            ColourSpace::Gray
        } else {
            ColourSpace::Rgb
        },
        bit_depth,
        alpha,
        frames: 1,
        working_bytes_per_pixel: working,
        icc_profile,
        cicp,
        orientation: Some(orientation(&primary.properties.transforms)),
        gain_map: false,
    })
}

fn orientation(transforms: &[Transform]) -> u8 {
    let turns: Vec<Transform> = transforms
        .iter()
        .copied()
        .filter(|t| *t != Transform::CleanAperture)
        .collect();
    heif::orientation(&turns).unwrap_or(1)
}

/// Decodes the primary image (as coded; the orient step turns it).
pub fn decode(bytes: &[u8], header: &Header) -> Result<Pixels> {
    let container = heif::parse(bytes)?;
    let budget = u64::from(header.width) * u64::from(header.height);
    let colour = decode_colour(&container, header, budget)?;
    let Some(alpha_item) = &container.alpha else {
        return Ok(colour);
    };
    let alpha = decode_alpha(&container, alpha_item, budget)?;
    if alpha.width < colour.width || alpha.height < colour.height {
        return Err(PipelineError::unsupported(format!(
            "AVIF alpha is {}x{} but the image is {}x{}; scaled alpha is not supported",
            alpha.width, alpha.height, colour.width, colour.height
        )));
    }
    let mut rgba = Vec::with_capacity(colour.pixel_count() as usize * 4);
    for (y, row) in colour.data.chunks_exact(colour.stride()).enumerate() {
        let alpha_row = &alpha.values[y * alpha.width as usize..];
        for (x, px) in row.chunks_exact(3).enumerate() {
            rgba.extend_from_slice(px);
            rgba.push(alpha_row[x]);
        }
    }
    let pixels = Pixels::new(colour.width, colour.height, 4, rgba);
    let pixels = if container.premultiplied {
        pixels.unpremultiply()
    } else {
        pixels
    };
    Ok(pixels.drop_opaque_alpha())
}

/// The colour image at the header's size, in sRGB (nclx) or as stored (ICC).
fn decode_colour(container: &Container<'_>, header: &Header, budget: u64) -> Result<Pixels> {
    let (width, height) = (header.width, header.height);
    let mut out = vec![0u8; width as usize * height as usize * 3];
    let tiles: Vec<(u32, u32, u32)> = match &container.grid {
        None => vec![(container.primary.id, 0, 0)],
        Some(grid) => grid
            .tiles
            .iter()
            .enumerate()
            .map(|(i, &id)| (id, i as u32 / grid.columns, i as u32 % grid.columns))
            .collect(),
    };
    let properties = &container.primary.properties;
    let mut converters: Option<(YcbcrToRgb, ToSrgb, u8)> = None;
    for (id, row, column) in tiles {
        let frame = av1::decode(&container.data(id)?, budget)?;
        let (tw, th) = (frame.width, frame.height);
        if container.grid.is_none() && (tw < width || th < height) {
            return Err(PipelineError::corrupt(format!(
                "AVIF frame is {tw}x{th} but its ispe says {width}x{height}; the file is corrupt"
            )));
        }
        // Matrix and range: nclx when present, else the sequence header. Primaries and transfer:
        // converted here only without an ICC profile.
        let matrix = properties.nclx.unwrap_or(frame.cicp);
        let conversion = match header.icc_profile {
            Some(_) => cicp::SRGB,
            None => header.cicp.unwrap_or(frame.cicp),
        };
        let (ycbcr, to_srgb, _) = converters.get_or_insert_with(|| {
            (
                YcbcrToRgb::new(&matrix, frame.bit_depth),
                ToSrgb::new(&conversion),
                frame.bit_depth,
            )
        });
        let (x0, y0) = (column * tw, row * th);
        write_tile(&frame, ycbcr, to_srgb, &mut out, width, height, x0, y0);
    }
    Ok(Pixels::new(width, height, 3, out))
}

/// Converts one decoded frame into `out` (a `width`×`height` RGB canvas) at (`x0`, `y0`), cropped to
/// the canvas.
#[allow(clippy::too_many_arguments)]
fn write_tile(
    frame: &Frame,
    ycbcr: &YcbcrToRgb,
    to_srgb: &ToSrgb,
    out: &mut [u8],
    width: u32,
    height: u32,
    x0: u32,
    y0: u32,
) {
    let (sx, sy) = frame.layout.shift();
    let (cw, _) = frame.chroma_size();
    let mid = 1u16 << (frame.bit_depth.clamp(8, 15) - 1);
    let [luma, cb, cr] = &frame.planes;
    let visible_w = frame.width.min(width.saturating_sub(x0));
    let visible_h = frame.height.min(height.saturating_sub(y0));
    for y in 0..visible_h {
        let luma_row = &luma[(y * frame.width) as usize..];
        let chroma_row = ((y >> sy) * cw) as usize;
        let out_row = ((y0 + y) as usize * width as usize + x0 as usize) * 3;
        for x in 0..visible_w {
            let (u, v) = if frame.layout == Layout::Monochrome {
                (mid, mid)
            } else {
                let at = chroma_row + (x >> sx) as usize;
                (cb[at], cr[at])
            };
            let rgb = to_srgb.pixel(ycbcr.pixel(luma_row[x as usize], u, v));
            let at = out_row + x as usize * 3;
            out[at..at + 3].copy_from_slice(&rgb);
        }
    }
}

struct Alpha {
    width: u32,
    height: u32,
    values: Vec<u8>,
}

fn decode_alpha(container: &Container<'_>, item: &Item, budget: u64) -> Result<Alpha> {
    if &item.kind != b"av01" {
        return Err(PipelineError::unsupported(
            "AVIF alpha stored as a grid is not supported; re-save the image without tiling",
        ));
    }
    let frame = av1::decode(&container.data(item.id)?, budget)?;
    let depth = frame.bit_depth.clamp(8, 15);
    let max = f32::from((1u16 << depth) - 1);
    let unit = f32::from(1u16 << (depth - 8));
    let (offset, scale) = if frame.cicp.full_range {
        (0.0, 255.0 / max)
    } else {
        (16.0 * unit, 255.0 / (219.0 * unit))
    };
    let values = frame.planes[0]
        .iter()
        .map(|&v| ((f32::from(v) - offset) * scale).round().clamp(0.0, 255.0) as u8)
        .collect();
    Ok(Alpha {
        width: frame.width,
        height: frame.height,
        values,
    })
}
