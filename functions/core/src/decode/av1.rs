//! AV1 still-frame decoding through rav1d (the Rust port of dav1d), behind a small safe wrapper:
//! one context per call, single-threaded (a worker already runs one image per core), with dav1d's
//! own frame-size limit set from the caller's pixel budget so a frame header that lies about its
//! size is refused before its buffers are allocated.
//!
//! rav1d exposes dav1d's C API as Rust functions; the only `unsafe` in imgpipe's decoders is here,
//! and every call follows dav1d's documented contract (open → send data → get picture → unref →
//! close), with the picture's planes copied out before it is released.

use std::mem::MaybeUninit;
use std::ptr::NonNull;

use rav1d::include::dav1d::data::Dav1dData;
use rav1d::include::dav1d::dav1d::{Dav1dContext, Dav1dSettings};
use rav1d::include::dav1d::headers::{
    DAV1D_PIXEL_LAYOUT_I400, DAV1D_PIXEL_LAYOUT_I420, DAV1D_PIXEL_LAYOUT_I422,
};
use rav1d::include::dav1d::picture::Dav1dPicture;
use rav1d::src::lib::{
    dav1d_close, dav1d_data_create, dav1d_data_unref, dav1d_default_settings, dav1d_get_picture,
    dav1d_open, dav1d_picture_unref, dav1d_send_data,
};

use crate::error::{PipelineError, Result};
use crate::heif::Cicp;

/// Chroma subsampling of a decoded frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// Luma only.
    Monochrome,
    /// 4:2:0.
    I420,
    /// 4:2:2.
    I422,
    /// 4:4:4.
    I444,
}

impl Layout {
    /// Horizontal and vertical chroma shift.
    pub fn shift(self) -> (u32, u32) {
        match self {
            Layout::I420 => (1, 1),
            Layout::I422 => (1, 0),
            Layout::Monochrome | Layout::I444 => (0, 0),
        }
    }
}

/// One decoded frame with its planes copied out (samples widened to u16 whatever the depth).
#[derive(Debug, Clone)]
pub struct Frame {
    /// Luma width.
    pub width: u32,
    /// Luma height.
    pub height: u32,
    /// Bits per sample (8, 10 or 12).
    pub bit_depth: u8,
    /// Subsampling.
    pub layout: Layout,
    /// Y, U, V (U and V empty for monochrome), rows packed.
    pub planes: [Vec<u16>; 3],
    /// Colour code points from the sequence header.
    pub cicp: Cicp,
}

impl Frame {
    /// Width and height of the chroma planes.
    pub fn chroma_size(&self) -> (u32, u32) {
        let (sx, sy) = self.layout.shift();
        (
            (self.width + (1 << sx) - 1) >> sx,
            (self.height + (1 << sy) - 1) >> sy,
        )
    }
}

/// dav1d reports errors as negative errno values; EAGAIN means "call the other function first".
const EAGAIN: i32 = -(libc::EAGAIN);

struct Context(Option<Dav1dContext>);

impl Drop for Context {
    fn drop(&mut self) {
        // SAFETY: the context came from dav1d_open and is closed exactly once, here.
        unsafe { dav1d_close(NonNull::new(&mut self.0)) };
    }
}

struct Data(Dav1dData);

impl Drop for Data {
    fn drop(&mut self) {
        // SAFETY: unref of a data buffer from dav1d_data_create (a no-op once fully consumed).
        unsafe { dav1d_data_unref(NonNull::new(&mut self.0)) };
    }
}

struct Picture(Dav1dPicture);

impl Drop for Picture {
    fn drop(&mut self) {
        // SAFETY: the picture was filled by dav1d_get_picture (or is the zeroed default).
        unsafe { dav1d_picture_unref(NonNull::new(&mut self.0)) };
    }
}

fn av1_error(action: &str, code: i32) -> PipelineError {
    if code == -(libc::ENOMEM) {
        return PipelineError::over_limit(format!(
            "could not {action}: the AV1 frame is larger than the pixel budget or memory allows"
        ));
    }
    if code == -(libc::ENOPROTOOPT) {
        return PipelineError::unsupported(format!(
            "could not {action}: the AV1 stream uses a feature the decoder does not support"
        ));
    }
    PipelineError::corrupt(format!(
        "could not {action} (dav1d error {code}); the AV1 data is truncated or corrupt, upload it again"
    ))
}

