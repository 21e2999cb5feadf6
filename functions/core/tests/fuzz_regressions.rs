//! Every input `make fuzz` found (tests/fixtures/fuzz/, one line each in its README) goes through
//! the header probe, the plan and the memory prediction without limits, then the whole pipeline
//! under tight limits: each ends in an error or derivatives, never a panic.

use std::path::Path;

#[path = "fuzz/tight_limits.rs"]
mod tight_limits;

use imgpipe_core::{Engine, Limits, Options, PresetSet, SourceRef, memory, plan, probe, process};

#[test]
fn fuzzing_findings_end_in_errors_or_outputs_never_panics() {
    let dir = Path::new(
        &std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR for tests"),
    )
    .join("../../tests/fixtures/fuzz");
    let presets = PresetSet::default_set();
    let tight = Options {
        limits: tight_limits::tight_limits(),
        ..Options::default()
    };
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("bin") {
            continue;
        }
        let bytes = std::fs::read(&path).unwrap();
        if let Ok(header) = probe::probe(&bytes) {
            // The plan and the estimate take any header (the fuzz target `probe` calls them so).
            let planned = plan::plan(&header, header.orientation.unwrap_or(1), &presets);
            let estimate = memory::estimate(bytes.len() as u64, &planned, &header, 1);
            assert!(estimate.bytes >= estimate.source, "{}", path.display());
        }
        let _ = memory::predict_peak(&bytes, &presets, &Limits::default());
        let _ = process(
            &bytes,
            &SourceRef::default(),
            &presets,
            &tight,
            &mut Engine::default(),
        );
        seen += 1;
    }
    assert!(seen >= 1, "no findings in {}", dir.display());
}
