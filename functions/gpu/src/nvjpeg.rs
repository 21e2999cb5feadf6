//! nvJPEG, opened at run time with libloading (cudarc has no nvJPEG bindings; nothing of CUDA is
//! needed to build or to run without a GPU): JPEG decode ([`NvJpeg`]) and JPEG encode
//! ([`NvJpegEncoder`]) on the device for the GPU worker. The
//! hardware engine (NVJPG on A100, H100, L4, …) is used when the GPU has one, else nvJPEG's default
//! GPU/hybrid backend. Only files `imgpipe_core::decode::suits_device_decode` accepts (baseline or
//! extended sequential, 8-bit YCbCr) are offered; any error sends that file to libjpeg-turbo.
//!
//! The declarations follow `nvjpeg.h` (CUDA 11.6–12.x; the functions used here are unchanged
//! across those releases). Decoder and encoder are self-checked against libjpeg-turbo at start-up
//! ([`NvJpeg::check`], [`NvJpegEncoder::check`]): a library that computes anything else is not used.

use std::ffi::{c_int, c_uchar, c_uint, c_void};
use std::sync::Arc;

use cudarc::driver::{CudaContext, CudaStream, DevicePtrMut};
use imgpipe_core::pixels::Pixels;
use libloading::Library;

use crate::GpuDevice;
use crate::resize::{DeviceImage, cuda};

/// Library names tried, newest first (the CUDA 12 and 11 runtimes' sonames, then the dev link).
pub const LIBRARY_NAMES: [&str; 3] = ["libnvjpeg.so.12", "libnvjpeg.so.11", "libnvjpeg.so"];

type Status = c_int;
type Handle = *mut c_void;
type State = *mut c_void;
type Stream = *mut c_void;

const STATUS_SUCCESS: Status = 0;
const BACKEND_DEFAULT: c_int = 0;
const BACKEND_HARDWARE: c_int = 3;
const OUTPUT_RGBI: c_int = 5;
const INPUT_RGBI: c_int = 5;
const CSS_444: c_int = 0;
const CSS_420: c_int = 2;
const ENCODING_BASELINE: c_int = 0xc0;
const ENCODING_PROGRESSIVE: c_int = 0xc2;

/// `nvjpegImage_t`: up to four planes; interleaved RGB uses the first.
#[repr(C)]
struct Image {
    channel: [*mut c_uchar; 4],
    pitch: [usize; 4],
}

impl Image {
    /// Interleaved 8-bit RGB in the first plane at `pointer`, rows `pitch` bytes apart.
    fn interleaved(pointer: u64, pitch: usize) -> Self {
        let none = std::ptr::null_mut();
        Self {
            channel: [pointer as *mut c_uchar, none, none, none],
            pitch: [pitch, 0, 0, 0],
        }
    }
}

type CreateEx =
    unsafe extern "C" fn(c_int, *mut c_void, *mut c_void, c_uint, *mut Handle) -> Status;
type Destroy = unsafe extern "C" fn(Handle) -> Status;
type StateCreate = unsafe extern "C" fn(Handle, *mut State) -> Status;
type StateDestroy = unsafe extern "C" fn(State) -> Status;
type GetImageInfo = unsafe extern "C" fn(
    Handle,
    *const c_uchar,
    usize,
    *mut c_int,
    *mut c_int,
    *mut c_int,
    *mut c_int,
) -> Status;
type Decode =
    unsafe extern "C" fn(Handle, State, *const c_uchar, usize, c_int, *mut Image, Stream) -> Status;
type BatchedInitialize = unsafe extern "C" fn(Handle, State, c_int, c_int, c_int) -> Status;
type DecodeBatched = unsafe extern "C" fn(
    Handle,
    State,
    *const *const c_uchar,
    *const usize,
    *mut Image,
    Stream,
) -> Status;

type EncoderStateCreate = unsafe extern "C" fn(Handle, *mut EncoderState, Stream) -> Status;
type EncoderStateDestroy = unsafe extern "C" fn(EncoderState) -> Status;
type EncoderParamsCreate = unsafe extern "C" fn(Handle, *mut EncoderParams, Stream) -> Status;
type EncoderParamsDestroy = unsafe extern "C" fn(EncoderParams) -> Status;
type EncoderParamsSetInt = unsafe extern "C" fn(EncoderParams, c_int, Stream) -> Status;
type EncodeImage = unsafe extern "C" fn(
    Handle,
    EncoderState,
    EncoderParams,
    *const Image,
    c_int,
    c_int,
    c_int,
    Stream,
) -> Status;
type EncodeRetrieveBitstream =
    unsafe extern "C" fn(Handle, EncoderState, *mut c_uchar, *mut usize, Stream) -> Status;