/// Decodes the first frame of the AV1 OBU stream `obus` (an AVIF item's data). Frames larger than
/// `max_pixels` are refused by dav1d from the frame header.
pub fn decode(obus: &[u8], max_pixels: u64) -> Result<Frame> {
    if obus.is_empty() {
        return Err(PipelineError::corrupt(
            "the AVIF image item has no data; the file is truncated, upload it again",
        ));
    }
    let mut settings = MaybeUninit::<Dav1dSettings>::uninit();
    // SAFETY: dav1d_default_settings writes a complete settings struct.
    let mut settings = unsafe {
        dav1d_default_settings(NonNull::new_unchecked(settings.as_mut_ptr()));
        settings.assume_init()
    };
    settings.n_threads = 1;
    settings.max_frame_delay = 1;
    settings.frame_size_limit = u32::try_from(max_pixels.max(1)).unwrap_or(u32::MAX);
    let mut context = Context(None);
    // SAFETY: both pointers are valid for the call; dav1d writes the context or leaves None.
    let code = unsafe { dav1d_open(NonNull::new(&mut context.0), NonNull::new(&mut settings)) }.0;
    if code < 0 || context.0.is_none() {
        return Err(PipelineError::internal(format!(
            "AV1 decoder init failed (dav1d error {code})"
        )));
    }
    let mut data = Data(Dav1dData::default());
    // SAFETY: dav1d_data_create allocates `obus.len()` bytes owned by `data` and returns them.
    let buffer = unsafe { dav1d_data_create(NonNull::new(&mut data.0), obus.len()) };
    if buffer.is_null() {
        return Err(PipelineError::internal(
            "AV1 decoder could not allocate its input",
        ));
    }
    // SAFETY: `buffer` has room for exactly `obus.len()` bytes and does not overlap `obus`.
    unsafe { std::ptr::copy_nonoverlapping(obus.as_ptr(), buffer, obus.len()) };
    let mut picture = Picture(Dav1dPicture::default());
    // dav1d's loop: feed data while it accepts it, take a picture as soon as one is ready; once the
    // data is used up, ask a few more times (the frame may still be in flight).
    let mut drained = 0;
    loop {
        if data.0.sz > 0 {
            // SAFETY: context is open; `data` is a valid buffer from dav1d_data_create.
            let code = unsafe { dav1d_send_data(context.0, NonNull::new(&mut data.0)) }.0;
            if code < 0 && code != EAGAIN {
                return Err(av1_error("read the AV1 data", code));
            }
        }
        // SAFETY: context is open; `picture` is valid to write.
        let code = unsafe { dav1d_get_picture(context.0, NonNull::new(&mut picture.0)) }.0;
        if code == 0 {
            break;
        }
        if code != EAGAIN {
            return Err(av1_error("decode the AV1 frame", code));
        }
        if data.0.sz == 0 {
            drained += 1;
            if drained > 4 {
                return Err(PipelineError::corrupt(
                    "the AV1 data holds no complete frame; the file is truncated or corrupt, upload it again",
                ));
            }
        }
    }
    copy_out(&picture.0)
}

fn copy_out(picture: &Dav1dPicture) -> Result<Frame> {
    let p = &picture.p;
    let (width, height) = (
        u32::try_from(p.w).map_err(|_| av1_error("read the frame size", 0))?,
        u32::try_from(p.h).map_err(|_| av1_error("read the frame size", 0))?,
    );
    let layout = match p.layout {
        DAV1D_PIXEL_LAYOUT_I400 => Layout::Monochrome,
        DAV1D_PIXEL_LAYOUT_I420 => Layout::I420,
        DAV1D_PIXEL_LAYOUT_I422 => Layout::I422,
        _ => Layout::I444,
    };
    let bit_depth = u8::try_from(p.bpc).unwrap_or(8);
    // SAFETY: a picture from dav1d_get_picture carries its sequence header.
    let cicp = picture.seq_hdr.map_or(
        Cicp {
            primaries: 2,
            transfer: 2,
            matrix: 2,
            full_range: false,
        },
        |seq| {
            let seq = unsafe { seq.as_ref() };
            Cicp {
                primaries: seq.pri as u16,
                transfer: seq.trc as u16,
                matrix: seq.mtrx as u16,
                full_range: seq.color_range != 0,
            }
        },
    );
    let mut frame = Frame {
        width,
        height,
        bit_depth,
        layout,
        planes: [Vec::new(), Vec::new(), Vec::new()],
        cicp,
    };
    let (cw, ch) = frame.chroma_size();
    let wide = bit_depth > 8;
    let planes = if layout == Layout::Monochrome { 1 } else { 3 };
    for plane in 0..planes {
        let (w, h) = if plane == 0 {
            (width, height)
        } else {
            (cw, ch)
        };
        let stride = picture.stride[usize::from(plane > 0)];
        let Some(base) = picture.data[plane] else {
            return Err(av1_error("read a decoded plane", 0));
        };
        let mut out = Vec::with_capacity(w as usize * h as usize);
        for row in 0..h as isize {
            // SAFETY: dav1d guarantees `h` rows of `stride` bytes each, with at least `w` samples
            // (1 byte each at 8 bits, 2 bytes above) per row, for the picture's lifetime.
            unsafe {
                let start = base.as_ptr().cast::<u8>().offset(row * stride);
                if wide {
                    let row = std::slice::from_raw_parts(start.cast::<u16>(), w as usize);
                    out.extend_from_slice(row);
                } else {
                    let row = std::slice::from_raw_parts(start, w as usize);
                    out.extend(row.iter().map(|&v| u16::from(v)));
                }
            }
        }
        frame.planes[plane] = out;
    }
    Ok(frame)
}
