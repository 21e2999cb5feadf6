//! imgpipe-gpu: the GPU side of imgpipe. Finds a CUDA device at run time (cudarc with dynamic
//! loading: no CUDA needed to build, none needed to run), and picks the backend the worker uses:
//! `--backend gpu` insists on a device, `cpu` never looks, `auto` uses a device when there is one and
//! otherwise falls back to the CPU backend with one clear log line.
//!
//! [`nvjpeg`]: JPEG decode on the device (nvJPEG opened at run time, hardware engine when present).
//! [`resize`]: the CUDA resize and orientation kernels (`kernels/resize.cu`, compiled by NVRTC at start-up) and the
//! same source run on the CPU for tests; their math is `imgpipe_core::kernel`, the CPU reference.
#![warn(missing_docs)]

pub mod batcher;
pub mod nvjpeg;
pub mod resize;
#[cfg(test)]
mod testing;

use std::sync::{Arc, Mutex};

use cudarc::driver::CudaContext;
use imgpipe_core::pixels::Pixels;
use imgpipe_core::{Accelerator, Engine};

use crate::batcher::Batcher;
use crate::nvjpeg::{NvJpeg, NvJpegEncoder};
use crate::resize::{CudaResizer, DeviceImage};

/// What the operator asked for (`--backend`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BackendChoice {
    /// A GPU when one answers, else the CPU (default).
    #[default]
    Auto,
    /// Always the CPU.
    Cpu,
    /// A GPU or a start-up error.
    Gpu,
}

impl std::str::FromStr for BackendChoice {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(Self::Auto),
            "cpu" => Ok(Self::Cpu),
            "gpu" => Ok(Self::Gpu),
            other => Err(format!("backend '{other}' is not auto, cpu or gpu")),
        }
    }
}

/// A CUDA device ready for work.
pub struct GpuDevice {
    /// Device 0's context.
    pub context: Arc<CudaContext>,
    /// Marketing name, e.g. "NVIDIA H100 80GB HBM3".
    pub name: String,
    /// Device memory in bytes.
    pub memory_bytes: usize,
}

/// The backend in use.
pub enum Backend {
    /// CPU (the core pipeline on worker threads).
    Cpu {
        /// Why the CPU was chosen (`asked for`, or why no GPU was usable).
        reason: String,
    },
    /// A CUDA device with the kernels loaded and self-checked.
    Gpu(GpuBackend),
}

/// What runs on the device.
pub struct GpuBackend {
    /// The device.
    pub device: GpuDevice,
    /// The self-checked kernels; each worker thread's engine gets them on a stream of its own.
    resizer: CudaResizer,
    /// nvJPEG, when it loaded and passed its self-check (else JPEGs decode on CPU threads).
    decoder: Option<Arc<DecodeService>>,
    /// nvJPEG's encoder, likewise (else JPEG derivatives encode on CPU threads).
    encoder: Option<Arc<Mutex<NvJpegEncoder>>>,
}

/// JPEGs decoded in one nvJPEG call at most.
const DECODE_BATCH_MAX: usize = 8;
/// How long the first JPEG of a decode batch waits for others (a small share of a CPU decode).
const DECODE_BATCH_WINDOW: std::time::Duration = std::time::Duration::from_millis(2);

/// nvJPEG behind a micro-batcher: worker threads decoding at the same time share one batched call.
struct DecodeService {
    /// `nvjpeg-hardware` or `nvjpeg-gpu`, read without taking the decoder's lock.
    name: &'static str,
    decoder: Mutex<NvJpeg>,
    batcher: Batcher<Vec<u8>, Result<DeviceImage, String>>,
}

impl DecodeService {
    /// Decodes `bytes` into device memory, batched with other threads' decodes.
    fn decode(&self, bytes: &[u8]) -> Result<DeviceImage, String> {
        self.batcher
            .submit(bytes.to_vec(), |jpegs| match self.decoder.lock() {
                Ok(mut decoder) => decoder.decode_batch(&jpegs),
                Err(_) => jpegs
                    .iter()
                    .map(|_| Err("nvJPEG decoder poisoned".to_string()))
                    .collect(),
            })
    }
}

/// [`Accelerator`] on the device for one worker thread: its own stream for the kernels (threads'
/// transfers and kernels overlap), the process's shared nvJPEG decoder (batched) and encoder.
struct CudaAccelerator {
    resizer: CudaResizer,
    /// The current image's upright frame, kept on the device by the fused decode for the first
    /// whole-frame resample; dropped between images.
    upright: Option<DeviceImage>,
    decoder: Option<Arc<DecodeService>>,
    encoder: Option<Arc<Mutex<NvJpegEncoder>>>,
}