type EncoderState = *mut c_void;
type EncoderParams = *mut c_void;

/// The entry points used, copied out of the library, which the struct keeps open.
struct Api {
    create_ex: CreateEx,
    destroy: Destroy,
    state_create: StateCreate,
    state_destroy: StateDestroy,
    get_image_info: GetImageInfo,
    decode: Decode,
    batched_initialize: BatchedInitialize,
    decode_batched: DecodeBatched,
    encoder_state_create: EncoderStateCreate,
    encoder_state_destroy: EncoderStateDestroy,
    encoder_params_create: EncoderParamsCreate,
    encoder_params_destroy: EncoderParamsDestroy,
    set_quality: EncoderParamsSetInt,
    set_sampling_factors: EncoderParamsSetInt,
    set_optimized_huffman: EncoderParamsSetInt,
    set_encoding: EncoderParamsSetInt,
    encode_image: EncodeImage,
    retrieve_bitstream: EncodeRetrieveBitstream,
    _library: Library,
}

/// Opens the first of [`LIBRARY_NAMES`] that loads. The error names every name tried.
pub fn open_library() -> Result<Library, String> {
    let mut errors = Vec::new();
    for name in LIBRARY_NAMES {
        // SAFETY: loading nvJPEG runs only its (and CUDA's) library initialisers.
        match unsafe { Library::new(name) } {
            Ok(library) => return Ok(library),
            Err(e) => errors.push(format!("{name}: {e}")),
        }
    }
    Err(format!("nvJPEG not found ({})", errors.join("; ")))
}

impl Api {
    fn load() -> Result<Self, String> {
        let library = open_library()?;
        // SAFETY: each symbol is given the type nvjpeg.h declares for it.
        unsafe {
            macro_rules! symbol {
                ($name:literal) => {
                    *library
                        .get(concat!($name, "\0").as_bytes())
                        .map_err(|e| format!("nvJPEG symbol {}: {e}", $name))?
                };
            }
            Ok(Self {
                create_ex: symbol!("nvjpegCreateEx"),
                destroy: symbol!("nvjpegDestroy"),
                state_create: symbol!("nvjpegJpegStateCreate"),
                state_destroy: symbol!("nvjpegJpegStateDestroy"),
                get_image_info: symbol!("nvjpegGetImageInfo"),
                decode: symbol!("nvjpegDecode"),
                batched_initialize: symbol!("nvjpegDecodeBatchedInitialize"),
                decode_batched: symbol!("nvjpegDecodeBatched"),
                encoder_state_create: symbol!("nvjpegEncoderStateCreate"),
                encoder_state_destroy: symbol!("nvjpegEncoderStateDestroy"),
                encoder_params_create: symbol!("nvjpegEncoderParamsCreate"),
                encoder_params_destroy: symbol!("nvjpegEncoderParamsDestroy"),
                set_quality: symbol!("nvjpegEncoderParamsSetQuality"),
                set_sampling_factors: symbol!("nvjpegEncoderParamsSetSamplingFactors"),
                set_optimized_huffman: symbol!("nvjpegEncoderParamsSetOptimizedHuffman"),
                set_encoding: symbol!("nvjpegEncoderParamsSetEncoding"),
                encode_image: symbol!("nvjpegEncodeImage"),
                retrieve_bitstream: symbol!("nvjpegEncodeRetrieveBitstream"),
                _library: library,
            })
        }
    }
}

/// nvJPEG's entry points and a stream of its own on `device` (whose context is bound to this thread).
fn open_on(device: &GpuDevice) -> Result<(Api, Arc<CudaStream>), String> {
    let api = Api::load()?;
    device
        .context
        .bind_to_thread()
        .map_err(cuda("bind context"))?;
    let stream = device.context.new_stream().map_err(cuda("new stream"))?;
    Ok((api, stream))
}

