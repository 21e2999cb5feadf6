//! The upload API's configuration, read once at start-up from environment variables
//! (docs/upload-api.md). The limits and presets are the derive handler's own variables, so the API
//! promises exactly what the pipeline will accept and produce.

use std::time::Duration;

use imgpipe_cloud::config::{
    ConfigError, Lookup, read_cdn_base_url, read_limits, read_number, read_presets, read_required,
};
use imgpipe_core::{OutputLayout, PresetSet};

/// Everything the API needs besides AWS clients.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    /// `IMGPIPE_INGEST_BUCKET` (required): where uploads go.
    pub ingest_bucket: String,
    /// `IMGPIPE_UPLOAD_PREFIX` (default `uploads/`): keys are `<prefix><id>/<filename>`; must lie
    /// under the ingest notification's prefix.
    pub upload_prefix: String,
    /// `IMGPIPE_OUTPUT_BUCKET` (required): where derivatives and metadata.json are.
    pub output_bucket: String,
    /// `IMGPIPE_OUTPUT_PREFIX` (default `derived/`).
    pub layout: OutputLayout,
    /// `IMGPIPE_PRESETS_FILE` (default: built-in set): the derivatives an upload will get.
    pub presets: PresetSet,
    /// `IMGPIPE_MAX_SOURCE_BYTES` (default 50000000): the largest upload the policy allows.
    pub max_source_bytes: u64,
    /// `IMGPIPE_UPLOAD_EXPIRY_SECONDS` (default 900, 60–604800): how long a pre-signed upload is valid.
    pub upload_expiry: Duration,
    /// `IMGPIPE_CDN_BASE_URL` (default: none): derivative and metadata URLs in responses.
    pub cdn_base_url: Option<String>,
    /// `IMGPIPE_API_PUBLIC_URL` (default: from the request's `Host` and `X-Forwarded-Proto`): base
    /// of the status URLs the API hands out.
    pub public_url: Option<String>,
    /// Queues `GET /v1/health` reports: `IMGPIPE_QUEUE_URL` (jobs), `IMGPIPE_DLQ_URL`,
    /// `IMGPIPE_GPU_QUEUE_URL`, `IMGPIPE_GPU_DLQ_URL`, `IMGPIPE_WEBHOOK_QUEUE_URL`,
    /// `IMGPIPE_WEBHOOK_DLQ_URL`; each optional.
    pub queues: Vec<(&'static str, String)>,
    /// `AWS_ENDPOINT_URL` (default: AWS): LocalStack; upload URLs are then path-style on it.
    pub endpoint_url: Option<String>,
    /// `IMGPIPE_HEALTH_DETAILS` (default `status`): what `GET /v1/health` tells a caller it cannot
    /// tell apart from anyone. `status`: `ok` or `degraded` only; `full`: also the queue depths and
    /// the configuration (buckets, prefixes, limits, presets), an operator's explicit choice.
    pub health_details: bool,
    /// `IMGPIPE_ANONYMOUS_METADATA` (default `public`): what `GET /v1/images/{id}` returns of the
    /// metadata document to a caller no authorizer vouched for. `public`: the image and its
    /// derivatives, without location, capture time, copyright, software, hashes or bucket names
    /// (`Metadata::public_view`); `full`: the whole document, an operator's explicit choice.
    /// Authenticated callers (JWT or IAM) always get the whole document.
    pub anonymous_metadata_full: bool,
    /// `IMGPIPE_ANONYMOUS_FOCUS` (default `refuse`): whether `PUT /v1/images/{id}/focus` accepts
    /// a caller no authorizer vouched for. `refuse`: 401; `allow`: anyone who knows an id may move
    /// its crops, an operator's explicit choice (the local server, a trusted network).
    pub anonymous_focus: bool,
}