impl Accelerator for CudaAccelerator {
    fn name(&self) -> &str {
        "cuda"
    }
    fn resample(&mut self, source: &Pixels, width: u32, height: u32) -> Result<Pixels, String> {
        self.resizer.resize(source, width, height)
    }
    fn resample_upright(
        &mut self,
        source: &Pixels,
        width: u32,
        height: u32,
    ) -> Result<Pixels, String> {
        match &self.upright {
            Some(kept)
                if (kept.width, kept.height, kept.channels)
                    == (source.width, source.height, source.channels) =>
            {
                self.resizer.resize_on_device(kept, width, height)
            }
            _ => self.resizer.resize(source, width, height),
        }
    }
    fn release_image(&mut self) {
        self.upright = None;
    }
    fn decode_jpeg(&mut self, bytes: &[u8]) -> Option<Result<Pixels, String>> {
        let service = self.decoder.as_ref()?;
        Some(
            service
                .decode(bytes)
                .and_then(|image| self.resizer.download(&image)),
        )
    }
    fn decode_jpeg_upright(
        &mut self,
        bytes: &[u8],
        shaper: Option<&imgpipe_core::colour::MatrixShaper>,
        orientation: u8,
    ) -> Option<Result<Pixels, String>> {
        let service = self.decoder.as_ref()?;
        let resizer = &self.resizer;
        let run = || {
            let mut image = service.decode(bytes)?;
            if let Some(shaper) = shaper {
                resizer.to_srgb_on_device(&mut image, shaper)?;
            }
            if (2..=8).contains(&orientation) {
                image = resizer.orient_on_device(&image, orientation)?;
            }
            resizer.download(&image).map(|pixels| (pixels, image))
        };
        Some(run().map(|(pixels, image)| {
            self.upright = Some(image);
            pixels
        }))
    }
    fn encode_jpeg(
        &mut self,
        pixels: &Pixels,
        preset: &imgpipe_core::Preset,
    ) -> Option<Result<Vec<u8>, String>> {
        let encoder = self.encoder.as_ref()?;
        // Perceptual targets and jpegli presets are encoded on the CPU.
        preset.device_jpeg_quality()?;
        Some(match encoder.lock() {
            Ok(mut encoder) => encoder.encode(pixels, preset),
            Err(_) => Err("nvJPEG encoder poisoned".into()),
        })
    }
    fn to_srgb(
        &mut self,
        pixels: &Pixels,
        shaper: &imgpipe_core::colour::MatrixShaper,
    ) -> Option<Result<Pixels, String>> {
        Some(self.resizer.to_srgb(pixels, shaper))
    }
    fn orient(&mut self, pixels: &Pixels, orientation: u8) -> Option<Result<Pixels, String>> {
        Some(self.resizer.orient(pixels, orientation))
    }
}

impl Backend {
    /// `cpu` or `gpu`, for /health and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            Backend::Cpu { .. } => "cpu",
            Backend::Gpu(..) => "gpu",
        }
    }

    /// The device name, when a GPU is in use.
    pub fn device_name(&self) -> Option<&str> {
        match self {
            Backend::Cpu { .. } => None,
            Backend::Gpu(gpu) => Some(&gpu.device.name),
        }
    }

    /// Who encodes JPEG derivatives: `nvjpeg` or `cpu` (WebP and PNG always encode on CPU threads).
    pub fn jpeg_encoder(&self) -> &'static str {
        match self {
            Backend::Gpu(GpuBackend {
                encoder: Some(_), ..
            }) => "nvjpeg",
            _ => "cpu",
        }
    }

    /// Who decodes baseline JPEGs: `nvjpeg-hardware`, `nvjpeg-gpu` or `cpu`.
    pub fn jpeg_decoder(&self) -> &'static str {
        match self {
            Backend::Gpu(GpuBackend {
                decoder: Some(decoder),
                ..
            }) => decoder.name,
            _ => "cpu",
        }
    }

    /// A resize engine for one worker thread: the device (its own stream; CPU when a call fails) or
    /// the CPU.
    pub fn engine(&self) -> Engine {
        match self {
            Backend::Cpu { .. } => Engine::default(),
            Backend::Gpu(gpu) => match gpu.resizer.on_new_stream() {
                Ok(resizer) => Engine::with_backend(Box::new(CudaAccelerator {
                    resizer,
                    upright: None,
                    decoder: gpu.decoder.clone(),
                    encoder: gpu.encoder.clone(),
                })),
                Err(reason) => {
                    tracing::warn!(%reason, "no CUDA stream for this worker thread; it works on the CPU");
                    Engine::default()
                }
            },
        }
    }
}