/// A new nvJPEG handle on `backend`, with nvJPEG's default allocators.
fn create_handle(api: &Api, backend: c_int) -> Result<Handle, String> {
    let mut handle: Handle = std::ptr::null_mut();
    // SAFETY: an out-pointer to a local; null allocators select the defaults; flags must be 0.
    check("nvjpegCreateEx", unsafe {
        (api.create_ex)(
            backend,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            0,
            &mut handle,
        )
    })?;
    Ok(handle)
}

fn check(what: &str, status: Status) -> Result<(), String> {
    if status == STATUS_SUCCESS {
        return Ok(());
    }
    let meaning = match status {
        1 => "not initialised",
        2 => "invalid parameter",
        3 => "bad JPEG",
        4 => "JPEG not supported",
        5 => "allocator failure",
        6 => "execution failed",
        7 => "architecture mismatch",
        8 => "internal error",
        9 => "implementation not supported",
        10 => "incomplete bitstream",
        _ => "unknown status",
    };
    Err(format!("{what}: nvJPEG status {status} ({meaning})"))
}

/// A decoder handle and state on one stream of the worker's device. Calls are serialised by the
/// caller (one state per handle).
pub struct NvJpeg {
    api: Api,
    handle: Handle,
    state: State,
    hardware: bool,
    /// Images the batched (hardware) decoder is initialised for.
    batch_size: usize,
    context: Arc<CudaContext>,
    stream: Arc<CudaStream>,
}

// SAFETY: the handle and state are used by one thread at a time (the backend keeps the decoder
// behind a mutex); nvJPEG handles are not tied to the thread that created them.
unsafe impl Send for NvJpeg {}

impl NvJpeg {
    /// Opens nvJPEG on `device`: the hardware backend when the GPU has one, else the default.
    pub fn load(device: &GpuDevice) -> Result<Self, String> {
        let (api, stream) = open_on(device)?;
        let (handle, state, hardware) = match Self::open(&api, true) {
            Ok(opened) => opened,
            Err(hardware_error) => {
                tracing::info!(reason = %hardware_error, "nvJPEG hardware decoder unavailable; using its GPU backend");
                Self::open(&api, false)?
            }
        };
        Ok(Self {
            api,
            handle,
            state,
            hardware,
            batch_size: usize::from(hardware),
            context: Arc::clone(&device.context),
            stream,
        })
    }

    fn open(api: &Api, hardware: bool) -> Result<(Handle, State, bool), String> {
        let backend = if hardware {
            BACKEND_HARDWARE
        } else {
            BACKEND_DEFAULT
        };
        let handle = create_handle(api, backend)?;
        let mut state: State = std::ptr::null_mut();
        // SAFETY: an out-pointer to a local; on failure what was created is destroyed.
        unsafe {
            if let Err(e) = check(
                "nvjpegJpegStateCreate",
                (api.state_create)(handle, &mut state),
            ) {
                (api.destroy)(handle);
                return Err(e);
            }
            if hardware
                && let Err(e) = check(
                    "nvjpegDecodeBatchedInitialize",
                    (api.batched_initialize)(handle, state, 1, 1, OUTPUT_RGBI),
                )
            {
                (api.state_destroy)(state);
                (api.destroy)(handle);
                return Err(e);
            }
        }
        Ok((handle, state, hardware))
    }

