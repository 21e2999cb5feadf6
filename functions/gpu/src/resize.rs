//! Resizing with the kernels of `kernels/resize.cu`, planned by `imgpipe_core::kernel::resize_steps`:
//! box pre-shrink (when the factor calls for it) ⇒ u8 → premultiplied `f32` ⇒ horizontal Lanczos3 ⇒
//! vertical Lanczos3 ⇒ `f32` → u8. [`CudaResizer`] runs them on the device (NVRTC-compiled at start-up,
//! `--fmad=false`); [`host_resize`] runs the same source compiled as C on the CPU, so tests check the
//! kernels themselves against the Rust reference on any machine.

use std::sync::Arc;

use cudarc::driver::{
    CudaFunction, CudaModule, CudaSlice, CudaStream, LaunchConfig, PushKernelArg,
};
use cudarc::nvrtc::CompileOptions;
use imgpipe_core::colour::MatrixShaper;
use imgpipe_core::kernel::{ResizeSteps, resize_steps};
use imgpipe_core::orient::SourceMap;
use imgpipe_core::pixels::Pixels;

use crate::GpuDevice;

/// The kernel source, compiled by NVRTC on the GPU and as C for the host tests.
pub const KERNEL_SOURCE: &str = include_str!("../kernels/resize.cu");
/// Threads per block side of the 2-D kernels (16×16 = 256).
const BLOCK: u32 = 16;

unsafe extern "C" {
    fn imgpipe_host_box_shrink(
        src: *const u8,
        sw: i32,
        sh: i32,
        ch: i32,
        dst: *mut u8,
        dw: i32,
        dh: i32,
        fx: i32,
        fy: i32,
    );
    fn imgpipe_host_to_float(src: *const u8, dst: *mut f32, pixels: i32, ch: i32);
    fn imgpipe_host_resample_rows(
        src: *const f32,
        sw: i32,
        h: i32,
        ch: i32,
        starts: *const u32,
        weights: *const f32,
        taps: i32,
        dst: *mut f32,
        dw: i32,
    );
    fn imgpipe_host_resample_columns(
        src: *const f32,
        w: i32,
        sh: i32,
        ch: i32,
        starts: *const u32,
        weights: *const f32,
        taps: i32,
        dst: *mut f32,
        dh: i32,
    );
    fn imgpipe_host_to_u8(src: *const f32, dst: *mut u8, pixels: i32, ch: i32);
    fn imgpipe_host_to_srgb(
        pixels: *mut u8,
        count: i32,
        ch: i32,
        linearize: *const f32,
        matrix: *const f32,
        gamma: *const u16,
        bins: i32,
    );
    fn imgpipe_host_orient(
        src: *const u8,
        dst: *mut u8,
        dw: i32,
        dh: i32,
        ch: i32,
        origin: i64,
        step_x: i64,
        step_y: i64,
    );
}

/// Upright size and source map of a `w`×`h` image under EXIF `orientation` (2–8).
fn orientation_map(w: u32, h: u32, orientation: u8) -> (u32, u32, SourceMap) {
    let (dw, dh) = if orientation >= 5 { (h, w) } else { (w, h) };
    (dw, dh, SourceMap::new(orientation, w as usize, h as usize))
}

/// Runs the colour kernel on the CPU (tests only), like [`host_resize`].
pub fn host_to_srgb(pixels: &Pixels, shaper: &MatrixShaper) -> Pixels {
    let mut out = pixels.clone();
    // SAFETY: `out` holds count × channels bytes; the tables have 768, 9 and `bins` entries and
    // every index the kernel computes stays inside them.
    unsafe {
        imgpipe_host_to_srgb(
            out.data.as_mut_ptr(),
            int(pixels.width * pixels.height),
            int(pixels.channels),
            shaper.linearize.as_ptr(),
            shaper.matrix.as_ptr(),
            shaper.gamma.as_ptr(),
            int(shaper.gamma.len()),
        )
    };
    out
}