impl ApiConfig {
    /// Reads the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok().filter(|v| !v.is_empty()))
    }

    /// Reads configuration through `lookup`.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let lookup: Lookup<'_> = &lookup;
        let expiry = read_number(lookup, "IMGPIPE_UPLOAD_EXPIRY_SECONDS", 900)?;
        if !(60..=604_800).contains(&expiry) {
            return Err(ConfigError {
                variable: "IMGPIPE_UPLOAD_EXPIRY_SECONDS",
                message: format!(
                    "{expiry} is not 60–604800 (a minute to seven days, SigV4's limit)"
                ),
            });
        }
        let public_url = lookup("IMGPIPE_API_PUBLIC_URL");
        if let Some(url) = &public_url
            && !(url.starts_with("https://") || url.starts_with("http://"))
        {
            return Err(ConfigError {
                variable: "IMGPIPE_API_PUBLIC_URL",
                message: format!("'{url}' is not an http(s) URL"),
            });
        }
        let queues = [
            ("jobs", "IMGPIPE_QUEUE_URL"),
            ("jobs_dlq", "IMGPIPE_DLQ_URL"),
            ("gpu", "IMGPIPE_GPU_QUEUE_URL"),
            ("gpu_dlq", "IMGPIPE_GPU_DLQ_URL"),
            ("webhooks", "IMGPIPE_WEBHOOK_QUEUE_URL"),
            ("webhooks_dlq", "IMGPIPE_WEBHOOK_DLQ_URL"),
        ]
        .into_iter()
        .filter_map(|(name, variable)| lookup(variable).map(|url| (name, url)))
        .collect();
        Ok(Self {
            ingest_bucket: read_required(lookup, "IMGPIPE_INGEST_BUCKET")?,
            upload_prefix: lookup("IMGPIPE_UPLOAD_PREFIX").unwrap_or_else(|| "uploads/".into()),
            output_bucket: read_required(lookup, "IMGPIPE_OUTPUT_BUCKET")?,
            layout: OutputLayout {
                prefix: lookup("IMGPIPE_OUTPUT_PREFIX").unwrap_or_else(|| "derived/".into()),
            },
            presets: read_presets(lookup)?,
            max_source_bytes: read_limits(lookup)?.max_source_bytes,
            upload_expiry: Duration::from_secs(expiry),
            cdn_base_url: read_cdn_base_url(lookup)?,
            public_url: public_url.map(|u| u.trim_end_matches('/').to_string()),
            queues,
            endpoint_url: lookup("AWS_ENDPOINT_URL"),
            health_details: read_choice(lookup, "IMGPIPE_HEALTH_DETAILS", "status", "full")?,
            anonymous_metadata_full: read_choice(
                lookup,
                "IMGPIPE_ANONYMOUS_METADATA",
                "public",
                "full",
            )?,
            anonymous_focus: read_choice(lookup, "IMGPIPE_ANONYMOUS_FOCUS", "refuse", "allow")?,
        })
    }

    /// What the API is configured with, for `GET /v1/health` with `IMGPIPE_HEALTH_DETAILS=full`
    /// (no secrets, no credentials).
    pub fn describe(&self) -> serde_json::Value {
        serde_json::json!({
            "ingest_bucket": self.ingest_bucket,
            "upload_prefix": self.upload_prefix,
            "output_bucket": self.output_bucket,
            "output_prefix": self.layout.prefix,
            "max_source_bytes": self.max_source_bytes,
            "upload_expiry_seconds": self.upload_expiry.as_secs(),
            "accepted_content_types": crate::upload::ACCEPTED_CONTENT_TYPES,
            "presets": self.presets.presets().iter().map(|p| &p.name).collect::<Vec<_>>(),
            "preset_set_hash": self.presets.hash(),
            "cdn_base_url": self.cdn_base_url,
        })
    }
}

/// A variable that is `default` (or unset) → false, or `opt_in` → true; anything else is an error.
fn read_choice(
    lookup: Lookup<'_>,
    variable: &'static str,
    default: &str,
    opt_in: &str,
) -> Result<bool, ConfigError> {
    match lookup(variable).as_deref() {
        None => Ok(false),
        Some(value) if value == default => Ok(false),
        Some(value) if value == opt_in => Ok(true),
        Some(other) => Err(ConfigError {
            variable,
            message: format!("'{other}' is neither '{default}' (the default) nor '{opt_in}'"),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn config(pairs: &[(&str, &str)]) -> Result<ApiConfig, ConfigError> {
        let mut map: HashMap<&str, &str> = [
            ("IMGPIPE_INGEST_BUCKET", "in"),
            ("IMGPIPE_OUTPUT_BUCKET", "out"),
        ]
        .into();
        map.extend(pairs.iter().copied());
        ApiConfig::from_lookup(|k| map.get(k).map(|v| v.to_string()).filter(|v| !v.is_empty()))
    }

    #[test]
    fn defaults_are_the_documented_ones() {
        let c = config(&[]).unwrap();
        assert_eq!(c.upload_prefix, "uploads/");
        assert_eq!(c.layout.prefix, "derived/");
        assert_eq!(c.max_source_bytes, 50_000_000);
        assert_eq!(c.upload_expiry, Duration::from_secs(900));
        assert!(c.queues.is_empty() && c.public_url.is_none() && c.cdn_base_url.is_none());
        assert!(
            !c.health_details && !c.anonymous_metadata_full,
            "private by default"
        );
        let c = config(&[
            ("IMGPIPE_HEALTH_DETAILS", "full"),
            ("IMGPIPE_ANONYMOUS_METADATA", "full"),
            ("IMGPIPE_ANONYMOUS_FOCUS", "allow"),
        ])
        .unwrap();
        assert!(c.health_details && c.anonymous_metadata_full && c.anonymous_focus);
    }

    #[test]
    fn bad_values_name_the_variable_and_health_shows_no_secrets() {
        for (variable, value) in [
            ("IMGPIPE_INGEST_BUCKET", ""),
            ("IMGPIPE_UPLOAD_EXPIRY_SECONDS", "10"),
            ("IMGPIPE_UPLOAD_EXPIRY_SECONDS", "soon"),
            ("IMGPIPE_MAX_SOURCE_BYTES", "big"),
            ("IMGPIPE_API_PUBLIC_URL", "api.example.com"),
            ("IMGPIPE_CDN_BASE_URL", "cdn.example.com"),
            ("IMGPIPE_HEALTH_DETAILS", "all"),
            ("IMGPIPE_ANONYMOUS_METADATA", "yes"),
        ] {
            assert_eq!(
                config(&[(variable, value)]).unwrap_err().variable,
                variable,
                "{value}"
            );
        }
        let c = config(&[
            ("IMGPIPE_QUEUE_URL", "http://q"),
            ("IMGPIPE_MAX_SOURCE_BYTES", "1000"),
        ])
        .unwrap();
        assert_eq!(c.queues, [("jobs", "http://q".to_string())]);
        let described = c.describe().to_string();
        assert!(
            described.contains(r#""max_source_bytes":1000"#),
            "{described}"
        );
        assert!(!described.to_lowercase().contains("secret"), "{described}");
    }
}
