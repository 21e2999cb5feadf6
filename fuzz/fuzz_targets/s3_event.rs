//! SQS message bodies: S3 notifications (direct, SNS-wrapped, test events), import and backfill jobs.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(body) = std::str::from_utf8(data) {
        let _ = imgpipe_cloud::event::parse_body(body);
    }
});
