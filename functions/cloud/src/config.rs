//! Deployment configuration, read once at start-up from environment variables. Every setting has a
//! documented default (docs/configuration.md); a bad value or a bad preset file stops start-up
//! with a message naming the variable.

use std::time::Duration;

use imgpipe_core::route::RoutingRule;
use imgpipe_core::{GpsPolicy, Limits, OutputLayout, PresetSet};

/// Everything the handler needs besides AWS clients.
#[derive(Debug, Clone)]
pub struct Config {
    /// `IMGPIPE_INGEST_BUCKET` (required): the bucket whose uploads this stack processes. A record
    /// or manifest item of any other bucket (save `backfill_buckets`) is refused unread
    /// (`foreign_bucket`): output keys depend on the source key only, so another bucket's delete
    /// would otherwise delete this bucket's outputs.
    pub ingest_bucket: String,
    /// `IMGPIPE_BACKFILL_BUCKETS` (comma-separated, default none): archive buckets that manifests
    /// and `imgpipe backfill --bucket` may name besides the ingest bucket. Reading them is the
    /// operator's grant to give.
    pub backfill_buckets: Vec<String>,
    /// `IMGPIPE_OUTPUT_BUCKET` (required): bucket for derivatives and metadata.
    pub output_bucket: String,
    /// `IMGPIPE_OUTPUT_PREFIX` (default `derived/`): key prefix of every output.
    pub layout: OutputLayout,
    /// `IMGPIPE_DLQ_URL` (required): queue that receives permanently failed messages with their reason.
    pub dlq_url: String,
    /// `IMGPIPE_PRESETS_FILE` (default: built-in set): TOML or JSON preset file.
    pub presets: PresetSet,
    /// `IMGPIPE_MAX_SOURCE_BYTES`, `IMGPIPE_MAX_PIXELS`, `IMGPIPE_MAX_WIDTH`, `IMGPIPE_MAX_HEIGHT`,
    /// `IMGPIPE_MAX_FRAMES`, `IMGPIPE_MAX_DECODE_MIB`.
    pub limits: Limits,
    /// `IMGPIPE_GPS` (`include` | `coarse` | `omit`, default `include`): GPS in metadata (never in
    /// derivatives).
    pub gps: GpsPolicy,
    /// `IMGPIPE_CDN_BASE_URL` (default: none): public base URL of the derivatives; metadata lists URLs.
    pub cdn_base_url: Option<String>,
    /// `IMGPIPE_CDN_DISTRIBUTION_ID` (default: none): CloudFront distribution whose cached copies of
    /// deleted outputs are invalidated.
    pub cdn_distribution_id: Option<String>,
    /// `IMGPIPE_JPEG_BACKGROUND` (default `#ffffff`): colour under transparent pixels in JPEG outputs.
    pub background: [u8; 3],
    /// `IMGPIPE_CACHE_CONTROL` (default `public, max-age=86400, s-maxage=31536000`): on derivatives.
    pub cache_control: String,
    /// `IMGPIPE_METADATA_CACHE_CONTROL` (default `private, max-age=60`): on metadata.json (which no
    /// CDN serves: it holds personal fields).
    pub metadata_cache_control: String,
    /// `IMGPIPE_MAX_ATTEMPTS` (default 5, = the queue's maxReceiveCount): receives before a transient
    /// failure is dead-lettered by the handler with its reason.
    pub max_attempts: u32,
    /// `IMGPIPE_RETRY_BASE_SECONDS` (default 10): first retry delay; doubles per receive.
    pub retry_base: Duration,
    /// `IMGPIPE_RETRY_MAX_SECONDS` (default 900): longest retry delay.
    pub retry_max: Duration,
    /// `IMGPIPE_CONCURRENCY` (default: CPU count): images processed at once per process.
    pub concurrency: usize,
    /// `IMGPIPE_ENCODE_THREADS` (default 1): threads encoding one image's derivatives at once; raise
    /// it on a Lambda with ≥ 2 vCPU (1 769 MB is one vCPU), where images come one at a time.
    pub encode_threads: usize,
    /// `IMGPIPE_MEMORY_MIB` (`--memory-mib`; under Lambda default `AWS_LAMBDA_FUNCTION_MEMORY_SIZE`):
    /// the process's memory budget. Images are admitted while their predicted peaks fit it (see
    /// [`crate::admission`]); `None` (a worker without the setting) admits by `concurrency` only.
    pub memory_mib: Option<u64>,
    /// `AWS_ENDPOINT_URL` (default: AWS): set for LocalStack; switches S3 to path-style addressing.
    pub endpoint_url: Option<String>,
    /// GPU routing; `None` (the default, no `IMGPIPE_GPU_QUEUE_URL`) processes everything here.
    pub routing: Option<Routing>,
    /// `IMGPIPE_EVENTS_TOPIC_ARN` (default: none, no events): SNS topic that receives
    /// `imgpipe.image.done` / `imgpipe.image.failed` / `imgpipe.batch.done`.
    pub events_topic_arn: Option<String>,
    /// `IMGPIPE_METRICS` (`emf` | `off`, default `emf`): per-record CloudWatch metrics as Embedded
    /// Metric Format lines on stdout ([`crate::metrics`]).
    pub metrics: bool,
    /// `IMGPIPE_STACK_NAME` (default `imgpipe`; the template sets the stack's name): the `Stack`
    /// dimension of the metrics, which the template's alarms select.
    pub stack_name: String,
    /// URL imports from manifests: `IMGPIPE_IMPORT_ALLOW_HOSTS` (comma-separated `host`,
    /// `host:port`, `*.domain`; default empty: every URL refused), `IMGPIPE_IMPORT_ALLOW_HTTP`
    /// (default false), `IMGPIPE_IMPORT_TIMEOUT_SECONDS` (default 30); the byte limit is
    /// `IMGPIPE_MAX_SOURCE_BYTES`.
    pub import: crate::importer::ImportPolicy,
    /// `IMGPIPE_FANOUT_SECONDS` (default 30): a manifest's fan-out stops starting slices after
    /// this long and sends itself to `jobs_queue_url` as a continuation, which resumes from the
    /// stored cursor (a Lambda's default timeout is 60 s). 0: one slice per invocation.
    pub fanout_budget: Duration,
    /// `IMGPIPE_FANOUT_SLICE` (default 1000): queued items sent between two saves of the cursor.
    pub fanout_slice: usize,
    /// `IMGPIPE_QUEUE_URL` (default: none): the jobs queue, where a fan-out out of time sends its
    /// continuation; without it the fan-out runs to the end in one invocation.
    pub jobs_queue_url: Option<String>,
    /// `IMGPIPE_IMPORT_PREFIX` (default `imports/`): where imported files are written in the
    /// manifest's bucket; it must be under the ingest notification's prefix.
    pub import_prefix: String,
}

