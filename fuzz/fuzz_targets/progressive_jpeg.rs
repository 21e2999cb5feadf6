//! Progressive JPEGs through the JPEG decoder at every reduced scale: imgpipe's own progressive
//! decoder first (a new parser of untrusted bytes), libjpeg-turbo for whatever it refuses. Never a
//! panic; every result is an image of the scaled size or an error.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(header) = imgpipe_core::probe::probe(data) else {
        return;
    };
    // Small pictures only: the limits, not this target, keep big ones out of the decoder.
    if header.format != imgpipe_core::format::SourceFormat::Jpeg
        || u64::from(header.width) * u64::from(header.height) > 1 << 20
    {
        return;
    }
    for denominator in [2, 4, 8] {
        if let Ok(pixels) = imgpipe_core::decode::decode(data, &header, denominator, None, 1 << 28) {
            assert_eq!(pixels.width, header.width.div_ceil(denominator));
            assert_eq!(pixels.height, header.height.div_ceil(denominator));
        }
    }
});