/// Runs the orientation kernel on the CPU (tests only), like [`host_resize`].
pub fn host_orient(pixels: &Pixels, orientation: u8) -> Pixels {
    let (dw, dh, map) = orientation_map(pixels.width, pixels.height, orientation);
    let mut out = vec![0u8; pixels.data.len()];
    // SAFETY: `out` has as many bytes as the source; the map stays inside the source (core tests).
    unsafe {
        imgpipe_host_orient(
            pixels.data.as_ptr(),
            out.as_mut_ptr(),
            int(dw),
            int(dh),
            int(pixels.channels),
            map.origin as i64,
            map.step_x as i64,
            map.step_y as i64,
        )
    };
    Pixels::new(dw, dh, pixels.channels, out)
}

fn int(v: impl TryInto<i32>) -> i32 {
    v.try_into().ok().expect("image dimensions fit in i32")
}

/// Runs the kernel source on the CPU, one simulated thread at a time (tests and diagnostics only).
pub fn host_resize(pixels: &Pixels, width: u32, height: u32) -> Pixels {
    let steps = resize_steps(pixels.width, pixels.height, width, height);
    let ch = int(pixels.channels);
    let (sw, sh) = (steps.shrunk_width, steps.shrunk_height);
    let shrunk = if steps.box_x > 1 || steps.box_y > 1 {
        let mut out = vec![0u8; (sw * sh) as usize * pixels.channels as usize];
        // SAFETY: buffers sized for the dimensions passed; the C code writes only inside them.
        unsafe {
            imgpipe_host_box_shrink(
                pixels.data.as_ptr(),
                int(pixels.width),
                int(pixels.height),
                ch,
                out.as_mut_ptr(),
                int(sw),
                int(sh),
                int(steps.box_x),
                int(steps.box_y),
            )
        };
        out
    } else {
        pixels.data.clone()
    };
    let c = pixels.channels as usize;
    let mut float = vec![0f32; shrunk.len()];
    let mut rows = vec![0f32; width as usize * sh as usize * c];
    let mut columns = vec![0f32; (width * height) as usize * c];
    let mut out = vec![0u8; columns.len()];
    let (across, down) = (&steps.across, &steps.down);
    // SAFETY: as above; weights hold `starts.len() × taps` values.
    unsafe {
        imgpipe_host_to_float(shrunk.as_ptr(), float.as_mut_ptr(), int(sw * sh), ch);
        imgpipe_host_resample_rows(
            float.as_ptr(),
            int(sw),
            int(sh),
            ch,
            across.starts.as_ptr(),
            across.values.as_ptr(),
            int(across.taps),
            rows.as_mut_ptr(),
            int(width),
        );
        imgpipe_host_resample_columns(
            rows.as_ptr(),
            int(width),
            int(sh),
            ch,
            down.starts.as_ptr(),
            down.values.as_ptr(),
            int(down.taps),
            columns.as_mut_ptr(),
            int(height),
        );
        imgpipe_host_to_u8(columns.as_ptr(), out.as_mut_ptr(), int(width * height), ch);
    }
    Pixels::new(width, height, pixels.channels, out)
}

/// Interleaved 8-bit pixels in device memory.
#[derive(Debug)]
pub struct DeviceImage {
    /// `width × height × channels` bytes.
    pub data: CudaSlice<u8>,
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// 3 (RGB) or 4 (RGBA).
    pub channels: u8,
}

/// The resize kernels loaded on a device, with the stream they run on.
pub struct CudaResizer {
    stream: Arc<CudaStream>,
    _module: Arc<CudaModule>,
    box_shrink: CudaFunction,
    to_float: CudaFunction,
    rows: CudaFunction,
    columns: CudaFunction,
    to_u8: CudaFunction,
    orient: CudaFunction,
    to_srgb: CudaFunction,
}

/// Maps a CUDA driver error to a message naming what failed.
pub(crate) fn cuda(what: &str) -> impl FnOnce(cudarc::driver::DriverError) -> String + '_ {
    move |e| format!("CUDA {what}: {e:?}")
}

