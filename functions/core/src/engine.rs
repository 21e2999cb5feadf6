//! The per-thread work state and accelerator dispatch: an [`Engine`] resamples on the CPU
//! ([`crate::resize`]) or offers each step (JPEG decode, sRGB conversion, orientation, resample,
//! JPEG encode) to an [`Accelerator`] (the GPU worker's CUDA device). Every call an accelerator fails
//! or declines is done on the CPU, and counted.

use crate::accelerator::Accelerator;
use crate::error::Result;
use crate::pixels::Pixels;
use crate::plan::CropFraction;
use crate::resize::{CpuResizer, Filter, cut};

/// One thread's work state: the CPU resizer (its scratch buffers reused across outputs and images)
/// and, optionally, an [`Accelerator`] that is offered every step it can take.
#[derive(Default)]
pub struct Engine {
    cpu: CpuResizer,
    backend: Option<Box<dyn Accelerator>>,
    backend_failures: u64,
    last_backend_error: Option<String>,
}

impl Engine {
    /// An engine that resamples with `backend`, and with fast_image_resize when it fails.
    pub fn with_backend(backend: Box<dyn Accelerator>) -> Self {
        Self {
            cpu: CpuResizer::default(),
            backend: Some(backend),
            backend_failures: 0,
            last_backend_error: None,
        }
    }

    /// The backend in use (`cpu` without one).
    pub fn backend_name(&self) -> &str {
        self.backend.as_ref().map_or("cpu", |b| b.name())
    }

    /// Calls the backend failed (and the CPU did instead), with the last error, for the caller to log.
    pub fn backend_failures(&self) -> (u64, Option<&str>) {
        (self.backend_failures, self.last_backend_error.as_deref())
    }

    /// Decode ⇒ sRGB ⇒ orientation of a JPEG in one accelerator call when it offers that and every
    /// step can run there (the file suits the device decoder and fits `max_decode_bytes` at full
    /// size; its profile, if any, is sRGB or a matrix-shaper). `None`: run the steps one by one
    /// ([`Engine::decode_jpeg`], [`Engine::to_srgb`], [`Engine::orient`]).
    pub fn decode_upright(
        &mut self,
        bytes: &[u8],
        header: &crate::probe::Header,
        profile: Option<&crate::colour::Profile>,
        orientation: u8,
        max_decode_bytes: u64,
    ) -> Option<Pixels> {
        if self.backend.is_none() || !device_decodable(header, max_decode_bytes) {
            return None;
        }
        let profile = profile.filter(|p| !p.is_srgb());
        let shaper = profile.and_then(crate::colour::MatrixShaper::for_profile);
        if profile.is_some() && shaper.is_none() {
            return None; // gray/LUT profiles need moxcms between decode and orientation
        }
        let expected = if (5..=8).contains(&orientation) {
            (header.height, header.width)
        } else {
            (header.width, header.height)
        };
        let offered =
            self.backend
                .as_mut()?
                .decode_jpeg_upright(bytes, shaper.as_ref(), orientation);
        self.settle_pixels(offered, expected, "upright decode")
    }

    /// Decodes a JPEG on the accelerator when it has a decoder and the file suits it
    /// ([`crate::decode::suits_device_decode`]) and its full-size pixels fit `max_decode_bytes`.
    /// `None`: decode on the CPU (also after a device failure, which is counted).
    pub fn decode_jpeg(
        &mut self,
        bytes: &[u8],
        header: &crate::probe::Header,
        max_decode_bytes: u64,
    ) -> Option<Pixels> {
        if !device_decodable(header, max_decode_bytes) {
            return None;
        }
        let offered = self.backend.as_mut()?.decode_jpeg(bytes);
        self.settle_pixels(offered, (header.width, header.height), "decode")
    }

