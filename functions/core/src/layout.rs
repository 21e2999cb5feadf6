//! Where outputs go: `<prefix><source key>/<preset>.<ext>` and `<prefix><source key>/metadata.json`.

/// The output key layout. The prefix keeps outputs away from the ingest keys, so a misconfigured
/// notification on the output location can be recognised and ignored (no processing loops).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputLayout {
    /// Prefix of every output key (e.g. `derived/`); may be empty when outputs have their own bucket.
    pub prefix: String,
}

impl Default for OutputLayout {
    fn default() -> Self {
        Self {
            prefix: "derived/".into(),
        }
    }
}

impl OutputLayout {
    /// Key of a derivative.
    pub fn derivative_key(&self, source_key: &str, preset: &str, extension: &str) -> String {
        format!("{}{source_key}/{preset}.{extension}", self.prefix)
    }

    /// Key of the metadata document.
    pub fn metadata_key(&self, source_key: &str) -> String {
        format!("{}{source_key}/metadata.json", self.prefix)
    }

    /// True when `key` lies under the output prefix (only meaningful when the bucket is the output bucket).
    pub fn contains(&self, key: &str) -> bool {
        key.starts_with(&self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_follow_the_layout() {
        let layout = OutputLayout::default();
        assert_eq!(
            layout.derivative_key("a b/ü.jpg", "thumbnail", "jpg"),
            "derived/a b/ü.jpg/thumbnail.jpg"
        );
        assert_eq!(layout.metadata_key("x.png"), "derived/x.png/metadata.json");
        assert!(layout.contains("derived/x.png/metadata.json"));
        assert!(!layout.contains("uploads/x.png"));
    }
}
