//! Encoders: JPEG (libjpeg-turbo, or jpegli per preset: [`crate::jpegli`]), lossy WebP and animated
//! WebP (libwebp 1.5), PNG. Outputs carry no EXIF, XMP or ICC data: nothing from the source (GPS included) leaks into a derivative. Pixels are sRGB
//! by then; PNG says so with a 13-byte `sRGB` chunk, JPEG and WebP carry no profile, which their
//! specifications and every browser read as sRGB (an embedded profile would add ~3 KB to a 1 KB thumbnail).

use turbojpeg::{Compressor, Image, PixelFormat, Subsamp};

use crate::error::{PipelineError, Result};
use crate::pixels::Pixels;
use crate::preset::{ChromaSubsampling, JpegEncoder, OutputFormat, Preset};

/// Encodes `pixels` as `preset.format` at the preset's quality: its fixed quality, or for a
/// perceptual target the quality [`crate::auto_quality`] finds for these pixels. JPEG output of RGBA
/// pixels is flattened onto `background`.
pub fn encode(pixels: Pixels, preset: &Preset, background: [u8; 3]) -> Result<Vec<u8>> {
    Ok(crate::auto_quality::encode(&pixels, preset, background)?.bytes)
}

/// Encodes `pixels` as `preset.format` at encoder `quality` (1–100), whatever the preset's quality
/// says: one trial of a quality search.
pub fn encode_at(
    pixels: &Pixels,
    preset: &Preset,
    quality: u8,
    background: [u8; 3],
) -> Result<Vec<u8>> {
    match preset.format {
        OutputFormat::Jpeg if pixels.has_alpha() => {
            encode_jpeg(&pixels.clone().flatten(background), preset, quality)
        }
        OutputFormat::Jpeg => encode_jpeg(pixels, preset, quality),
        OutputFormat::Webp => encode_webp(pixels, preset, quality),
        OutputFormat::Png => encode_png(pixels),
        OutputFormat::Avif => encode_avif(pixels, preset, quality),
    }
}

/// AVIF through ravif (rav1e): one thread (images already run one per core), 8-bit 4:4:4 YCbCr
/// (ravif always keeps full-resolution chroma; a 4:2:0 encode through rav1e directly measured no
/// better, see docs/benchmarks.md),
/// `nclx` 1/13/6 (BT.709 primaries, sRGB transfer, BT.601 matrix, full range); alpha, when
/// present, as an auxiliary image at the same quality.
fn encode_avif(pixels: &Pixels, preset: &Preset, quality: u8) -> Result<Vec<u8>> {
    use rgb::FromSlice;
    let quality = f32::from(quality);
    let encoder = ravif::Encoder::new()
        .with_quality(quality)
        .with_alpha_quality(quality)
        .with_speed(preset.speed.unwrap_or(crate::preset::DEFAULT_AVIF_SPEED))
        .with_bit_depth(ravif::BitDepth::Eight)
        .with_num_threads(Some(1));
    let (w, h) = (pixels.width as usize, pixels.height as usize);
    let encoded = if pixels.has_alpha() {
        encoder.encode_rgba(ravif::Img::new(pixels.data.as_rgba(), w, h))
    } else {
        encoder.encode_rgb(ravif::Img::new(pixels.data.as_rgb(), w, h))
    };
    encoded
        .map(|e| e.avif_file)
        .map_err(|e| PipelineError::internal(format!("AVIF encoder: {e}")))
}