/// Where heavy jobs go, and which are heavy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Routing {
    /// `IMGPIPE_GPU_QUEUE_URL`: the GPU worker's queue. Setting it turns routing on.
    pub gpu_queue_url: String,
    /// `IMGPIPE_GPU_MIN_PIXELS` (default 40000000), `IMGPIPE_GPU_MIN_BYTES` (default 25000000),
    /// `IMGPIPE_BATCH_PREFIXES` (comma-separated key prefixes, default none), `IMGPIPE_MANIFEST_PREFIX`
    /// (default none). A threshold of 0 turns that rule off.
    pub rule: RoutingRule,
}

/// A configuration error: which variable, and why.
#[derive(Debug, thiserror::Error)]
#[error("configuration: {variable}: {message}")]
pub struct ConfigError {
    /// The environment variable at fault.
    pub variable: &'static str,
    /// What is wrong with it.
    pub message: String,
}

impl Config {
    /// Reads the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok().filter(|v| !v.is_empty()))
    }

    /// Reads configuration through `lookup` (the environment in production, a map in tests).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let lookup: &dyn Fn(&str) -> Option<String> = &lookup;
        let required = |variable| read_required(lookup, variable);
        let number = |variable, default| read_number(lookup, variable, default);
        let presets = read_presets(lookup)?;
        let limits = read_limits(lookup)?;
        let gps = match lookup("IMGPIPE_GPS").as_deref() {
            None | Some("include") => GpsPolicy::Include,
            Some("coarse") => GpsPolicy::Coarse,
            Some("omit") => GpsPolicy::Omit,
            Some(other) => {
                return Err(ConfigError {
                    variable: "IMGPIPE_GPS",
                    message: format!("'{other}' is not 'include', 'coarse' or 'omit'"),
                });
            }
        };
        let cdn_base_url = read_cdn_base_url(lookup)?;
        let background = read_background(lookup)?;
        let max_attempts = number("IMGPIPE_MAX_ATTEMPTS", 5)?;
        if max_attempts == 0 {
            return Err(ConfigError {
                variable: "IMGPIPE_MAX_ATTEMPTS",
                message: "must be at least 1".into(),
            });
        }
        let memory_mib = match lookup("IMGPIPE_MEMORY_MIB")
            .map(|v| ("IMGPIPE_MEMORY_MIB", v))
            .or_else(|| {
                lookup("AWS_LAMBDA_FUNCTION_MEMORY_SIZE")
                    .map(|v| ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", v))
            }) {
            None => None,
            Some((variable, v)) => match v.trim().parse::<u64>() {
                Ok(mib) if mib >= 128 => Some(mib),
                _ => {
                    return Err(ConfigError {
                        variable,
                        message: format!("'{v}' is not a memory size in MiB (at least 128)"),
                    });
                }
            },
        };
        let concurrency = number(
            "IMGPIPE_CONCURRENCY",
            std::thread::available_parallelism().map_or(2, |n| n.get() as u64),
        )?;
        let routing = match lookup("IMGPIPE_GPU_QUEUE_URL") {
            None => None,
            Some(gpu_queue_url) => {
                let defaults = RoutingRule::default();
                let prefixes = |variable: &str| -> Vec<String> {
                    lookup(variable)
                        .map(|v| {
                            v.split(',')
                                .map(str::trim)
                                .filter(|p| !p.is_empty())
                                .map(String::from)
                                .collect()
                        })
                        .unwrap_or_default()
                };
                Some(Routing {
                    gpu_queue_url,
                    rule: RoutingRule {
                        gpu_min_pixels: number("IMGPIPE_GPU_MIN_PIXELS", defaults.gpu_min_pixels)?,
                        gpu_min_bytes: number("IMGPIPE_GPU_MIN_BYTES", defaults.gpu_min_bytes)?,
                        batch_prefixes: prefixes("IMGPIPE_BATCH_PREFIXES"),
                        manifest_prefix: lookup("IMGPIPE_MANIFEST_PREFIX"),
                    },
                })
            }
        };
        Ok(Self {
            ingest_bucket: required("IMGPIPE_INGEST_BUCKET")?,
            backfill_buckets: lookup("IMGPIPE_BACKFILL_BUCKETS")
                .map(|v| {
                    v.split(',')
                        .map(str::trim)
                        .filter(|b| !b.is_empty())
                        .map(String::from)
                        .collect()
                })
                .unwrap_or_default(),
            output_bucket: required("IMGPIPE_OUTPUT_BUCKET")?,
            layout: read_layout(lookup),
            dlq_url: required("IMGPIPE_DLQ_URL")?,
            presets,
            limits,
            gps,
            cdn_base_url,
            cdn_distribution_id: lookup("IMGPIPE_CDN_DISTRIBUTION_ID"),
            background,
            cache_control: lookup("IMGPIPE_CACHE_CONTROL")
                .unwrap_or_else(|| DEFAULT_CACHE_CONTROL.into()),
            metadata_cache_control: lookup("IMGPIPE_METADATA_CACHE_CONTROL")
                .unwrap_or_else(|| "private, max-age=60".into()),
            max_attempts: max_attempts as u32,
            retry_base: Duration::from_secs(number("IMGPIPE_RETRY_BASE_SECONDS", 10)?),
            retry_max: Duration::from_secs(number("IMGPIPE_RETRY_MAX_SECONDS", 900)?),
            concurrency: concurrency.max(1) as usize,
            encode_threads: number("IMGPIPE_ENCODE_THREADS", 1)?.clamp(1, 64) as usize,
            memory_mib,
            endpoint_url: lookup("AWS_ENDPOINT_URL"),
            routing,
            events_topic_arn: lookup("IMGPIPE_EVENTS_TOPIC_ARN"),
            metrics: match lookup("IMGPIPE_METRICS").as_deref() {
                None | Some("emf") => true,
                Some("off") => false,
                Some(other) => {
                    return Err(ConfigError {
                        variable: "IMGPIPE_METRICS",
                        message: format!("'{other}' is not 'emf' or 'off'"),
                    });
                }
            },
            stack_name: lookup("IMGPIPE_STACK_NAME").unwrap_or_else(|| "imgpipe".into()),
            fanout_budget: Duration::from_secs(number("IMGPIPE_FANOUT_SECONDS", 30)?),
            fanout_slice: number("IMGPIPE_FANOUT_SLICE", 1000)?.clamp(1, 50_000) as usize,
            jobs_queue_url: lookup("IMGPIPE_QUEUE_URL"),
            import: crate::importer::ImportPolicy {
                allow: crate::url_policy::AllowList::parse(
                    &lookup("IMGPIPE_IMPORT_ALLOW_HOSTS").unwrap_or_default(),
                )
                .map_err(|message| ConfigError {
                    variable: "IMGPIPE_IMPORT_ALLOW_HOSTS",
                    message,
                })?,
                allow_http: match lookup("IMGPIPE_IMPORT_ALLOW_HTTP").as_deref() {
                    None | Some("false") => false,
                    Some("true") => true,
                    Some(other) => {
                        return Err(ConfigError {
                            variable: "IMGPIPE_IMPORT_ALLOW_HTTP",
                            message: format!("'{other}' is not 'true' or 'false'"),
                        });
                    }
                },
                max_bytes: limits.max_source_bytes,
                timeout: Duration::from_secs(number("IMGPIPE_IMPORT_TIMEOUT_SECONDS", 30)?.max(1)),
            },
            import_prefix: lookup("IMGPIPE_IMPORT_PREFIX").unwrap_or_else(|| "imports/".into()),
        })
    }

    /// The core pipeline options this configuration implies.
    pub fn pipeline_options(&self) -> imgpipe_core::Options {
        imgpipe_core::Options {
            limits: self.limits,
            gps: self.gps,
            background: self.background,
            layout: self.layout.clone(),
            cdn_base_url: self.cdn_base_url.clone(),
            encode_threads: self.encode_threads,
            ..imgpipe_core::Options::default()
        }
    }

    /// True when `bucket` is this stack's ingest bucket or one of `IMGPIPE_BACKFILL_BUCKETS`.
    pub fn accepts_bucket(&self, bucket: &str) -> bool {
        bucket == self.ingest_bucket || self.backfill_buckets.iter().any(|b| b == bucket)
    }

    /// Why `bucket` is refused, for the dead letter and the manifest summary.
    pub fn foreign_bucket_reason(&self, bucket: &str) -> String {
        format!(
            "bucket '{bucket}' is not this stack's ingest bucket ({}) or one of IMGPIPE_BACKFILL_BUCKETS; nothing was read, written or deleted: check the bucket notification, the jobs queue policy or the manifest",
            self.ingest_bucket
        )
    }

    /// Delay before the next attempt after `receive_count` receives: base × 2^(n−1), capped.
    pub fn retry_delay(&self, receive_count: u32) -> Duration {
        let factor = 1u32
            .checked_shl(receive_count.saturating_sub(1).min(20))
            .unwrap_or(u32::MAX);
        self.retry_base.saturating_mul(factor).min(self.retry_max)
    }
}