fn grid_2d(width: u32, height: u32) -> LaunchConfig {
    LaunchConfig {
        grid_dim: (width.div_ceil(BLOCK), height.div_ceil(BLOCK), 1),
        block_dim: (BLOCK, BLOCK, 1),
        shared_mem_bytes: 0,
    }
}

impl CudaResizer {
    /// Compiles the kernels with NVRTC (no fused multiply-add, IEEE division) and loads them.
    pub fn new(device: &GpuDevice) -> Result<Self, String> {
        let options = CompileOptions {
            fmad: Some(false),
            prec_div: Some(true),
            ftz: Some(false),
            ..Default::default()
        };
        let ptx = cudarc::nvrtc::compile_ptx_with_opts(KERNEL_SOURCE, options)
            .map_err(|e| format!("NVRTC compiling kernels/resize.cu: {e:?}"))?;
        let module = device
            .context
            .load_module(ptx)
            .map_err(cuda("loading the kernels"))?;
        let function = |name: &str| {
            module
                .load_function(name)
                .map_err(|e| format!("CUDA kernel {name}: {e:?}"))
        };
        Ok(Self {
            stream: device.context.default_stream(),
            box_shrink: function("box_shrink")?,
            to_float: function("to_float")?,
            rows: function("resample_rows")?,
            columns: function("resample_columns")?,
            to_u8: function("to_u8")?,
            orient: function("orient")?,
            to_srgb: function("to_srgb")?,
            _module: module,
        })
    }

    /// The same kernels on a new stream of the same device (one per worker thread).
    pub fn on_new_stream(&self) -> Result<CudaResizer, String> {
        let stream = self
            .stream
            .context()
            .new_stream()
            .map_err(cuda("new stream"))?;
        Ok(Self {
            stream,
            _module: Arc::clone(&self._module),
            box_shrink: self.box_shrink.clone(),
            to_float: self.to_float.clone(),
            rows: self.rows.clone(),
            columns: self.columns.clone(),
            to_u8: self.to_u8.clone(),
            orient: self.orient.clone(),
            to_srgb: self.to_srgb.clone(),
        })
    }

    /// Resizes `pixels` to `width`×`height` on the device; same result as the CPU reference.
    pub fn resize(&self, pixels: &Pixels, width: u32, height: u32) -> Result<Pixels, String> {
        self.resize_on_device(&self.upload(pixels)?, width, height)
    }

    /// [`CudaResizer::resize`] of an image already on the device (only the result comes back).
    pub fn resize_on_device(
        &self,
        image: &DeviceImage,
        width: u32,
        height: u32,
    ) -> Result<Pixels, String> {
        let steps = resize_steps(image.width, image.height, width, height);
        self.run(image, &steps)
    }

    /// Copies `pixels` to the device (on this resizer's stream).
    pub fn upload(&self, pixels: &Pixels) -> Result<DeviceImage, String> {
        Ok(DeviceImage {
            data: self
                .stream
                .clone_htod(&pixels.data)
                .map_err(cuda("upload"))?,
            width: pixels.width,
            height: pixels.height,
            channels: pixels.channels,
        })
    }

    /// Copies `image` back to the host.
    pub fn download(&self, image: &DeviceImage) -> Result<Pixels, String> {
        let data = self
            .stream
            .clone_dtoh(&image.data)
            .map_err(cuda("download"))?;
        Ok(Pixels::new(image.width, image.height, image.channels, data))
    }

    /// Converts RGB/RGBA `pixels` to sRGB through `shaper` on the device; same result as
    /// [`MatrixShaper::apply`].
    pub fn to_srgb(&self, pixels: &Pixels, shaper: &MatrixShaper) -> Result<Pixels, String> {
        let mut image = self.upload(pixels)?;
        self.to_srgb_on_device(&mut image, shaper)?;
        self.download(&image)
    }

