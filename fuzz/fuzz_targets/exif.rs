//! EXIF in every container the reader understands (JPEG APP1, TIFF, PNG eXIf, WebP, HEIF items).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = imgpipe_core::exif::read(data);
});