/// `IMGPIPE_CACHE_CONTROL`'s default: a day in browsers, a year at the CDN (outputs never change
/// under a key: a re-upload's replaced files are invalidated).
pub const DEFAULT_CACHE_CONTROL: &str = "public, max-age=86400, s-maxage=31536000";

/// An environment lookup: the process environment in production, a map in tests.
pub type Lookup<'a> = &'a dyn Fn(&str) -> Option<String>;

/// A variable that must be set.
pub fn read_required(lookup: Lookup<'_>, variable: &'static str) -> Result<String, ConfigError> {
    lookup(variable).ok_or_else(|| ConfigError {
        variable,
        message: "is required".into(),
    })
}

/// A whole number, `default` when unset.
pub fn read_number(
    lookup: Lookup<'_>,
    variable: &'static str,
    default: u64,
) -> Result<u64, ConfigError> {
    match lookup(variable) {
        None => Ok(default),
        Some(v) => v.trim().parse().map_err(|_| ConfigError {
            variable,
            message: format!("'{v}' is not a whole number"),
        }),
    }
}

/// `IMGPIPE_PRESETS_FILE` (TOML or JSON), or the built-in set; validated.
pub fn read_presets(lookup: Lookup<'_>) -> Result<PresetSet, ConfigError> {
    let Some(path) = lookup("IMGPIPE_PRESETS_FILE") else {
        return Ok(PresetSet::default_set());
    };
    let text = std::fs::read_to_string(&path).map_err(|e| ConfigError {
        variable: "IMGPIPE_PRESETS_FILE",
        message: format!("cannot read {path}: {e}"),
    })?;
    PresetSet::from_file_text(&path, &text).map_err(|e| ConfigError {
        variable: "IMGPIPE_PRESETS_FILE",
        message: format!("{path}: {}", e.message),
    })
}

