//! Encoders: JPEG (libjpeg-turbo), lossy WebP (libwebp 1.5), PNG. Outputs carry no EXIF, XMP or ICC
//! chunks: nothing from the source (GPS included) leaks into a derivative.

use turbojpeg::{Compressor, Image, PixelFormat, Subsamp};

use crate::error::{PipelineError, Result};
use crate::pixels::Pixels;
use crate::preset::{ChromaSubsampling, OutputFormat, Preset};

/// Encodes `pixels` as `preset.format`. JPEG output of RGBA pixels is flattened onto `background`.
pub fn encode(pixels: Pixels, preset: &Preset, background: [u8; 3]) -> Result<Vec<u8>> {
    match preset.format {
        OutputFormat::Jpeg => encode_jpeg(&pixels.flatten(background), preset),
        OutputFormat::Webp => encode_webp(&pixels, preset),
        OutputFormat::Png => encode_png(&pixels),
    }
}

fn encode_jpeg(pixels: &Pixels, preset: &Preset) -> Result<Vec<u8>> {
    let fail = |e: turbojpeg::Error| PipelineError::internal(format!("JPEG encoder: {e}"));
    let mut compressor = Compressor::new().map_err(fail)?;
    compressor
        .set_quality(i32::from(preset.quality))
        .map_err(fail)?;
    compressor
        .set_subsamp(match preset.chroma_subsampling {
            ChromaSubsampling::Yuv420 => Subsamp::Sub2x2,
            ChromaSubsampling::Yuv444 => Subsamp::None,
        })
        .map_err(fail)?;
    compressor.set_optimize(true).map_err(fail)?;
    compressor
        .set_progressive(preset.progressive)
        .map_err(fail)?;
    let image = Image {
        pixels: pixels.data.as_slice(),
        width: pixels.width as usize,
        pitch: pixels.stride(),
        height: pixels.height as usize,
        format: PixelFormat::RGB,
    };
    compressor.compress_to_vec(image).map_err(fail)
}

fn encode_webp(pixels: &Pixels, preset: &Preset) -> Result<Vec<u8>> {
    use libwebp_sys as webp;
    let fail = |what: &str| PipelineError::internal(format!("WebP encoder: {what}"));
    let mut config =
        webp::WebPConfig::new().map_err(|_| fail("config init (libwebp ABI mismatch)"))?;
    config.quality = f32::from(preset.quality);
    config.method = i32::from(preset.webp_method);
    if unsafe { webp::WebPValidateConfig(&config) } == 0 {
        return Err(fail("invalid config"));
    }
    let mut picture = webp::WebPPicture::new().map_err(|_| fail("picture init"))?;
    picture.width = pixels.width as i32;
    picture.height = pixels.height as i32;
    picture.use_argb = i32::from(pixels.has_alpha());
    let mut writer = std::mem::MaybeUninit::<webp::WebPMemoryWriter>::uninit();
    // SAFETY: libwebp's documented encode sequence. `picture` imports (copies) our buffer, the
    // memory writer owns its output until we copy it and clear both at the end, on every path.
    unsafe {
        webp::WebPMemoryWriterInit(writer.as_mut_ptr());
        let mut writer = writer.assume_init();
        let stride = pixels.stride() as i32;
        let imported = if pixels.has_alpha() {
            webp::WebPPictureImportRGBA(&mut picture, pixels.data.as_ptr(), stride)
        } else {
            webp::WebPPictureImportRGB(&mut picture, pixels.data.as_ptr(), stride)
        };
        if imported == 0 {
            webp::WebPPictureFree(&mut picture);
            return Err(fail("could not import pixels (out of memory?)"));
        }
        picture.writer = Some(webp::WebPMemoryWrite);
        picture.custom_ptr = (&mut writer as *mut webp::WebPMemoryWriter).cast();
        let ok = webp::WebPEncode(&config, &mut picture);
        let error_code = picture.error_code;
        let result = if ok != 0 {
            Ok(std::slice::from_raw_parts(writer.mem, writer.size).to_vec())
        } else {
            Err(fail(&format!("encode failed ({error_code:?})")))
        };
        webp::WebPMemoryWriterClear(&mut writer);
        webp::WebPPictureFree(&mut picture);
        result
    }
}

fn encode_png(pixels: &Pixels) -> Result<Vec<u8>> {
    use image::ImageEncoder;
    use image::codecs::png::{CompressionType, FilterType, PngEncoder};
    let mut out = Vec::new();
    let color = if pixels.has_alpha() {
        image::ExtendedColorType::Rgba8
    } else {
        image::ExtendedColorType::Rgb8
    };
    PngEncoder::new_with_quality(&mut out, CompressionType::Default, FilterType::Adaptive)
        .write_image(&pixels.data, pixels.width, pixels.height, color)
        .map_err(|e| PipelineError::internal(format!("PNG encoder: {e}")))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::preset::PresetSet;

    fn preset(format: &str) -> Preset {
        PresetSet::from_toml(&format!(
            "[[preset]]\nname='x'\nwidth=10\nformat='{format}'"
        ))
        .unwrap()
        .presets()[0]
            .clone()
    }

    fn gradient(channels: u8) -> Pixels {
        let data = (0..32 * 16)
            .flat_map(|i| {
                [(i % 256) as u8, 128, 255 - (i % 256) as u8, 200][..channels as usize].to_vec()
            })
            .collect();
        Pixels::new(32, 16, channels, data)
    }

    #[test]
    fn each_format_writes_its_magic_and_decodes_back() {
        for (format, magic, alpha) in [
            ("jpeg", &b"\xFF\xD8\xFF"[..], false),
            ("webp", &b"RIFF"[..], true),
            ("png", &b"\x89PNG"[..], true),
        ] {
            let bytes = encode(gradient(4), &preset(format), [255, 255, 255]).unwrap();
            assert!(bytes.starts_with(magic), "{format}");
            let header = crate::probe::probe(&bytes).unwrap();
            let back = crate::decode::decode(&bytes, &header, 1).unwrap();
            assert_eq!((back.width, back.height), (32, 16), "{format}");
            assert_eq!(back.has_alpha(), alpha, "{format}");
        }
    }

    #[test]
    fn outputs_carry_no_exif() {
        for format in ["jpeg", "webp", "png"] {
            let bytes = encode(gradient(3), &preset(format), [0, 0, 0]).unwrap();
            assert!(
                !bytes.windows(4).any(|w| w == b"Exif"),
                "{format} output has EXIF"
            );
        }
    }
}