    /// [`CudaResizer::to_srgb`] on an image already on the device, in place.
    pub fn to_srgb_on_device(
        &self,
        image: &mut DeviceImage,
        shaper: &MatrixShaper,
    ) -> Result<(), String> {
        let s = &self.stream;
        let linearize = s.clone_htod(&shaper.linearize).map_err(cuda("upload"))?;
        let matrix = s.clone_htod(&shaper.matrix[..]).map_err(cuda("upload"))?;
        let gamma = s.clone_htod(&shaper.gamma).map_err(cuda("upload"))?;
        let (count, ch, bins) = (
            int(image.width * image.height),
            int(image.channels),
            int(shaper.gamma.len()),
        );
        let mut launch = s.launch_builder(&self.to_srgb);
        launch
            .arg(&mut image.data)
            .arg(&count)
            .arg(&ch)
            .arg(&linearize)
            .arg(&matrix)
            .arg(&gamma)
            .arg(&bins);
        // SAFETY: argument types and order match the kernel's signature; buffers are sized.
        unsafe { launch.launch(LaunchConfig::for_num_elems(image.width * image.height)) }
            .map_err(cuda("to_srgb"))
            .map(|_| ())
    }

    /// Applies EXIF `orientation` (2–8) on the device; same result as `imgpipe_core::orient`.
    pub fn orient(&self, pixels: &Pixels, orientation: u8) -> Result<Pixels, String> {
        let image = self.upload(pixels)?;
        self.download(&self.orient_on_device(&image, orientation)?)
    }

    /// [`CudaResizer::orient`] on an image already on the device.
    pub fn orient_on_device(
        &self,
        image: &DeviceImage,
        orientation: u8,
    ) -> Result<DeviceImage, String> {
        let s = &self.stream;
        let (dw, dh, map) = orientation_map(image.width, image.height, orientation);
        let mut out = s
            .alloc_zeros::<u8>(image.data.len())
            .map_err(cuda("alloc"))?;
        let (idw, idh, ch) = (int(dw), int(dh), int(image.channels));
        let (origin, step_x, step_y) = (map.origin as i64, map.step_x as i64, map.step_y as i64);
        let mut launch = s.launch_builder(&self.orient);
        launch
            .arg(&image.data)
            .arg(&mut out)
            .arg(&idw)
            .arg(&idh)
            .arg(&ch)
            .arg(&origin)
            .arg(&step_x)
            .arg(&step_y);
        // SAFETY: argument types and order match the kernel's signature; buffers are sized.
        unsafe { launch.launch(grid_2d(dw, dh)) }.map_err(cuda("orient"))?;
        Ok(DeviceImage {
            data: out,
            width: dw,
            height: dh,
            channels: image.channels,
        })
    }