    /// `hardware` or `gpu`: which nvJPEG backend decodes.
    pub fn backend(&self) -> &'static str {
        if self.hardware { "hardware" } else { "gpu" }
    }

    /// Decodes `bytes` to interleaved 8-bit RGB at full size.
    pub fn decode(&mut self, bytes: &[u8]) -> Result<Pixels, String> {
        let image = self.decode_on_device(bytes)?;
        let data = self
            .stream
            .clone_dtoh(&image.data)
            .map_err(cuda("download"))?;
        Ok(Pixels::new(image.width, image.height, 3, data))
    }

    /// Decodes `bytes` into device memory (interleaved RGB, full size), ready for the kernels.
    pub fn decode_on_device(&mut self, bytes: &[u8]) -> Result<DeviceImage, String> {
        self.decode_many(&[bytes])?
            .pop()
            .ok_or_else(|| "nvJPEG returned no image".to_string())
    }

    /// Decodes several JPEGs: with the hardware backend in one batched call (all of the GPU's JPEG
    /// engines at once); when that call fails, or on the GPU backend, one by one, so a bad file
    /// never fails the others.
    pub fn decode_batch(&mut self, jpegs: &[Vec<u8>]) -> Vec<Result<DeviceImage, String>> {
        if jpegs.len() > 1 {
            let slices: Vec<&[u8]> = jpegs.iter().map(Vec::as_slice).collect();
            match self.decode_many(&slices) {
                Ok(all) => return all.into_iter().map(Ok).collect(),
                Err(e) => {
                    tracing::debug!(error = %e, "batched nvJPEG decode failed; decoding one by one")
                }
            }
        }
        jpegs
            .iter()
            .map(|jpeg| self.decode_on_device(jpeg))
            .collect()
    }

    /// (Re)initialises the batched decoder for `size` images when it was set up for another size.
    fn ensure_batch_size(&mut self, size: usize) -> Result<(), String> {
        if self.batch_size == size {
            return Ok(());
        }
        // SAFETY: handle and state are live; batch size and thread count are positive.
        check("nvjpegDecodeBatchedInitialize", unsafe {
            (self.api.batched_initialize)(self.handle, self.state, size as c_int, 1, OUTPUT_RGBI)
        })?;
        self.batch_size = size;
        Ok(())
    }

    fn decode_many(&mut self, jpegs: &[&[u8]]) -> Result<Vec<DeviceImage>, String> {
        self.context
            .bind_to_thread()
            .map_err(cuda("bind context"))?;
        if self.hardware {
            self.ensure_batch_size(jpegs.len())?;
        }
        let mut sizes = Vec::with_capacity(jpegs.len());
        let mut outputs = Vec::with_capacity(jpegs.len());
        for bytes in jpegs {
            let (width, height) = self.image_size(bytes)?;
            outputs.push(
                self.stream
                    .alloc_zeros::<u8>(width as usize * 3 * height as usize)
                    .map_err(cuda("alloc"))?,
            );
            sizes.push((width, height));
        }
        {
            let stream = Arc::clone(&self.stream);
            let raw = stream.cu_stream() as Stream;
            let guards: Vec<_> = outputs
                .iter_mut()
                .map(|out| out.device_ptr_mut(&stream))
                .collect();
            let mut images: Vec<Image> = guards
                .iter()
                .zip(&sizes)
                .map(|((pointer, _), (width, _))| Image::interleaved(*pointer, *width as usize * 3))
                .collect();
            let data: Vec<*const c_uchar> = jpegs.iter().map(|j| j.as_ptr()).collect();
            let lengths: Vec<usize> = jpegs.iter().map(|j| j.len()).collect();
            // SAFETY: each output plane holds pitch × height bytes of device memory on this
            // context (sized from nvjpegGetImageInfo); the arrays hold one entry per image, as the
            // batch was initialised for; the calls only enqueue work on `raw`, which the
            // downloads below wait for.
            if self.hardware {
                check("nvjpegDecodeBatched", unsafe {
                    (self.api.decode_batched)(
                        self.handle,
                        self.state,
                        data.as_ptr(),
                        lengths.as_ptr(),
                        images.as_mut_ptr(),
                        raw,
                    )
                })?;
            } else {
                for ((data, length), image) in data.iter().zip(&lengths).zip(&mut images) {
                    check("nvjpegDecode", unsafe {
                        (self.api.decode)(
                            self.handle,
                            self.state,
                            *data,
                            *length,
                            OUTPUT_RGBI,
                            image,
                            raw,
                        )
                    })?;
                }
            }
        }
        // Done before the images go to other streams (the kernels, the downloads).
        self.stream.synchronize().map_err(cuda("synchronize"))?;
        Ok(outputs
            .into_iter()
            .zip(sizes)
            .map(|(data, (width, height))| DeviceImage {
                data,
                width,
                height,
                channels: 3,
            })
            .collect())
    }

    /// Width and height nvJPEG reads from the header of `bytes`.
    fn image_size(&self, bytes: &[u8]) -> Result<(u32, u32), String> {
        let (mut components, mut subsampling) = (0, 0);
        let (mut widths, mut heights) = ([0 as c_int; 4], [0 as c_int; 4]);
        // SAFETY: `bytes` is valid for its length; the width/height arrays hold the 4 entries
        // (NVJPEG_MAX_COMPONENT) nvjpegGetImageInfo writes.
        check("nvjpegGetImageInfo", unsafe {
            (self.api.get_image_info)(
                self.handle,
                bytes.as_ptr(),
                bytes.len(),
                &mut components,
                &mut subsampling,
                widths.as_mut_ptr(),
                heights.as_mut_ptr(),
            )
        })?;
        match (widths[0], heights[0]) {
            (w, h) if w > 0 && h > 0 => Ok((w as u32, h as u32)),
            (w, h) => Err(format!("nvJPEG reports a {w}×{h} image")),
        }
    }

    /// Decodes a JPEG made here (a smooth 161×97 gradient, baseline 4:2:0) and compares it with
    /// libjpeg-turbo's decode: IDCT and chroma upsampling may differ by a few levels, a wrong
    /// layout or colour conversion by far more.
    pub fn check(&mut self) -> Result<(), String> {
        let jpeg = imgpipe_core::encode::encode(gradient(), &check_preset(false)?, [255; 3])
            .map_err(|e| format!("self-check JPEG: {e}"))?;
        let cpu = decode_on_cpu(&jpeg)?;
        let gpu = self.decode(&jpeg)?;
        compare("nvJPEG decode vs libjpeg-turbo", &gpu, &cpu, 12, 1.5)
    }
}

