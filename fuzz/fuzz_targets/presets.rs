//! Preset files, TOML or JSON (the first byte picks which, as a file name would).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&first, rest)) = data.split_first() else {
        return;
    };
    if let Ok(text) = std::str::from_utf8(rest) {
        let name = if first & 1 == 0 { "presets.toml" } else { "presets.json" };
        if let Ok(set) = imgpipe_core::PresetSet::from_file_text(name, text) {
            let _ = set.hash();
        }
    }
});
