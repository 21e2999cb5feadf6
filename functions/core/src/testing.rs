//! Test helpers shared by the crate's unit tests.

/// The bytes of `tests/fixtures/images/<name>` (see tests/fixtures/images/README.md).
pub fn fixture(name: &str) -> Vec<u8> {
    let path = std::path::Path::new(
        &std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR for tests"),
    )
    .join("../../tests/fixtures/images")
    .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Panics with every violation when `metadata` does not conform to the metadata JSON Schema.
pub fn assert_valid_metadata(metadata: &crate::metadata::Metadata) {
    let value = serde_json::to_value(metadata).unwrap();
    let schema: serde_json::Value = serde_json::from_str(crate::metadata::JSON_SCHEMA).unwrap();
    let validator = jsonschema::validator_for(&schema).unwrap();
    let errors: Vec<String> = validator
        .iter_errors(&value)
        .map(|e| format!("{e} at {}", e.instance_path()))
        .collect();
    assert!(errors.is_empty(), "{value}\n{}", errors.join("\n"));
}

/// A source in bucket `b` at `key`, with no ETag: what the pipeline's unit tests process.
pub fn source(key: &str) -> crate::SourceRef {
    crate::SourceRef {
        bucket: "b".into(),
        key: key.into(),
        ..Default::default()
    }
}
