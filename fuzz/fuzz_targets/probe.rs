//! The header probe of every format (JPEG, PNG, GIF, WebP, TIFF, BMP, HEIC, AVIF, JPEG XL), then the
//! plan and the memory prediction it feeds: never a panic, and never dimensions over the limits
//! passed on as if checked.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(header) = imgpipe_core::probe::probe(data) {
        let presets = imgpipe_core::PresetSet::default_set();
        let plan = imgpipe_core::plan::plan(&header, header.orientation.unwrap_or(1), &presets);
        let _ = imgpipe_core::memory::estimate(data.len() as u64, &plan, &header, 1);
    }
});
