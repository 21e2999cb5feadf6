//! JPEG through jpegli (libjxl's encoder behind the libjpeg API, via `jpegli-sys`), for presets with
//! `encoder = "jpegli"`. Settings as `cjpegli -q`: the libjpeg quality maps to a butteraugli distance
//! (`jpegli_quality_to_distance`), adaptive quantisation on, Huffman tables optimised, progressive
//! level 2 when the preset is progressive (else one sequential scan), and the preset's chroma
//! subsampling (jpegli's own default is 4:4:4). The output is an ordinary baseline/progressive JPEG
//! that any decoder reads.
//!
//! Errors: jpegli reports them through `error_exit`, whose libjpeg default exits the process. Here it
//! unwinds (the binding declares its callbacks `C-unwind`) with the message jpegli formatted, the
//! unwind is caught around the encode, and the compressor and its output buffer are freed either way.

use std::ffi::CStr;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};

use jpegli_sys as sys;

use crate::error::{PipelineError, Result};
use crate::pixels::Pixels;
use crate::preset::ChromaSubsampling;

unsafe extern "C-unwind" {
    fn jpegli_set_distance(
        cinfo: &mut sys::jpegli_compress_struct,
        distance: f32,
        force_baseline: sys::boolean,
    );
    fn jpegli_quality_to_distance(quality: std::os::raw::c_int) -> f32;
    fn jpegli_set_progressive_level(
        cinfo: &mut sys::jpegli_compress_struct,
        level: std::os::raw::c_int,
    );
}

/// jpegli's progressive script for `progressive = true` (cjpegli's default: DC, then AC bands with
/// successive approximation).
const PROGRESSIVE_LEVEL: i32 = 2;

/// What `error_exit` unwinds with: jpegli's message.
struct JpegliFailure(String);

/// Encodes 8-bit RGB `pixels` (3 channels) at libjpeg `quality` 1–100.
pub fn encode(
    pixels: &Pixels,
    quality: u8,
    subsampling: ChromaSubsampling,
    progressive: bool,
) -> Result<Vec<u8>> {
    if pixels.channels != 3 {
        return Err(PipelineError::internal(format!(
            "jpegli encoder: expects RGB pixels, got {} channels",
            pixels.channels
        )));
    }
    let mut compressor = Compressor::new();
    let (out, out_len) = (&mut compressor.out, &mut compressor.out_len);
    let cinfo = &mut *compressor.cinfo;
    let rows: Vec<sys::JSAMPROW> = pixels
        .data
        .chunks_exact(pixels.stride())
        .map(<[u8]>::as_ptr)
        .collect();
    let run = catch_unwind(AssertUnwindSafe(|| unsafe {
        sys::jpegli_mem_dest(cinfo, out, out_len);
        cinfo.image_width = pixels.width;
        cinfo.image_height = pixels.height;
        cinfo.input_components = 3;
        cinfo.in_color_space = sys::J_COLOR_SPACE::JCS_RGB;
        sys::jpegli_set_defaults(cinfo);
        jpegli_set_distance(
            cinfo,
            jpegli_quality_to_distance(i32::from(quality.clamp(1, 100))),
            0,
        );
        jpegli_set_progressive_level(cinfo, if progressive { PROGRESSIVE_LEVEL } else { 0 });
        cinfo.optimize_coding = 1;
        let luma = match subsampling {
            ChromaSubsampling::Yuv420 => 2,
            ChromaSubsampling::Yuv444 => 1,
        };
        let components = std::slice::from_raw_parts_mut(cinfo.comp_info, 3);
        components[0].h_samp_factor = luma;
        components[0].v_samp_factor = luma;
        for chroma in &mut components[1..] {
            chroma.h_samp_factor = 1;
            chroma.v_samp_factor = 1;
        }
        sys::jpegli_start_compress(cinfo, 1);
        let mut written = 0;
        while (written as usize) < rows.len() {
            let lines = sys::jpegli_write_scanlines(
                cinfo,
                rows[written as usize..].as_ptr(),
                pixels.height - written,
            );
            if lines == 0 {
                resume_unwind(Box::new(JpegliFailure("wrote no scanlines".into())));
            }
            written += lines;
        }
        sys::jpegli_finish_compress(cinfo);
    }));
    match run {
        Ok(()) => Ok(compressor.output().to_vec()),
        Err(payload) => match payload.downcast::<JpegliFailure>() {
            Ok(failure) => Err(PipelineError::internal(format!(
                "jpegli encoder: {}",
                failure.0
            ))),
            Err(other) => resume_unwind(other),
        },
    }
}

/// A jpegli compressor with its error manager and memory destination, destroyed (and the output
/// buffer jpegli allocated with `malloc` freed) on drop, whether the encode finished or unwound.
struct Compressor {
    cinfo: Box<sys::jpegli_compress_struct>,
    /// Boxed: jpegli keeps a pointer to it in `cinfo.common.err`.
    _error: Box<sys::jpegli_error_mgr>,
    out: *mut u8,
    out_len: std::os::raw::c_ulong,
}