    /// Encodes a JPEG derivative on the accelerator when it has an encoder (RGBA is flattened onto
    /// `background` first, as on the CPU). `None`: encode on the CPU (also after a counted failure).
    pub fn encode_jpeg(
        &mut self,
        pixels: &Pixels,
        preset: &crate::preset::Preset,
        background: [u8; 3],
    ) -> Option<Vec<u8>> {
        let backend = self.backend.as_mut()?;
        let offered = if pixels.has_alpha() {
            backend.encode_jpeg(&pixels.clone().flatten(background), preset)
        } else {
            backend.encode_jpeg(pixels, preset)
        };
        self.settle(offered)
    }

    /// Converts decoded pixels described by `profile` to sRGB: on the accelerator for RGB
    /// matrix-shaper profiles when it offers it (within a level of moxcms), else with moxcms on the CPU
    /// ([`crate::colour::rgb_to_srgb`], which also handles gray and LUT profiles).
    pub fn to_srgb(&mut self, pixels: Pixels, profile: Option<&crate::colour::Profile>) -> Pixels {
        // The tables are built only when there is a device to take them (never on the CPU path).
        if let Some(backend) = self.backend.as_mut()
            && pixels.channels >= 3
            && let Some(shaper) = profile.and_then(crate::colour::MatrixShaper::for_profile)
        {
            let offered = backend.to_srgb(&pixels, &shaper);
            if let Some(srgb) = self.settle(offered) {
                return srgb;
            }
        }
        crate::colour::rgb_to_srgb(pixels, profile)
    }

    /// Applies EXIF `orientation`: on the accelerator when it offers it, else (or when it fails) on the CPU.
    pub fn orient(&mut self, pixels: Pixels, orientation: u8) -> Pixels {
        if !(2..=8).contains(&orientation) {
            return pixels;
        }
        if let Some(backend) = self.backend.as_mut() {
            let offered = backend.orient(&pixels, orientation);
            if let Some(upright) = self.settle(offered) {
                return upright;
            }
        }
        crate::orient::orient(pixels, orientation)
    }

    /// What an accelerator call came to: its output, or `None` when it was not offered or failed
    /// (the failure is counted).
    fn settle<T>(&mut self, offered: Option<Result<T, String>>) -> Option<T> {
        match offered? {
            Ok(output) => Some(output),
            Err(error) => {
                self.count_failure(error);
                None
            }
        }
    }

    /// [`Engine::settle`] for decoded pixels, which must have the `expected` size.
    fn settle_pixels(
        &mut self,
        offered: Option<Result<Pixels, String>>,
        expected: (u32, u32),
        what: &str,
    ) -> Option<Pixels> {
        let checked = offered.map(|result| {
            result.and_then(|pixels| {
                if (pixels.width, pixels.height) == expected {
                    Ok(pixels)
                } else {
                    Err(format!(
                        "{what} gave {}×{}, expected {}×{}",
                        pixels.width, pixels.height, expected.0, expected.1
                    ))
                }
            })
        });
        self.settle(checked)
    }

    fn count_failure(&mut self, error: String) {
        self.backend_failures += 1;
        let name = self.backend.as_ref().map_or("cpu", |b| b.name());
        self.last_backend_error = Some(format!("{name}: {error}"));
    }

    /// Resamples the `crop` region of `source` to `width`×`height` with Lanczos3.
    /// RGBA is resized with premultiplied alpha, so transparent pixels do not bleed colour.
    pub fn resize(
        &mut self,
        source: &Pixels,
        crop: CropFraction,
        width: u32,
        height: u32,
    ) -> Result<Pixels> {
        self.resize_from(source, false, crop, width, height)
    }

    /// [`Engine::resize`] of the current image's upright frame: a whole-frame resample goes to
    /// [`Accelerator::resample_upright`], which may use a copy already on the device.
    pub fn resize_upright(
        &mut self,
        upright: &Pixels,
        crop: CropFraction,
        width: u32,
        height: u32,
    ) -> Result<Pixels> {
        self.resize_from(upright, true, crop, width, height)
    }

    /// Tells the accelerator the current image is finished (or a new one begins): it drops what it
    /// kept on the device for it.
    pub fn release_image(&mut self) {
        if let Some(backend) = self.backend.as_mut() {
            backend.release_image();
        }
    }

