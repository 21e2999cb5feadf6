//! Test helpers shared by the crate's unit tests.

/// The bytes of `tests/fixtures/images/<name>` at the repository root.
pub fn fixture(name: &str) -> Vec<u8> {
    let path = std::path::Path::new(
        &std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR for tests"),
    )
    .join("../../tests/fixtures/images")
    .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}