    fn run(&self, pixels: &DeviceImage, steps: &ResizeSteps) -> Result<Pixels, String> {
        let s = &self.stream;
        let ch = int(pixels.channels);
        let c = pixels.channels as usize;
        let (sw, sh, width, height) = (
            steps.shrunk_width,
            steps.shrunk_height,
            steps.width,
            steps.height,
        );
        let source = &pixels.data;
        let box_shrunk;
        let shrunk = if steps.box_x > 1 || steps.box_y > 1 {
            let mut out = s
                .alloc_zeros::<u8>((sw * sh) as usize * c)
                .map_err(cuda("alloc"))?;
            let (pw, ph, dw, dh) = (int(pixels.width), int(pixels.height), int(sw), int(sh));
            let (fx, fy) = (int(steps.box_x), int(steps.box_y));
            let mut launch = s.launch_builder(&self.box_shrink);
            launch
                .arg(source)
                .arg(&pw)
                .arg(&ph)
                .arg(&ch)
                .arg(&mut out)
                .arg(&dw)
                .arg(&dh)
                .arg(&fx)
                .arg(&fy);
            // SAFETY: argument types and order match the kernel's signature; buffers are sized.
            unsafe { launch.launch(grid_2d(sw, sh)) }.map_err(cuda("box_shrink"))?;
            box_shrunk = out;
            &box_shrunk
        } else {
            source
        };
        let shrunk_pixels = int(sw * sh);
        let mut float = s
            .alloc_zeros::<f32>((sw * sh) as usize * c)
            .map_err(cuda("alloc"))?;
        let mut launch = s.launch_builder(&self.to_float);
        launch
            .arg(shrunk)
            .arg(&mut float)
            .arg(&shrunk_pixels)
            .arg(&ch);
        // SAFETY: as above.
        unsafe { launch.launch(LaunchConfig::for_num_elems(sw * sh)) }.map_err(cuda("to_float"))?;

        let (starts_x, weights_x) = (
            s.clone_htod(&steps.across.starts).map_err(cuda("upload"))?,
            s.clone_htod(&steps.across.values).map_err(cuda("upload"))?,
        );
        let mut rows = s
            .alloc_zeros::<f32>(width as usize * sh as usize * c)
            .map_err(cuda("alloc"))?;
        let (isw, ish, iw, taps_x) = (int(sw), int(sh), int(width), int(steps.across.taps));
        let mut launch = s.launch_builder(&self.rows);
        launch
            .arg(&float)
            .arg(&isw)
            .arg(&ish)
            .arg(&ch)
            .arg(&starts_x)
            .arg(&weights_x)
            .arg(&taps_x)
            .arg(&mut rows)
            .arg(&iw);
        // SAFETY: as above.
        unsafe { launch.launch(grid_2d(width, sh)) }.map_err(cuda("resample_rows"))?;

        let (starts_y, weights_y) = (
            s.clone_htod(&steps.down.starts).map_err(cuda("upload"))?,
            s.clone_htod(&steps.down.values).map_err(cuda("upload"))?,
        );
        let mut columns = s
            .alloc_zeros::<f32>((width * height) as usize * c)
            .map_err(cuda("alloc"))?;
        let (ih, taps_y) = (int(height), int(steps.down.taps));
        let mut launch = s.launch_builder(&self.columns);
        launch
            .arg(&rows)
            .arg(&iw)
            .arg(&ish)
            .arg(&ch)
            .arg(&starts_y)
            .arg(&weights_y)
            .arg(&taps_y)
            .arg(&mut columns)
            .arg(&ih);
        // SAFETY: as above.
        unsafe { launch.launch(grid_2d(width, height)) }.map_err(cuda("resample_columns"))?;

        let mut out = s
            .alloc_zeros::<u8>((width * height) as usize * c)
            .map_err(cuda("alloc"))?;
        let out_pixels = int(width * height);
        let mut launch = s.launch_builder(&self.to_u8);
        launch.arg(&columns).arg(&mut out).arg(&out_pixels).arg(&ch);
        // SAFETY: as above.
        unsafe { launch.launch(LaunchConfig::for_num_elems(width * height)) }
            .map_err(cuda("to_u8"))?;
        let data = s.clone_dtoh(&out).map_err(cuda("download"))?;
        Ok(Pixels::new(width, height, pixels.channels, data))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use imgpipe_core::kernel::resize_reference;

    fn photo(denominator: u32) -> Pixels {
        let bytes = crate::testing::fixture("large_olympus-e-p3_12mp.jpg");
        let header = imgpipe_core::probe::probe(&bytes).unwrap();
        imgpipe_core::decode::decode(&bytes, &header, denominator, None, 1 << 30).unwrap()
    }

    fn rgba_gradient(width: u32, height: u32) -> Pixels {
        let mut data = Vec::new();
        for y in 0..height {
            for x in 0..width {
                let alpha = if (x / 7 + y / 5) % 3 == 0 {
                    0
                } else {
                    (x * 255 / width) as u8
                };
                data.extend_from_slice(&[(x * 7) as u8, (y * 3) as u8, (x ^ y) as u8, alpha]);
            }
        }
        Pixels::new(width, height, 4, data)
    }

    /// The kernel source, run as C, equals the Rust reference bit for bit: with and without a box
    /// pre-shrink, RGB and premultiplied RGBA.
    #[test]
    fn kernels_on_the_host_equal_the_cpu_reference_exactly() {
        let rgb = photo(8); // 504×378
        let rgba = rgba_gradient(301, 173);
        for (pixels, width, height) in [
            (&rgb, 300, 225), // no pre-shrink
            (&rgb, 50, 37),   // box 5×5
            (&rgb, 31, 300),  // box across only, upscale down
            (&rgba, 120, 70), // premultiplied, no pre-shrink
            (&rgba, 20, 11),  // premultiplied with box
        ] {
            let kernels = host_resize(pixels, width, height);
            let reference = resize_reference(pixels, width, height);
            let differing = kernels
                .data
                .iter()
                .zip(&reference.data)
                .filter(|(a, b)| a != b)
                .count();
            assert_eq!(
                differing, 0,
                "{}×{}×{} → {width}×{height}: {differing} values differ",
                pixels.width, pixels.height, pixels.channels
            );
        }
    }

    /// The orientation kernel, run as C, equals `imgpipe_core::orient` for all eight values, on odd
    /// sizes, RGB and RGBA.
    #[test]
    fn orientation_kernel_on_the_host_equals_the_core() {
        let rgb = Pixels::new(
            37,
            23,
            3,
            (0..37 * 23 * 3).map(|i| (i % 251) as u8).collect(),
        );
        let rgba = rgba_gradient(19, 41);
        for pixels in [&rgb, &rgba] {
            for orientation in 2..=8 {
                let expected = imgpipe_core::orient::orient(pixels.clone(), orientation);
                assert_eq!(
                    host_orient(pixels, orientation),
                    expected,
                    "orientation {orientation}, {} channels",
                    pixels.channels
                );
            }
        }
    }

    fn adobe_rgb() -> (Pixels, MatrixShaper) {
        let bytes = crate::testing::fixture("crafted_icc_adobergb.jpg");
        let header = imgpipe_core::probe::probe(&bytes).unwrap();
        let profile =
            imgpipe_core::colour::Profile::parse(header.icc_profile.as_deref().unwrap()).unwrap();
        let pixels = imgpipe_core::decode::decode(&bytes, &header, 1, None, 1 << 30).unwrap();
        (pixels, MatrixShaper::for_profile(&profile).unwrap())
    }

    /// The colour kernel, run as C, equals its CPU reference bit for bit (RGB photo and RGBA).
    #[test]
    fn colour_kernel_on_the_host_equals_the_cpu_reference_exactly() {
        let (photo, shaper) = adobe_rgb();
        assert_eq!(host_to_srgb(&photo, &shaper), shaper.apply(&photo));
        let rgba = rgba_gradient(67, 45);
        assert_eq!(host_to_srgb(&rgba, &shaper), shaper.apply(&rgba));
    }

    /// On a GPU (IMGPIPE_GPU_TESTS=1, e.g. `make gpu-check`): the device's output equals the CPU
    /// reference; without a device that variable makes this fail rather than pass vacuously.
    #[test]
    fn kernels_on_the_gpu_equal_the_cpu_reference() {
        if std::env::var_os("IMGPIPE_GPU_TESTS").is_none() {
            return;
        }
        let device = crate::find_device().expect("IMGPIPE_GPU_TESTS set but no GPU");
        let resizer = CudaResizer::new(&device).unwrap();
        let rgb = photo(2);
        let rgba = rgba_gradient(1001, 777);
        for (pixels, width, height) in [(&rgb, 1200, 900), (&rgb, 200, 150), (&rgba, 300, 200)] {
            let gpu = resizer.resize(pixels, width, height).unwrap();
            let reference = resize_reference(pixels, width, height);
            let max = imgpipe_core::kernel::max_difference(&gpu, &reference);
            eprintln!("GPU vs CPU reference {width}×{height}: max difference {max}");
            assert!(max <= 1, "{width}×{height}: max difference {max}");
        }
        for orientation in 2..=8 {
            let upright = resizer.orient(&rgba, orientation).unwrap();
            assert_eq!(
                upright,
                imgpipe_core::orient::orient(rgba.clone(), orientation),
                "orientation {orientation}"
            );
        }
        let (photo, shaper) = adobe_rgb();
        assert_eq!(
            resizer.to_srgb(&photo, &shaper).unwrap(),
            shaper.apply(&photo)
        );
    }
}
