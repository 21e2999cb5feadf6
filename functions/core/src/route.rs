//! Routing: does a job stay on the CPU path that received it (the Lambda, or the CPU worker) or go to
//! the GPU queue? Decided from what is known before download: the key, the object's size, and the
//! dimensions in the first [`HEADER_PROBE_BYTES`] of the object (a ranged GET). Pure: the caller does
//! the I/O and acts on the [`Route`].
//!
//! Order of the rules: manifest prefix ⇒ batch prefix ⇒ bytes ⇒ pixels ⇒ CPU. A head that cannot be
//! read routes to the CPU, whose full pipeline then fails it with the usual clear error.

use crate::probe;

/// Bytes of the object's head fetched to read its dimensions without downloading it. A JPEG's SOF
/// comes after its APP segments (EXIF with thumbnail ≤ 64 KiB, ICC profiles, XMP); 256 KiB covers
/// camera files with all of them.
pub const HEADER_PROBE_BYTES: u64 = 256 * 1024;

/// When a job goes to the GPU queue. A threshold of 0 turns that rule off.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RoutingRule {
    /// Sources with at least this many pixels (width × height from the header). Default: 40 MP,
    /// beyond what a 1 769 MB Lambda turns around quickly (a 40 MP JPEG decodes at 1/4 in ~0.2 s but a
    /// PNG of that size needs 160 MiB and seconds).
    pub gpu_min_pixels: u64,
    /// Sources of at least this many bytes. Default: 25 MB.
    pub gpu_min_bytes: u64,
    /// Keys under any of these prefixes (bulk backfills). Default: none.
    pub batch_prefixes: Vec<String>,
    /// Keys under this prefix are batch manifests (JSON or CSV lists of keys), fanned out into GPU
    /// jobs. Default: none.
    pub manifest_prefix: Option<String>,
}

impl Default for RoutingRule {
    fn default() -> Self {
        Self {
            gpu_min_pixels: 40_000_000,
            gpu_min_bytes: 25_000_000,
            batch_prefixes: Vec::new(),
            manifest_prefix: None,
        }
    }
}

/// Where a job goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// Process here.
    Cpu,
    /// Forward to the GPU queue, for this reason.
    Gpu(GpuReason),
    /// The object is a batch manifest: fan it out.
    Manifest,
}

/// Why a job goes to the GPU (logged and written into the forwarded message).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GpuReason {
    /// The key is under this batch prefix.
    BatchPrefix(String),
    /// The object is at least `threshold` bytes.
    Bytes {
        /// Object size.
        bytes: u64,
        /// The rule's threshold.
        threshold: u64,
    },
    /// The image has at least `threshold` pixels.
    Pixels {
        /// Width × height from the header.
        pixels: u64,
        /// The rule's threshold.
        threshold: u64,
    },
}

impl std::fmt::Display for GpuReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            GpuReason::BatchPrefix(prefix) => write!(f, "key under batch prefix '{prefix}'"),
            GpuReason::Bytes { bytes, threshold } => {
                write!(f, "{bytes} bytes ≥ {threshold}")
            }
            GpuReason::Pixels { pixels, threshold } => {
                write!(f, "{pixels} pixels ≥ {threshold}")
            }
        }
    }
}

/// The first step's answer: a route, or "fetch the head and call [`RoutingRule::route`]".
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyDecision {
    /// Decided from the key and size alone.
    Decided(Route),
    /// The pixel rule needs the first [`HEADER_PROBE_BYTES`] of the object.
    NeedHead,
}

impl RoutingRule {
    /// Decides from the key and the object size, when that is enough (no GET needed).
    pub fn route_by_key(&self, key: &str, bytes: u64) -> KeyDecision {
        if let Some(prefix) = &self.manifest_prefix
            && key.starts_with(prefix.as_str())
        {
            return KeyDecision::Decided(Route::Manifest);
        }
        if let Some(prefix) = self
            .batch_prefixes
            .iter()
            .find(|p| key.starts_with(p.as_str()))
        {
            return KeyDecision::Decided(Route::Gpu(GpuReason::BatchPrefix(prefix.clone())));
        }
        if self.gpu_min_bytes > 0 && bytes >= self.gpu_min_bytes {
            return KeyDecision::Decided(Route::Gpu(GpuReason::Bytes {
                bytes,
                threshold: self.gpu_min_bytes,
            }));
        }
        if self.gpu_min_pixels == 0 {
            return KeyDecision::Decided(Route::Cpu);
        }
        KeyDecision::NeedHead
    }