    fn resize_from(
        &mut self,
        source: &Pixels,
        is_upright: bool,
        crop: CropFraction,
        width: u32,
        height: u32,
    ) -> Result<Pixels> {
        if crop.is_full() && source.width == width && source.height == height {
            return Ok(source.clone());
        }
        if let Some(backend) = self.backend.as_mut() {
            let cropped;
            let whole = if crop.is_full() {
                source
            } else {
                cropped = cut(source, crop);
                &cropped
            };
            let resampled = if is_upright && crop.is_full() {
                backend.resample_upright(whole, width, height)
            } else {
                backend.resample(whole, width, height)
            };
            if let Some(pixels) = self.settle(Some(resampled)) {
                return Ok(pixels);
            }
        }
        self.resize_on_cpu(source, crop, width, height, Filter::Lanczos3)
    }

    /// Averages `source` down to `width`×`height` with a box filter, on the CPU: for summaries of
    /// the picture (the ThumbHash placeholder and its colours), where Lanczos3's sharpness buys nothing
    /// and its 6× wider support costs milliseconds on a large source. Never for derivatives.
    pub fn resize_box(&mut self, source: &Pixels, width: u32, height: u32) -> Result<Pixels> {
        if source.width == width && source.height == height {
            return Ok(source.clone());
        }
        self.resize_on_cpu(source, CropFraction::FULL, width, height, Filter::Box)
    }

    fn resize_on_cpu(
        &mut self,
        source: &Pixels,
        crop: CropFraction,
        width: u32,
        height: u32,
        filter: Filter,
    ) -> Result<Pixels> {
        self.cpu.resample(source, crop, width, height, filter)
    }
}