impl Compressor {
    fn new() -> Self {
        // SAFETY: both structs are plain C data that jpegli initialises (`jpegli_std_error`,
        // `jpegli_CreateCompress`); all-zero is the state libjpeg expects before that.
        let mut error: Box<sys::jpegli_error_mgr> = Box::new(unsafe { std::mem::zeroed() });
        let mut cinfo: Box<sys::jpegli_compress_struct> = Box::new(unsafe { std::mem::zeroed() });
        unsafe {
            cinfo.common.err = sys::jpegli_std_error(&mut error);
            error.error_exit = Some(error_exit);
            error.output_message = Some(ignore_message);
            sys::jpegli_create_compress(&mut cinfo);
        }
        Compressor {
            cinfo,
            _error: error,
            out: std::ptr::null_mut(),
            out_len: 0,
        }
    }

    /// The encoded bytes after `jpegli_finish_compress`.
    fn output(&self) -> &[u8] {
        if self.out.is_null() {
            return &[];
        }
        // SAFETY: jpegli's memory destination leaves `out` pointing at `out_len` written bytes.
        unsafe { std::slice::from_raw_parts(self.out, self.out_len as usize) }
    }
}

impl Drop for Compressor {
    fn drop(&mut self) {
        // SAFETY: created in `new`; destroy frees jpegli's pools (not the output buffer, which
        // belongs to the caller of `jpegli_mem_dest` and was allocated with `malloc`).
        unsafe {
            sys::jpegli_destroy_compress(&mut self.cinfo);
            if !self.out.is_null() {
                libc::free(self.out.cast());
            }
        }
    }
}

/// `error_exit`: unwind to [`encode`] with jpegli's message (it formats it into `msg_parm.s`).
unsafe extern "C-unwind" fn error_exit(cinfo: &mut sys::jpegli_common_struct) {
    // SAFETY: jpegli calls this with the error manager installed in `Compressor::new`.
    let message = unsafe {
        let text = &(*cinfo.err).msg_parm.s;
        CStr::from_ptr(text.as_ptr()).to_string_lossy().into_owned()
    };
    resume_unwind(Box::new(JpegliFailure(message)));
}

/// `output_message`: jpegli's warnings (e.g. a too-small buffer hint) are not errors; no stderr noise.
unsafe extern "C-unwind" fn ignore_message(_: &mut sys::jpegli_common_struct) {}

#[cfg(test)]
mod tests {
    use super::*;

    fn photo_like(width: u32, height: u32) -> Pixels {
        let mut data = Vec::with_capacity((width * height * 3) as usize);
        for y in 0..height {
            for x in 0..width {
                let n = (x * 7 + y * 13) % 23;
                data.extend_from_slice(&[
                    (x * 255 / width) as u8,
                    (y * 255 / height) as u8,
                    (n * 11) as u8,
                ]);
            }
        }
        Pixels::new(width, height, 3, data)
    }

    #[test]
    fn writes_a_jpeg_that_decodes_to_the_same_size() {
        let pixels = photo_like(203, 101);
        for (subsampling, progressive) in [
            (ChromaSubsampling::Yuv420, false),
            (ChromaSubsampling::Yuv420, true),
            (ChromaSubsampling::Yuv444, true),
        ] {
            let bytes = encode(&pixels, 80, subsampling, progressive).unwrap();
            assert_eq!(&bytes[..3], &[0xFF, 0xD8, 0xFF]);
            let decoded = image::load_from_memory(&bytes).unwrap();
            assert_eq!((decoded.width(), decoded.height()), (203, 101));
            // SOF2 marks a progressive frame; SOF0/SOF1 a sequential one.
            let sof2 = bytes.windows(2).any(|w| w == [0xFF, 0xC2]);
            assert_eq!(
                sof2, progressive,
                "{subsampling:?} progressive={progressive}"
            );
        }
    }

    #[test]
    fn lower_quality_is_smaller() {
        let pixels = photo_like(160, 120);
        let low = encode(&pixels, 40, ChromaSubsampling::Yuv420, false)
            .unwrap()
            .len();
        let high = encode(&pixels, 90, ChromaSubsampling::Yuv420, false)
            .unwrap()
            .len();
        assert!(low < high, "q40 {low} bytes, q90 {high} bytes");
    }

    #[test]
    fn a_jpegli_error_is_returned_not_fatal() {
        // 70 000 px wide exceeds JPEG's 65 500 limit: jpegli's error_exit fires inside start_compress.
        let pixels = Pixels::new(70_000, 1, 3, vec![128; 70_000 * 3]);
        let err = encode(&pixels, 80, ChromaSubsampling::Yuv420, false).unwrap_err();
        assert!(err.to_string().contains("jpegli encoder"), "{err}");
        // The process and the library are still usable after the unwind.
        assert!(encode(&photo_like(16, 16), 80, ChromaSubsampling::Yuv444, false).is_ok());
    }
}