/// A smooth 161×97 RGB gradient: what both self-checks code.
fn gradient() -> Pixels {
    let (width, height) = (161u32, 97u32);
    let mut data = Vec::with_capacity((width * height * 3) as usize);
    for y in 0..height {
        for x in 0..width {
            data.extend([(x * 255 / width) as u8, (y * 255 / height) as u8, 128]);
        }
    }
    Pixels::new(width, height, 3, data)
}

/// The default set's JPEG preset at quality 95, baseline or progressive.
fn check_preset(progressive: bool) -> Result<imgpipe_core::Preset, String> {
    let mut preset = imgpipe_core::PresetSet::default_set()
        .presets()
        .iter()
        .find(|p| p.format == imgpipe_core::OutputFormat::Jpeg)
        .cloned()
        .ok_or("no JPEG preset in the default set")?;
    preset.quality = imgpipe_core::quality::Quality::Fixed(95);
    preset.progressive = progressive;
    Ok(preset)
}

/// libjpeg-turbo's full-size decode of a JPEG made here (self-check images, test outputs).
fn decode_on_cpu(jpeg: &[u8]) -> Result<Pixels, String> {
    let header = imgpipe_core::probe::probe(jpeg).map_err(|e| e.to_string())?;
    imgpipe_core::decode::decode(jpeg, &header, 1, None, 1 << 30).map_err(|e| e.to_string())
}

/// Same size and within `max` levels everywhere and `mean` on average, or an error saying how not.
fn compare(what: &str, got: &Pixels, want: &Pixels, max: u8, mean: f64) -> Result<(), String> {
    if (got.width, got.height, got.channels) != (want.width, want.height, want.channels) {
        return Err(format!(
            "self-check, {what}: {}×{}×{} instead of {}×{}×{}",
            got.width, got.height, got.channels, want.width, want.height, want.channels
        ));
    }
    let largest = imgpipe_core::kernel::max_difference(got, want);
    let average = imgpipe_core::kernel::mean_difference(got, want);
    if largest > max || average > mean {
        return Err(format!(
            "self-check, {what}: differs by up to {largest} levels (mean {average:.2})"
        ));
    }
    Ok(())
}

/// A JPEG encoder on the device (nvJPEG's CUDA encoder; its own handle and stream): 8-bit RGB in,
/// baseline or progressive JPEG out, optimised Huffman tables, the preset's quality and chroma
/// subsampling. No ICC, EXIF or XMP is written, as on the CPU path.
pub struct NvJpegEncoder {
    api: Api,
    handle: Handle,
    state: EncoderState,
    params: EncoderParams,
    context: Arc<CudaContext>,
    stream: Arc<CudaStream>,
}

// SAFETY: as for NvJpeg: one thread at a time, behind the backend's mutex.
unsafe impl Send for NvJpegEncoder {}