    /// The whole decision. `head` is the first bytes of the object (all of it when it is small); `None`
    /// when it was not fetched.
    pub fn route(&self, key: &str, bytes: u64, head: Option<&[u8]>) -> Route {
        match self.route_by_key(key, bytes) {
            KeyDecision::Decided(route) => route,
            KeyDecision::NeedHead => {
                let pixels = head
                    .and_then(|h| probe::probe(h).ok())
                    .map(|header| u64::from(header.width) * u64::from(header.height));
                match pixels {
                    Some(pixels) if pixels >= self.gpu_min_pixels => {
                        Route::Gpu(GpuReason::Pixels {
                            pixels,
                            threshold: self.gpu_min_pixels,
                        })
                    }
                    _ => Route::Cpu,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture_head(name: &str) -> Vec<u8> {
        let bytes = crate::testing::fixture(name);
        bytes[..bytes.len().min(HEADER_PROBE_BYTES as usize)].to_vec()
    }

    fn rule() -> RoutingRule {
        RoutingRule {
            gpu_min_pixels: 10_000_000,
            gpu_min_bytes: 20_000_000,
            batch_prefixes: vec!["backfill/".into()],
            manifest_prefix: Some("manifests/".into()),
        }
    }

    #[test]
    fn manifest_then_batch_prefix_then_bytes_decide_without_a_head() {
        let rule = rule();
        assert_eq!(
            rule.route_by_key("manifests/2026-11.csv", 30_000_000),
            KeyDecision::Decided(Route::Manifest)
        );
        assert_eq!(
            rule.route_by_key("backfill/a.jpg", 10),
            KeyDecision::Decided(Route::Gpu(GpuReason::BatchPrefix("backfill/".into())))
        );
        assert_eq!(
            rule.route_by_key("uploads/a.jpg", 20_000_000),
            KeyDecision::Decided(Route::Gpu(GpuReason::Bytes {
                bytes: 20_000_000,
                threshold: 20_000_000
            }))
        );
        assert_eq!(
            rule.route_by_key("uploads/a.jpg", 19_999_999),
            KeyDecision::NeedHead
        );
        // A prefix must match from the start of the key.
        assert_eq!(
            rule.route_by_key("uploads/backfill/a.jpg", 10),
            KeyDecision::NeedHead
        );
    }

    #[test]
    fn pixels_come_from_the_head_of_the_object() {
        let rule = rule();
        // 4032×3024 = 12.2 MP ≥ 10 MP, read from the first 256 KiB only.
        let head = fixture_head("large_olympus-e-p3_12mp.jpg");
        assert_eq!(
            rule.route("uploads/big.jpg", 5_000_000, Some(&head)),
            Route::Gpu(GpuReason::Pixels {
                pixels: 4032 * 3024,
                threshold: 10_000_000
            })
        );
        let small = fixture_head("camera_nokia-8-3-5g_gps_9mp.jpg");
        assert_eq!(
            rule.route("uploads/small.jpg", 3_000_000, Some(&small)),
            Route::Cpu
        );
    }

    #[test]
    fn unreadable_or_missing_heads_stay_on_the_cpu() {
        let rule = rule();
        assert_eq!(
            rule.route("uploads/a.jpg", 100, Some(b"not an image")),
            Route::Cpu
        );
        assert_eq!(rule.route("uploads/a.jpg", 100, None), Route::Cpu);
    }

    #[test]
    fn zero_thresholds_turn_rules_off() {
        let rule = RoutingRule {
            gpu_min_pixels: 0,
            gpu_min_bytes: 0,
            ..RoutingRule::default()
        };
        assert_eq!(
            rule.route_by_key("uploads/a.jpg", u64::MAX),
            KeyDecision::Decided(Route::Cpu)
        );
    }
}