/// Whether the device decoder may take this file: it suits it and its full-size RGB fits the limit.
fn device_decodable(header: &crate::probe::Header, max_decode_bytes: u64) -> bool {
    let full_size = u64::from(header.width) * u64::from(header.height) * 3;
    crate::decode::suits_device_decode(header) && full_size <= max_decode_bytes
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::fixture;

    struct Failing;
    impl Accelerator for Failing {
        fn name(&self) -> &str {
            "failing"
        }
        fn resample(&mut self, _: &Pixels, _: u32, _: u32) -> Result<Pixels, String> {
            Err("no device".into())
        }
    }

    /// Records the crops it is given and answers with a flat image.
    struct Recording(std::sync::Arc<std::sync::Mutex<Vec<(u32, u32, u8)>>>);
    impl Accelerator for Recording {
        fn name(&self) -> &str {
            "recording"
        }
        fn resample(&mut self, source: &Pixels, width: u32, height: u32) -> Result<Pixels, String> {
            self.0
                .lock()
                .unwrap()
                .push((source.width, source.height, source.data[0]));
            Ok(Pixels::new(
                width,
                height,
                3,
                vec![7; (width * height * 3) as usize],
            ))
        }
    }

    #[test]
    fn a_backend_gets_the_cut_out_crop_and_a_failing_one_falls_back_to_the_cpu() {
        let mut data = Vec::new();
        for _y in 0..10 {
            for x in 0..20u8 {
                data.extend([x, x, x]);
            }
        }
        let source = Pixels::new(20, 10, 3, data);
        let crop = CropFraction {
            left: 0.5,
            top: 0.0,
            width: 0.5,
            height: 1.0,
        };
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let mut engine = Engine::with_backend(Box::new(Recording(seen.clone())));
        let out = engine.resize(&source, crop, 5, 5).unwrap();
        assert_eq!(out.data[0], 7);
        assert_eq!(*seen.lock().unwrap(), [(10, 10, 10)]);

        let mut fallback = Engine::with_backend(Box::new(Failing));
        let cpu = Engine::default().resize(&source, crop, 5, 5).unwrap();
        assert_eq!(fallback.resize(&source, crop, 5, 5).unwrap(), cpu);
        assert_eq!(fallback.backend_failures(), (1, Some("failing: no device")));
    }

    /// Decodes to a flat image and mirrors for orientation; or fails everything it is offered.
    struct Device {
        fails: bool,
    }
    impl Accelerator for Device {
        fn name(&self) -> &str {
            "device"
        }
        fn resample(&mut self, _: &Pixels, _: u32, _: u32) -> Result<Pixels, String> {
            Err("resample not under test".into())
        }
        fn decode_jpeg(&mut self, _bytes: &[u8]) -> Option<Result<Pixels, String>> {
            Some(if self.fails {
                Err("decoder lost".into())
            } else {
                Ok(Pixels::new(4032, 3024, 3, vec![9; 4032 * 3024 * 3]))
            })
        }
        fn to_srgb(
            &mut self,
            pixels: &Pixels,
            shaper: &crate::colour::MatrixShaper,
        ) -> Option<Result<Pixels, String>> {
            Some(if self.fails {
                Err("colour lost".into())
            } else {
                Ok(shaper.apply(pixels))
            })
        }
        fn orient(&mut self, pixels: &Pixels, orientation: u8) -> Option<Result<Pixels, String>> {
            Some(if self.fails {
                Err("orient lost".into())
            } else {
                Ok(crate::orient::orient(pixels.clone(), orientation))
            })
        }
    }

    #[test]
    fn the_device_decodes_what_suits_it_and_what_fits_the_limit() {
        let baseline = fixture("large_olympus-e-p3_12mp.jpg"); // 4032×3024
        let header = crate::probe::probe(&baseline).unwrap();
        let mut engine = Engine::with_backend(Box::new(Device { fails: false }));
        let decoded = engine.decode_jpeg(&baseline, &header, 1 << 30).unwrap();
        assert_eq!(
            (decoded.width, decoded.height, decoded.data[0]),
            (4032, 3024, 9)
        );
        // Too large for the decode limit at full size: the CPU decodes it (shrink-on-load).
        assert!(engine.decode_jpeg(&baseline, &header, 1 << 20).is_none());
        let progressive = fixture("progressive_nikon-d300_exif.jpeg");
        let header_p = crate::probe::probe(&progressive).unwrap();
        assert!(
            engine
                .decode_jpeg(&progressive, &header_p, 1 << 30)
                .is_none()
        );
        assert_eq!(engine.backend_failures(), (0, None));
        // No accelerator, or one that fails: the CPU decodes, and the failure is counted.
        assert!(
            Engine::default()
                .decode_jpeg(&baseline, &header, 1 << 30)
                .is_none()
        );
        let mut failing = Engine::with_backend(Box::new(Device { fails: true }));
        assert!(failing.decode_jpeg(&baseline, &header, 1 << 30).is_none());
        assert_eq!(
            failing.backend_failures(),
            (1, Some("device: decoder lost"))
        );
    }

    #[test]
    fn orientation_goes_to_the_device_and_falls_back_to_the_same_result() {
        let source = Pixels::new(5, 3, 3, (0..45).collect());
        let cpu = crate::orient::orient(source.clone(), 6);
        let mut device = Engine::with_backend(Box::new(Device { fails: false }));
        assert_eq!(device.orient(source.clone(), 6), cpu);
        let mut failing = Engine::with_backend(Box::new(Device { fails: true }));
        assert_eq!(failing.orient(source.clone(), 6), cpu);
        assert_eq!(failing.backend_failures(), (1, Some("device: orient lost")));
        // Orientation 1 is never offered: nothing to count.
        assert_eq!(failing.orient(source.clone(), 1), source);
        assert_eq!(failing.backend_failures().0, 1);
    }

    #[test]
    fn matrix_shaper_profiles_convert_on_the_device_others_on_the_cpu() {
        let bytes = fixture("crafted_icc_adobergb.jpg");
        let header = crate::probe::probe(&bytes).unwrap();
        let profile =
            crate::colour::Profile::parse(header.icc_profile.as_deref().unwrap()).unwrap();
        let pixels = crate::decode::decode(&bytes, &header, 8, None, 1 << 30).unwrap();
        let shaper = crate::colour::MatrixShaper::for_profile(&profile).unwrap();
        let moxcms = crate::colour::rgb_to_srgb(pixels.clone(), Some(&profile));

        let mut device = Engine::with_backend(Box::new(Device { fails: false }));
        assert_eq!(
            device.to_srgb(pixels.clone(), Some(&profile)),
            shaper.apply(&pixels)
        );
        // No profile: nothing to convert, nothing offered.
        assert_eq!(device.to_srgb(pixels.clone(), None), pixels);
        assert_eq!(device.backend_failures(), (0, None));

        let mut failing = Engine::with_backend(Box::new(Device { fails: true }));
        assert_eq!(failing.to_srgb(pixels.clone(), Some(&profile)), moxcms);
        assert_eq!(failing.backend_failures(), (1, Some("device: colour lost")));
        assert_eq!(
            Engine::default().to_srgb(pixels.clone(), Some(&profile)),
            moxcms
        );
    }

    /// Records what the fused call was given and answers with a flat image of `size`.
    struct Upright {
        seen: std::sync::Arc<std::sync::Mutex<Vec<(bool, u8)>>>,
        size: (u32, u32),
    }
    impl Accelerator for Upright {
        fn name(&self) -> &str {
            "upright"
        }
        fn resample(&mut self, _: &Pixels, _: u32, _: u32) -> Result<Pixels, String> {
            Err("resample not under test".into())
        }
        fn decode_jpeg_upright(
            &mut self,
            _bytes: &[u8],
            shaper: Option<&crate::colour::MatrixShaper>,
            orientation: u8,
        ) -> Option<Result<Pixels, String>> {
            self.seen
                .lock()
                .unwrap()
                .push((shaper.is_some(), orientation));
            let (w, h) = self.size;
            Some(Ok(Pixels::new(w, h, 3, vec![5; (w * h * 3) as usize])))
        }
    }

    #[test]
    fn decode_colour_and_orientation_fuse_into_one_device_call_when_all_can_run_there() {
        let baseline = fixture("large_olympus-e-p3_12mp.jpg"); // 4032×3024, no profile
        let header = crate::probe::probe(&baseline).unwrap();
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let mut engine = Engine::with_backend(Box::new(Upright {
            seen: seen.clone(),
            size: (3024, 4032),
        }));
        let upright = engine
            .decode_upright(&baseline, &header, None, 6, 1 << 30)
            .unwrap();
        assert_eq!((upright.width, upright.height), (3024, 4032));
        // The same answer for orientation 1 is the wrong size: counted, and the steps run apart.
        assert!(
            engine
                .decode_upright(&baseline, &header, None, 1, 1 << 30)
                .is_none()
        );
        assert_eq!(engine.backend_failures().0, 1);
        // A matrix-shaper profile travels with the call as tables.
        let adobe = fixture("crafted_icc_adobergb.jpg");
        let adobe_header = crate::probe::probe(&adobe).unwrap();
        let profile =
            crate::colour::Profile::parse(adobe_header.icc_profile.as_deref().unwrap()).unwrap();
        let _ = engine.decode_upright(&adobe, &adobe_header, Some(&profile), 1, 1 << 30);
        assert_eq!(*seen.lock().unwrap(), [(false, 6), (false, 1), (true, 1)]);
        // Progressive sources are never offered; nor is anything without an accelerator.
        let progressive = fixture("progressive_nikon-d300_exif.jpeg");
        let p_header = crate::probe::probe(&progressive).unwrap();
        assert!(
            engine
                .decode_upright(&progressive, &p_header, None, 1, 1 << 30)
                .is_none()
        );
        assert_eq!(seen.lock().unwrap().len(), 3);
        assert!(
            Engine::default()
                .decode_upright(&baseline, &header, None, 6, 1 << 30)
                .is_none()
        );
    }
}