/// `IMGPIPE_MAX_SOURCE_BYTES`, `IMGPIPE_MAX_PIXELS`, `IMGPIPE_MAX_WIDTH`, `IMGPIPE_MAX_HEIGHT`,
/// `IMGPIPE_MAX_FRAMES`, `IMGPIPE_MAX_DECODE_MIB`, each defaulting to [`Limits::default`].
pub fn read_limits(lookup: Lookup<'_>) -> Result<Limits, ConfigError> {
    let number = |variable, default| read_number(lookup, variable, default);
    let defaults = Limits::default();
    Ok(Limits {
        max_source_bytes: number("IMGPIPE_MAX_SOURCE_BYTES", defaults.max_source_bytes)?,
        max_pixels: number("IMGPIPE_MAX_PIXELS", defaults.max_pixels)?,
        max_width: number("IMGPIPE_MAX_WIDTH", u64::from(defaults.max_width))?
            .min(u64::from(u32::MAX)) as u32,
        max_height: number("IMGPIPE_MAX_HEIGHT", u64::from(defaults.max_height))?
            .min(u64::from(u32::MAX)) as u32,
        max_frames: number("IMGPIPE_MAX_FRAMES", u64::from(defaults.max_frames))?
            .min(u64::from(u32::MAX)) as u32,
        max_decode_bytes: number("IMGPIPE_MAX_DECODE_MIB", defaults.max_decode_bytes >> 20)?
            .saturating_mul(1 << 20),
    })
}