/// Loads the kernels on `device` and checks them once against the CPU reference (a 257×131 RGB and a
/// 97×61 RGBA resize, with and without pre-shrink, a colour conversion and two orientations): a
/// device that computes anything else is not used.
pub fn load_and_check(device: &GpuDevice) -> Result<CudaResizer, String> {
    let resizer = CudaResizer::new(device)?;
    let rgb = Pixels::new(
        257,
        131,
        3,
        (0..257 * 131 * 3).map(|i| (i * 31 % 253) as u8).collect(),
    );
    let rgba = Pixels::new(
        97,
        61,
        4,
        (0..97 * 61 * 4).map(|i| (i * 17 % 251) as u8).collect(),
    );
    for (pixels, width, height) in [(&rgb, 100, 50), (&rgb, 20, 9), (&rgba, 40, 30)] {
        let gpu = resizer.resize(pixels, width, height)?;
        let reference = imgpipe_core::kernel::resize_reference(pixels, width, height);
        let max = imgpipe_core::kernel::max_difference(&gpu, &reference);
        if max > 1 {
            return Err(format!(
                "self-check: {width}×{height} differs from the CPU reference by up to {max} levels"
            ));
        }
    }
    // The colour kernel's arithmetic, on made-up tables (the profile does not matter here).
    let shaper = imgpipe_core::colour::MatrixShaper {
        linearize: (0..768)
            .map(|i| ((i % 256) as f32 / 255.0).powf(2.2))
            .collect(),
        matrix: [0.9, 0.1, 0.0, 0.05, 0.9, 0.05, -0.02, 0.1, 0.92],
        gamma: (0..imgpipe_core::colour::GAMMA_BINS)
            .map(|i| ((i as f32 / 4091.0).powf(1.0 / 2.2) * 255.0).round() as u16)
            .collect(),
    };
    if resizer.to_srgb(&rgba, &shaper)? != shaper.apply(&rgba) {
        return Err("self-check: the colour kernel differs from the CPU reference".into());
    }
    for orientation in [3, 6] {
        if resizer.orient(&rgba, orientation)?
            != imgpipe_core::orient::orient(rgba.clone(), orientation)
        {
            return Err(format!(
                "self-check: orientation {orientation} differs from the CPU"
            ));
        }
    }
    Ok(resizer)
}

fn gpu_backend() -> Result<Backend, String> {
    let device = find_device()?;
    let resizer = load_and_check(&device)?;
    let decoder = match NvJpeg::load(&device).and_then(|mut d| d.check().map(|()| d)) {
        Ok(decoder) => Some(Arc::new(DecodeService {
            name: if decoder.backend() == "hardware" {
                "nvjpeg-hardware"
            } else {
                "nvjpeg-gpu"
            },
            decoder: Mutex::new(decoder),
            batcher: Batcher::new(DECODE_BATCH_MAX, DECODE_BATCH_WINDOW),
        })),
        Err(reason) => {
            tracing::warn!(%reason, "nvJPEG not used: JPEGs decode on CPU threads");
            None
        }
    };
    let encoder = match NvJpegEncoder::load(&device).and_then(|mut e| e.check().map(|()| e)) {
        Ok(encoder) => Some(Arc::new(Mutex::new(encoder))),
        Err(reason) => {
            tracing::warn!(%reason, "nvJPEG encoder not used: JPEG derivatives encode on CPU threads");
            None
        }
    };
    Ok(Backend::Gpu(GpuBackend {
        device,
        resizer,
        decoder,
        encoder,
    }))
}

/// Looks for device 0: is the driver library present, does it initialise, is there a device.
pub fn find_device() -> Result<GpuDevice, String> {
    // SAFETY: only tries to dlopen the driver library; no CUDA call is made when it is absent (a
    // call through cudarc's lazy loader would panic instead of returning an error).
    if !unsafe { cudarc::driver::sys::is_culib_present() } {
        return Err("no NVIDIA driver (libcuda.so.1 not found)".into());
    }
    let count = CudaContext::device_count().map_err(|e| format!("CUDA driver: {e:?}"))?;
    if count < 1 {
        return Err("the NVIDIA driver reports no device".into());
    }
    let context = CudaContext::new(0).map_err(|e| format!("CUDA device 0: {e:?}"))?;
    let name = context
        .name()
        .map_err(|e| format!("CUDA device name: {e:?}"))?;
    let memory_bytes = context.total_mem().unwrap_or(0);
    Ok(GpuDevice {
        context,
        name,
        memory_bytes,
    })
}

