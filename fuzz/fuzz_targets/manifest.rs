//! Batch manifests: JSON lists and objects, CSV with a `key` or `url` column.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = imgpipe_cloud::manifest::parse(data, "ingest-bucket");
});