/// `IMGPIPE_OUTPUT_PREFIX` (default `derived/`): where outputs go.
pub fn read_layout(lookup: Lookup<'_>) -> OutputLayout {
    OutputLayout {
        prefix: lookup("IMGPIPE_OUTPUT_PREFIX").unwrap_or_else(|| "derived/".into()),
    }
}

/// `IMGPIPE_JPEG_BACKGROUND` (default white): what transparency is flattened onto in a JPEG.
pub fn read_background(lookup: Lookup<'_>) -> Result<[u8; 3], ConfigError> {
    match lookup("IMGPIPE_JPEG_BACKGROUND") {
        None => Ok([255, 255, 255]),
        Some(v) => parse_hex_colour(&v).ok_or_else(|| ConfigError {
            variable: "IMGPIPE_JPEG_BACKGROUND",
            message: format!("'{v}' is not a #rrggbb colour"),
        }),
    }
}

/// `IMGPIPE_CDN_BASE_URL`: an http(s) URL, or none.
pub fn read_cdn_base_url(lookup: Lookup<'_>) -> Result<Option<String>, ConfigError> {
    let url = lookup("IMGPIPE_CDN_BASE_URL");
    if let Some(url) = &url
        && !(url.starts_with("https://") || url.starts_with("http://"))
    {
        return Err(ConfigError {
            variable: "IMGPIPE_CDN_BASE_URL",
            message: format!("'{url}' is not an http(s) URL"),
        });
    }
    Ok(url)
}