/// Picks the backend for `choice`; only `gpu` without a usable device is an error.
pub fn select(choice: BackendChoice) -> Result<Backend, String> {
    match choice {
        BackendChoice::Cpu => Ok(Backend::Cpu {
            reason: "asked for".into(),
        }),
        BackendChoice::Gpu => gpu_backend().map_err(|e| format!("--backend gpu: {e}")),
        BackendChoice::Auto => match gpu_backend() {
            Ok(backend) => {
                if let Backend::Gpu(gpu) = &backend {
                    tracing::info!(device = %gpu.device.name, memory_mib = gpu.device.memory_bytes >> 20, jpeg_decoder = backend.jpeg_decoder(), jpeg_encoder = backend.jpeg_encoder(), "GPU backend: kernels loaded and checked");
                }
                Ok(backend)
            }
            Err(reason) => {
                tracing::warn!(%reason, "no usable GPU; falling back to the CPU backend");
                Ok(Backend::Cpu { reason })
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backend_choices_parse() {
        assert_eq!("auto".parse(), Ok(BackendChoice::Auto));
        assert_eq!("cpu".parse(), Ok(BackendChoice::Cpu));
        assert_eq!("gpu".parse(), Ok(BackendChoice::Gpu));
        assert!("tpu".parse::<BackendChoice>().unwrap_err().contains("tpu"));
    }

    /// Holds on any machine: with a GPU `auto` uses it, without one it falls back, never panics.
    #[test]
    fn auto_never_fails_and_cpu_never_looks() {
        let auto = select(BackendChoice::Auto).unwrap();
        match find_device() {
            Ok(_) => assert_eq!(auto.kind(), "gpu"),
            Err(_) => assert_eq!(auto.kind(), "cpu"),
        }
        assert_eq!(select(BackendChoice::Cpu).unwrap().kind(), "cpu");
    }

    /// `gpu` uses the device when there is one; without one it is a clear start-up error.
    #[test]
    fn gpu_uses_the_device_or_says_why_not() {
        match find_device() {
            Ok(_) => assert_eq!(select(BackendChoice::Gpu).unwrap().kind(), "gpu"),
            Err(reason) => {
                let err = select(BackendChoice::Gpu).err().unwrap();
                assert_eq!(err, format!("--backend gpu: {reason}"));
                assert_eq!(
                    select(BackendChoice::Auto).unwrap().engine().backend_name(),
                    "cpu"
                );
            }
        }
    }

    /// On a GPU (IMGPIPE_GPU_TESTS=1): decode ⇒ orientation fused on the device equals the same
    /// steps run one by one, its kept frame resamples like an uploaded one, and no call fell back.
    #[test]
    fn fused_decode_equals_the_steps_on_a_gpu() {
        if std::env::var_os("IMGPIPE_GPU_TESTS").is_none() {
            return;
        }
        let backend = select(BackendChoice::Gpu).expect("IMGPIPE_GPU_TESTS set but no GPU");
        assert!(
            backend.jpeg_decoder().starts_with("nvjpeg"),
            "nvJPEG not loaded"
        );
        let bytes = crate::testing::fixture("large_olympus-e-p3_12mp.jpg");
        let header = imgpipe_core::probe::probe(&bytes).unwrap();
        let mut engine = backend.engine();
        let fused = engine
            .decode_upright(&bytes, &header, None, 6, 1 << 30)
            .expect("fused decode");
        // The kept upright frame resamples like an upload of the downloaded one.
        let full = imgpipe_core::plan::CropFraction::FULL;
        let kept = engine.resize_upright(&fused, full, 900, 1200).unwrap();
        let uploaded = engine.resize(&fused, full, 900, 1200).unwrap();
        assert_eq!(kept, uploaded);
        engine.release_image();
        let decoded = engine.decode_jpeg(&bytes, &header, 1 << 30).unwrap();
        let stepwise = engine.orient(decoded, 6);
        assert_eq!(fused, stepwise);
        assert_eq!(engine.backend_failures(), (0, None));
    }
}