impl NvJpegEncoder {
    /// Opens nvJPEG's encoder on `device`.
    pub fn load(device: &GpuDevice) -> Result<Self, String> {
        let (api, stream) = open_on(device)?;
        let raw = stream.cu_stream() as Stream;
        let handle = create_handle(&api, BACKEND_DEFAULT)?;
        let mut state: EncoderState = std::ptr::null_mut();
        let mut params: EncoderParams = std::ptr::null_mut();
        // SAFETY: out-pointers to locals; on failure everything created so far is destroyed
        // before returning.
        unsafe {
            if let Err(e) = check(
                "nvjpegEncoderStateCreate",
                (api.encoder_state_create)(handle, &mut state, raw),
            ) {
                (api.destroy)(handle);
                return Err(e);
            }
            if let Err(e) = check(
                "nvjpegEncoderParamsCreate",
                (api.encoder_params_create)(handle, &mut params, raw),
            ) {
                (api.encoder_state_destroy)(state);
                (api.destroy)(handle);
                return Err(e);
            }
        }
        Ok(Self {
            api,
            handle,
            state,
            params,
            context: Arc::clone(&device.context),
            stream,
        })
    }

    /// Encodes RGB `pixels` with `preset`'s quality, progressiveness and chroma subsampling.
    pub fn encode(
        &mut self,
        pixels: &Pixels,
        preset: &imgpipe_core::Preset,
    ) -> Result<Vec<u8>, String> {
        if pixels.channels != 3 {
            return Err(format!(
                "nvJPEG encodes RGB, not {} channels",
                pixels.channels
            ));
        }
        let Some(quality) = preset.device_jpeg_quality() else {
            return Err(
                "a perceptual quality target or a jpegli preset is encoded on the CPU".into(),
            );
        };
        self.context
            .bind_to_thread()
            .map_err(cuda("bind context"))?;
        let raw = self.stream.cu_stream() as Stream;
        let sampling = match preset.chroma_subsampling {
            imgpipe_core::preset::ChromaSubsampling::Yuv420 => CSS_420,
            imgpipe_core::preset::ChromaSubsampling::Yuv444 => CSS_444,
        };
        let encoding = if preset.progressive {
            ENCODING_PROGRESSIVE
        } else {
            ENCODING_BASELINE
        };
        let params = self.params;
        // SAFETY: `params` was created by nvjpegEncoderParamsCreate and lives as long as `self`.
        unsafe {
            check(
                "set quality",
                (self.api.set_quality)(params, c_int::from(quality), raw),
            )?;
            check(
                "set sampling factors",
                (self.api.set_sampling_factors)(params, sampling, raw),
            )?;
            check(
                "set optimised Huffman",
                (self.api.set_optimized_huffman)(params, 1, raw),
            )?;
            check(
                "set encoding",
                (self.api.set_encoding)(params, encoding, raw),
            )?;
        }
        let mut source = self
            .stream
            .clone_htod(&pixels.data)
            .map_err(cuda("upload"))?;
        {
            let (pointer, _sync) = source.device_ptr_mut(&self.stream);
            let image = Image::interleaved(pointer, pixels.width as usize * 3);
            // SAFETY: the source plane holds width × 3 × height bytes of device memory on this
            // context; the call enqueues work on `raw`.
            check("nvjpegEncodeImage", unsafe {
                (self.api.encode_image)(
                    self.handle,
                    self.state,
                    params,
                    &image,
                    INPUT_RGBI,
                    pixels.width as c_int,
                    pixels.height as c_int,
                    raw,
                )
            })?;
        }
        let mut length = 0usize;
        // SAFETY: a null buffer asks for the length only; the second call writes at most
        // `length` bytes into a buffer of that size, then the stream is synchronised.
        unsafe {
            check(
                "nvjpegEncodeRetrieveBitstream (length)",
                (self.api.retrieve_bitstream)(
                    self.handle,
                    self.state,
                    std::ptr::null_mut(),
                    &mut length,
                    raw,
                ),
            )?;
            // NVIDIA's encode sample synchronises here, before the buffer-filling call.
            self.stream.synchronize().map_err(cuda("synchronize"))?;
            let mut bytes = vec![0u8; length];
            check(
                "nvjpegEncodeRetrieveBitstream",
                (self.api.retrieve_bitstream)(
                    self.handle,
                    self.state,
                    bytes.as_mut_ptr(),
                    &mut length,
                    raw,
                ),
            )?;
            self.stream.synchronize().map_err(cuda("synchronize"))?;
            bytes.truncate(length);
            Ok(bytes)
        }
    }