fn parse_hex_colour(v: &str) -> Option<[u8; 3]> {
    let hex = v.strip_prefix('#').unwrap_or(v);
    if hex.len() != 6 {
        return None;
    }
    let channel = |i: usize| u8::from_str_radix(&hex[i..i + 2], 16).ok();
    Some([channel(0)?, channel(2)?, channel(4)?])
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn config(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let mut map: HashMap<String, String> = [
            ("IMGPIPE_INGEST_BUCKET", "in"),
            ("IMGPIPE_OUTPUT_BUCKET", "out"),
            ("IMGPIPE_DLQ_URL", "http://dlq"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        for (k, v) in pairs {
            map.insert(k.to_string(), v.to_string());
        }
        Config::from_lookup(|k| map.get(k).cloned())
    }

    #[test]
    fn defaults_are_documented_values() {
        let c = config(&[]).unwrap();
        assert_eq!(c.layout.prefix, "derived/");
        assert_eq!(c.limits, Limits::default());
        assert_eq!(c.max_attempts, 5);
        assert_eq!(c.background, [255, 255, 255]);
        assert_eq!(c.presets, imgpipe_core::PresetSet::default_set());
        assert_eq!(c.metadata_cache_control, "private, max-age=60");
    }

    #[test]
    fn only_the_ingest_bucket_and_named_archives_are_sources() {
        let c = config(&[]).unwrap();
        assert!(c.accepts_bucket("in"));
        assert!(!c.accepts_bucket("out") && !c.accepts_bucket("other") && !c.accepts_bucket(""));
        let c = config(&[("IMGPIPE_BACKFILL_BUCKETS", " archive-2020, ,archive-2021 ")]).unwrap();
        assert_eq!(c.backfill_buckets, ["archive-2020", "archive-2021"]);
        assert!(c.accepts_bucket("archive-2021") && c.accepts_bucket("in"));
        assert!(!c.accepts_bucket("archive"));
    }

    #[test]
    fn bad_values_name_the_variable() {
        assert_eq!(
            config(&[("IMGPIPE_MAX_PIXELS", "lots")])
                .unwrap_err()
                .variable,
            "IMGPIPE_MAX_PIXELS"
        );
        assert_eq!(
            config(&[("IMGPIPE_GPS", "maybe")]).unwrap_err().variable,
            "IMGPIPE_GPS"
        );
        assert_eq!(
            config(&[("IMGPIPE_JPEG_BACKGROUND", "#12")])
                .unwrap_err()
                .variable,
            "IMGPIPE_JPEG_BACKGROUND"
        );
        assert_eq!(
            config(&[("IMGPIPE_PRESETS_FILE", "/nonexistent.toml")])
                .unwrap_err()
                .variable,
            "IMGPIPE_PRESETS_FILE"
        );
        let no_bucket = Config::from_lookup(|_| None).unwrap_err();
        assert_eq!(no_bucket.variable, "IMGPIPE_INGEST_BUCKET");
    }

    #[test]
    fn a_bad_preset_file_stops_start_up_naming_preset_and_field() {
        let dir = std::env::temp_dir().join(format!("imgpipe-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("presets.toml");
        std::fs::write(&path, "[[preset]]\nname='thumb'\nwidth=10\nquality=0\n").unwrap();
        let err = config(&[("IMGPIPE_PRESETS_FILE", path.to_str().unwrap())]).unwrap_err();
        assert!(err.to_string().contains("preset 'thumb': quality"), "{err}");
    }

    #[test]
    fn privacy_cdn_and_decode_limits_reach_the_pipeline_options() {
        let c = config(&[
            ("IMGPIPE_GPS", "coarse"),
            ("IMGPIPE_CDN_BASE_URL", "https://d111.cloudfront.net"),
            ("IMGPIPE_MAX_FRAMES", "50"),
            ("IMGPIPE_MAX_DECODE_MIB", "256"),
        ])
        .unwrap();
        let options = c.pipeline_options();
        assert_eq!(options.gps, GpsPolicy::Coarse);
        assert_eq!(
            options.cdn_base_url.as_deref(),
            Some("https://d111.cloudfront.net")
        );
        assert_eq!(options.limits.max_frames, 50);
        assert_eq!(options.limits.max_decode_bytes, 256 << 20);
        let bad = config(&[("IMGPIPE_CDN_BASE_URL", "cdn.example.com")]).unwrap_err();
        assert_eq!(bad.variable, "IMGPIPE_CDN_BASE_URL");
        assert_eq!(config(&[]).unwrap().cdn_base_url, None);
    }

    #[test]
    fn routing_is_off_until_a_gpu_queue_is_set() {
        assert_eq!(config(&[]).unwrap().routing, None);
        let c = config(&[
            ("IMGPIPE_GPU_QUEUE_URL", "http://gpu"),
            ("IMGPIPE_GPU_MIN_PIXELS", "1000"),
            ("IMGPIPE_BATCH_PREFIXES", "backfill/, bulk/,"),
            ("IMGPIPE_MANIFEST_PREFIX", "manifests/"),
        ])
        .unwrap();
        let routing = c.routing.unwrap();
        assert_eq!(routing.gpu_queue_url, "http://gpu");
        assert_eq!(routing.rule.gpu_min_pixels, 1000);
        assert_eq!(
            routing.rule.gpu_min_bytes,
            RoutingRule::default().gpu_min_bytes
        );
        assert_eq!(routing.rule.batch_prefixes, ["backfill/", "bulk/"]);
        assert_eq!(routing.rule.manifest_prefix.as_deref(), Some("manifests/"));
        let bad = config(&[
            ("IMGPIPE_GPU_QUEUE_URL", "http://gpu"),
            ("IMGPIPE_GPU_MIN_BYTES", "big"),
        ])
        .unwrap_err();
        assert_eq!(bad.variable, "IMGPIPE_GPU_MIN_BYTES");
    }

    #[test]
    fn retry_delay_doubles_and_caps() {
        let c = config(&[
            ("IMGPIPE_RETRY_BASE_SECONDS", "10"),
            ("IMGPIPE_RETRY_MAX_SECONDS", "60"),
        ])
        .unwrap();
        let delays: Vec<u64> = (1..=5).map(|n| c.retry_delay(n).as_secs()).collect();
        assert_eq!(delays, [10, 20, 40, 60, 60]);
    }
}
