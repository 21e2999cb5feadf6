//! The whole core pipeline (probe, limits, EXIF, plan, decode, colour, orient, resize, encode,
//! metadata) on small inputs under tight limits: any byte sequence ends in derivatives or an error.
#![no_main]
#[path = "../../functions/core/tests/fuzz/tight_limits.rs"]
mod tight_limits;

use std::sync::OnceLock;

use imgpipe_core::{Engine, Options, PresetSet, SourceRef, process};
use libfuzzer_sys::fuzz_target;

fn presets() -> &'static PresetSet {
    static PRESETS: OnceLock<PresetSet> = OnceLock::new();
    PRESETS.get_or_init(|| {
        PresetSet::from_toml(
            r#"
[[preset]]
name = "thumb"
width = 24
height = 24
fit = "cover"
format = "jpeg"
quality = 70

[[preset]]
name = "small"
width = 48
fit = "inside"
format = "webp"
quality = 60

[[preset]]
name = "png"
width = 16
fit = "inside"
format = "png"
"#,
        )
        .expect("fuzz presets")
    })
}

fuzz_target!(|data: &[u8]| {
    let options = Options {
        limits: tight_limits::tight_limits(),
        ..Options::default()
    };
    let mut engine = Engine::default();
    let _ = process(data, &SourceRef::default(), presets(), &options, &mut engine);
});