    /// Encodes the gradient baseline and progressive; libjpeg-turbo must read both back close to
    /// the source (quality 95).
    pub fn check(&mut self) -> Result<(), String> {
        let source = gradient();
        for progressive in [false, true] {
            let jpeg = self.encode(&source, &check_preset(progressive)?)?;
            let decoded = decode_on_cpu(&jpeg)?;
            let what = if progressive {
                "nvJPEG progressive encode"
            } else {
                "nvJPEG baseline encode"
            };
            compare(what, &decoded, &source, 24, 2.5)?;
        }
        Ok(())
    }
}

impl Drop for NvJpegEncoder {
    fn drop(&mut self) {
        // SAFETY: created in `load`, destroyed once here.
        unsafe {
            (self.api.encoder_params_destroy)(self.params);
            (self.api.encoder_state_destroy)(self.state);
            (self.api.destroy)(self.handle);
        }
    }
}

impl Drop for NvJpeg {
    fn drop(&mut self) {
        // SAFETY: created in `open`, destroyed once here, state before handle.
        unsafe {
            (self.api.state_destroy)(self.state);
            (self.api.destroy)(self.handle);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Without nvJPEG the error names every library tried, so the log line says what to install.
    #[test]
    fn a_missing_library_is_named_not_a_panic() {
        match open_library() {
            Ok(_) => {} // a CUDA machine: the GPU test below covers it
            Err(message) => {
                for name in LIBRARY_NAMES {
                    assert!(message.contains(name), "{message}");
                }
            }
        }
    }

    /// On a GPU (IMGPIPE_GPU_TESTS=1): the 12 MP baseline fixture decodes on the device within a
    /// few levels of libjpeg-turbo, and the start-up self-check passes.
    #[test]
    fn nvjpeg_decodes_like_libjpeg_turbo() {
        if std::env::var_os("IMGPIPE_GPU_TESTS").is_none() {
            return;
        }
        let device = crate::find_device().expect("IMGPIPE_GPU_TESTS set but no GPU");
        let mut decoder = NvJpeg::load(&device).expect("nvJPEG");
        decoder.check().unwrap();
        let bytes = crate::testing::fixture("large_olympus-e-p3_12mp.jpg");
        let header = imgpipe_core::probe::probe(&bytes).unwrap();
        let cpu = imgpipe_core::decode::decode(&bytes, &header, 1, None, 1 << 30).unwrap();
        let started = std::time::Instant::now();
        let gpu = decoder.decode(&bytes).unwrap();
        eprintln!(
            "nvJPEG ({}) 12 MP decode: {:.1} ms",
            decoder.backend(),
            started.elapsed().as_secs_f64() * 1e3
        );
        compare("12 MP decode", &gpu, &cpu, 255, 1.5).unwrap();

        // A batch (one call on the hardware backend) decodes each file as a lone decode does, and
        // a file nvJPEG cannot read fails alone.
        let small = crate::testing::fixture("Landscape_2.jpg");
        let batch = vec![bytes.clone(), small.clone(), bytes.clone()];
        let started = std::time::Instant::now();
        let decoded = decoder.decode_batch(&batch);
        eprintln!(
            "nvJPEG batch of 3: {:.1} ms",
            started.elapsed().as_secs_f64() * 1e3
        );
        let small_alone = decoder.decode(&small).unwrap();
        let host = |image: &Result<DeviceImage, String>| {
            let image = image.as_ref().unwrap();
            let data = decoder.stream.clone_dtoh(&image.data).unwrap();
            Pixels::new(image.width, image.height, 3, data)
        };
        assert_eq!(host(&decoded[0]), gpu);
        assert_eq!(host(&decoded[1]), small_alone);
        assert_eq!(host(&decoded[2]), gpu);
        let with_bad = decoder.decode_batch(&[small.clone(), b"not a jpeg".to_vec()]);
        assert!(
            with_bad[0].is_ok() && with_bad[1].is_err(),
            "{:?}",
            with_bad[1]
        );

        let mut encoder = NvJpegEncoder::load(&device).expect("nvJPEG encoder");
        encoder.check().unwrap();
        let preset = check_preset(true).unwrap();
        let started = std::time::Instant::now();
        let jpeg = encoder.encode(&cpu, &preset).unwrap();
        eprintln!(
            "nvJPEG 12 MP progressive encode: {:.1} ms, {} bytes",
            started.elapsed().as_secs_f64() * 1e3,
            jpeg.len()
        );
        compare(
            "12 MP encode",
            &decode_on_cpu(&jpeg).unwrap(),
            &cpu,
            255,
            3.0,
        )
        .unwrap();
    }
}