fn encode_jpeg(pixels: &Pixels, preset: &Preset, quality: u8) -> Result<Vec<u8>> {
    if preset.encoder == JpegEncoder::Jpegli {
        let subsampling = preset.chroma_subsampling;
        return crate::jpegli::encode(pixels, quality, subsampling, preset.progressive);
    }
    let fail = |e: turbojpeg::Error| PipelineError::internal(format!("JPEG encoder: {e}"));
    let mut compressor = Compressor::new().map_err(fail)?;
    compressor.set_quality(i32::from(quality)).map_err(fail)?;
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

fn encode_webp(pixels: &Pixels, preset: &Preset, quality: u8) -> Result<Vec<u8>> {
    use libwebp_sys as webp;
    let fail = webp_error;
    let config = webp_config(preset, quality)?;
    let mut picture = new_picture(pixels, preset.webp_sharp_yuv)?;
    let mut writer = std::mem::MaybeUninit::<webp::WebPMemoryWriter>::uninit();
    // SAFETY: libwebp's documented encode sequence. `picture` owns a copy of our pixels, the memory
    // writer owns its output until we copy it; both are cleared at the end, on every path.
    unsafe {
        webp::WebPMemoryWriterInit(writer.as_mut_ptr());
        let mut writer = writer.assume_init();
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

fn webp_error(what: &str) -> PipelineError {
    PipelineError::internal(format!("WebP encoder: {what}"))
}

fn webp_config(preset: &Preset, quality: u8) -> Result<libwebp_sys::WebPConfig> {
    use libwebp_sys as webp;
    let mut config =
        webp::WebPConfig::new().map_err(|_| webp_error("config init (libwebp ABI mismatch)"))?;
    config.quality = f32::from(quality);
    config.method = i32::from(preset.webp_method);
    config.use_sharp_yuv = i32::from(preset.webp_sharp_yuv);
    config.thread_level = i32::from(preset.webp_multithread);
    if unsafe { webp::WebPValidateConfig(&config) } == 0 {
        return Err(webp_error("invalid config"));
    }
    Ok(config)
}

/// A libwebp picture holding a copy of `pixels`: ARGB when there is alpha or when `sharp_yuv` (the
/// RGB→YUV conversion then happens inside `WebPEncode`, which honours `use_sharp_yuv`; an RGB import
/// converts at once with the plain method). Free with `WebPPictureFree`.
fn new_picture(pixels: &Pixels, sharp_yuv: bool) -> Result<libwebp_sys::WebPPicture> {
    use libwebp_sys as webp;
    let mut picture = webp::WebPPicture::new().map_err(|_| webp_error("picture init"))?;
    picture.width = pixels.width as i32;
    picture.height = pixels.height as i32;
    picture.use_argb = i32::from(pixels.has_alpha() || sharp_yuv);
    let stride = pixels.stride() as i32;
    // SAFETY: the import copies `stride × height` bytes from our buffer, which is exactly its size.
    let imported = unsafe {
        if pixels.has_alpha() {
            webp::WebPPictureImportRGBA(&mut picture, pixels.data.as_ptr(), stride)
        } else {
            webp::WebPPictureImportRGB(&mut picture, pixels.data.as_ptr(), stride)
        }
    };
    if imported == 0 {
        unsafe { webp::WebPPictureFree(&mut picture) };
        return Err(webp_error("could not import pixels (out of memory?)"));
    }
    Ok(picture)
}

/// Builds an animated WebP frame by frame with libwebp's `WebPAnimEncoder`, which stores each frame
/// as the smallest changed sub-rectangle. Loops forever, like the source animations browsers show.
pub struct AnimatedWebp {
    encoder: *mut libwebp_sys::WebPAnimEncoder,
    config: libwebp_sys::WebPConfig,
    timestamp_ms: i32,
    frames: u32,
}

impl AnimatedWebp {
    /// Starts an animation of `width`×`height` frames encoded with `preset`'s quality and method.
    pub fn new(width: u32, height: u32, preset: &Preset) -> Result<Self> {
        use libwebp_sys as webp;
        // Animated presets take a fixed quality (validated in `preset`).
        let config = webp_config(preset, preset.quality.fixed().unwrap_or(80))?;
        let mut options = std::mem::MaybeUninit::<webp::WebPAnimEncoderOptions>::zeroed();
        // SAFETY: libwebp initialises the options struct; the encoder copies what it needs.
        let encoder = unsafe {
            if webp::WebPAnimEncoderOptionsInitInternal(
                options.as_mut_ptr(),
                webp::WEBP_MUX_ABI_VERSION as i32,
            ) == 0
            {
                return Err(webp_error("animation options init (libwebp ABI mismatch)"));
            }
            let mut options = options.assume_init();
            options.anim_params.loop_count = 0;
            options.allow_mixed = 0;
            webp::WebPAnimEncoderNewInternal(
                width as i32,
                height as i32,
                &options,
                webp::WEBP_MUX_ABI_VERSION as i32,
            )
        };
        if encoder.is_null() {
            return Err(webp_error("could not create the animation encoder"));
        }
        Ok(Self {
            encoder,
            config,
            timestamp_ms: 0,
            frames: 0,
        })
    }

    /// Adds a frame shown for `duration_ms`.
    pub fn add(&mut self, frame: &Pixels, duration_ms: u32) -> Result<()> {
        let mut picture = new_picture(frame, false)?;
        // SAFETY: `encoder` is live until drop; the encoder copies the picture before we free it.
        let ok = unsafe {
            let ok = libwebp_sys::WebPAnimEncoderAdd(
                self.encoder,
                &mut picture,
                self.timestamp_ms,
                &self.config,
            );
            libwebp_sys::WebPPictureFree(&mut picture);
            ok
        };
        if ok == 0 {
            return Err(webp_error(&format!("adding frame {} failed", self.frames)));
        }
        self.frames += 1;
        self.timestamp_ms = self
            .timestamp_ms
            .saturating_add(duration_ms.clamp(10, 65_535) as i32);
        Ok(())
    }

    /// Frames added so far.
    pub fn frames(&self) -> u32 {
        self.frames
    }

    /// Finishes the animation and returns the WebP file.
    pub fn finish(self) -> Result<Vec<u8>> {
        use libwebp_sys as webp;
        // SAFETY: a null frame marks the end; `data` is owned by libwebp until WebPDataClear.
        unsafe {
            let flushed = webp::WebPAnimEncoderAdd(
                self.encoder,
                std::ptr::null_mut(),
                self.timestamp_ms,
                std::ptr::null(),
            );
            let mut data = webp::WebPData {
                bytes: std::ptr::null(),
                size: 0,
            };
            if flushed == 0 || webp::WebPAnimEncoderAssemble(self.encoder, &mut data) == 0 {
                return Err(webp_error("assembling the animation failed"));
            }
            let bytes = std::slice::from_raw_parts(data.bytes, data.size).to_vec();
            webp::WebPDataClear(&mut data);
            Ok(bytes)
        }
    }
}

impl Drop for AnimatedWebp {
    fn drop(&mut self) {
        // SAFETY: created by WebPAnimEncoderNewInternal and deleted exactly once.
        unsafe { libwebp_sys::WebPAnimEncoderDelete(self.encoder) };
    }
}

fn encode_png(pixels: &Pixels) -> Result<Vec<u8>> {
    let fail = |e: png::EncodingError| PipelineError::internal(format!("PNG encoder: {e}"));
    let mut out = Vec::new();
    let mut encoder = png::Encoder::new(&mut out, pixels.width, pixels.height);
    encoder.set_color(if pixels.has_alpha() {
        png::ColorType::Rgba
    } else {
        png::ColorType::Rgb
    });
    encoder.set_depth(png::BitDepth::Eight);
    encoder.set_source_srgb(png::SrgbRenderingIntent::Perceptual);
    encoder.set_compression(png::Compression::Balanced);
    let mut writer = encoder.write_header().map_err(fail)?;
    writer.write_image_data(&pixels.data).map_err(fail)?;
    writer.finish().map_err(fail)?;
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
    fn sharp_yuv_changes_the_webp_encode() {
        // Sharp chroma edges: red/blue stripes one pixel wide, where plain 4:2:0 averaging blurs.
        let data = (0..64 * 64)
            .flat_map(|i| {
                if i % 2 == 0 {
                    [230, 20, 30]
                } else {
                    [20, 40, 220]
                }
            })
            .collect();
        let stripes = Pixels::new(64, 64, 3, data);
        let plain = preset("webp");
        let sharp = Preset {
            webp_sharp_yuv: true,
            ..plain.clone()
        };
        let a = encode_at(&stripes, &plain, 80, [255; 3]).unwrap();
        let b = encode_at(&stripes, &sharp, 80, [255; 3]).unwrap();
        assert_ne!(
            a, b,
            "use_sharp_yuv must reach libwebp's RGB->YUV conversion"
        );
    }

    #[test]
    fn webp_multithread_reaches_libwebp_and_keeps_the_bytes() {
        let plain = preset("webp");
        let threaded = Preset {
            webp_multithread: true,
            ..plain.clone()
        };
        assert_eq!(webp_config(&plain, 80).unwrap().thread_level, 0);
        assert_eq!(webp_config(&threaded, 80).unwrap().thread_level, 1);
        let pixels = gradient(3);
        assert_eq!(
            encode_at(&pixels, &plain, 80, [255; 3]).unwrap(),
            encode_at(&pixels, &threaded, 80, [255; 3]).unwrap(),
            "libwebp's threads change the time, not the output"
        );
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
            let back = crate::decode::decode(&bytes, &header, 1, None, 1 << 30).unwrap();
            assert_eq!((back.width, back.height), (32, 16), "{format}");
            assert_eq!(back.has_alpha(), alpha, "{format}");
        }
    }

    #[test]
    fn animated_webp_keeps_its_frames() {
        let mut animation = AnimatedWebp::new(32, 16, &preset("webp")).unwrap();
        for shade in [0u8, 120, 240] {
            let mut frame = gradient(4);
            frame.data.iter_mut().step_by(4).for_each(|r| *r = shade);
            animation.add(&frame, 100).unwrap();
        }
        assert_eq!(animation.frames(), 3);
        let bytes = animation.finish().unwrap();
        assert_eq!(crate::probe::webp_frame_count(&bytes), 3);
        assert!(bytes.windows(4).any(|w| w == b"ANIM"));
    }

    #[test]
    fn png_is_tagged_srgb() {
        let bytes = encode(gradient(3), &preset("png"), [0, 0, 0]).unwrap();
        assert!(bytes.windows(4).any(|w| w == b"sRGB"));
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
