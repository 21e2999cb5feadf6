//! Per-record CloudWatch metrics as Embedded Metric Format (EMF) lines: one JSON object on stdout
//! per settled record, which CloudWatch Logs turns into metrics (every Lambda log line is parsed
//! for EMF; the GPU worker's log group too, when its log driver sends the `x-amzn-logs-format`
//! header, as the CloudWatch agent does). No API call, no latency, nothing lost when CloudWatch is
//! slow.
//!
//! Namespace [`NAMESPACE`], dimension `Stack` (`IMGPIPE_STACK_NAME`), and `Stack` + `FailureKind`
//! on failures, retries and refused imports. Metrics: `Processed`, `Skipped`, `Deleted`,
//! `Forwarded`, `Failed`, `Retried`, `Imported`, `ImportRefused` (Count); `BytesIn`, `BytesOut` (Bytes); `FetchMs`, `DecodeMs`, `ResizeMs`, `EncodeMs`,
//! `PutMs`, `TotalMs` (Milliseconds); `EventAge` (Seconds from the S3 event's time to the end of
//! the record: what the template's event-age alarm watches).

use std::time::SystemTime;

use imgpipe_core::Metadata;
use serde_json::{Map, Value, json};

/// The CloudWatch namespace of every metric.
pub const NAMESPACE: &str = "imgpipe";

/// How one record of a message ended, as the metrics count it.
#[derive(Debug, Clone, Copy)]
pub enum RecordEnd<'a> {
    /// Processed now.
    Processed(&'a Metadata),
    /// Already done for this source and preset set.
    Skipped,
    /// The source was removed and its outputs deleted.
    Deleted,
    /// Sent to the GPU queue (or fanned out from a manifest).
    Forwarded,
    /// Failed for good (dead-lettered), with its kind.
    Failed(&'a str),
    /// Failed for now; the message is retried.
    Retried(&'a str),
    /// A manifest URL imported into the ingest bucket.
    Imported,
    /// A manifest URL refused, with the refusal's class.
    ImportRefused(&'a str),
}

/// Writes EMF lines, or nothing when turned off (`IMGPIPE_METRICS=off`).
#[derive(Debug, Clone)]
pub struct Metrics {
    enabled: bool,
    stack: String,
}

impl Metrics {
    /// Metrics for stack `stack`, written when `enabled`.
    pub fn new(enabled: bool, stack: &str) -> Self {
        Self {
            enabled,
            stack: stack.to_string(),
        }
    }

    /// Prints the EMF line of one record (nothing when turned off).
    pub fn record(&self, end: RecordEnd<'_>, event_time: Option<&str>) {
        if !self.enabled {
            return;
        }
        let line = emf_line(&self.stack, end, event_time, SystemTime::now());
        use std::io::Write;
        // One write of one line, so lines from concurrent records never interleave.
        let _ = writeln!(std::io::stdout().lock(), "{line}");
    }
}

/// The EMF document of one record ended at `now`; `event_time` is the S3 event's `eventTime`.
pub fn emf_line(
    stack: &str,
    end: RecordEnd<'_>,
    event_time: Option<&str>,
    now: SystemTime,
) -> Value {
    let mut root = Map::new();
    let mut metrics: Vec<(&str, &str, f64)> = Vec::new();
    let mut kind = None;
    match end {
        RecordEnd::Processed(metadata) => {
            metrics.push(("Processed", "Count", 1.0));
            if let Some(bytes) = metadata.source.bytes {
                metrics.push(("BytesIn", "Bytes", bytes as f64));
            }
            let out: u64 = metadata.derivatives.iter().map(|d| d.bytes).sum();
            metrics.push(("BytesOut", "Bytes", out as f64));
            let t = &metadata.timings_ms;
            for (name, ms) in [
                ("FetchMs", t.fetch),
                ("DecodeMs", t.decode),
                ("ResizeMs", t.resize),
                ("EncodeMs", t.encode),
                ("PutMs", t.put),
                ("TotalMs", t.total),
            ] {
                metrics.push((name, "Milliseconds", ms));
            }
        }
        RecordEnd::Skipped => metrics.push(("Skipped", "Count", 1.0)),
        RecordEnd::Deleted => metrics.push(("Deleted", "Count", 1.0)),
        RecordEnd::Forwarded => metrics.push(("Forwarded", "Count", 1.0)),
        RecordEnd::Failed(k) => {
            metrics.push(("Failed", "Count", 1.0));
            kind = Some(k);
        }
        RecordEnd::Retried(k) => {
            metrics.push(("Retried", "Count", 1.0));
            kind = Some(k);
        }
        RecordEnd::Imported => metrics.push(("Imported", "Count", 1.0)),
        RecordEnd::ImportRefused(k) => {
            metrics.push(("ImportRefused", "Count", 1.0));
            kind = Some(k);
        }
    }
    if let Some(age) = event_time.and_then(|t| event_age_seconds(t, now)) {
        metrics.push(("EventAge", "Seconds", age));
    }
    let mut dimensions = vec![json!(["Stack"])];
    root.insert("Stack".into(), stack.into());
    if let Some(kind) = kind {
        dimensions.push(json!(["Stack", "FailureKind"]));
        root.insert("FailureKind".into(), kind.into());
    }
    let definitions: Vec<Value> = metrics
        .iter()
        .map(|(name, unit, _)| json!({"Name": name, "Unit": unit}))
        .collect();
    for (name, _, value) in &metrics {
        root.insert((*name).into(), json!(value));
    }
    let timestamp = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    root.insert(
        "_aws".into(),
        json!({
            "Timestamp": timestamp,
            "CloudWatchMetrics": [{
                "Namespace": NAMESPACE,
                "Dimensions": dimensions,
                "Metrics": definitions,
            }],
        }),
    );
    Value::Object(root)
}

/// Seconds from an S3 `eventTime` (RFC 3339) to `now`; `None` when unreadable or in the future by
/// more than clock skew allows.
fn event_age_seconds(event_time: &str, now: SystemTime) -> Option<f64> {
    let at = humantime::parse_rfc3339_weak(event_time).ok()?;
    match now.duration_since(at) {
        Ok(age) => Some((age.as_secs_f64() * 1000.0).round() / 1000.0),
        Err(e) if e.duration().as_secs() < 5 => Some(0.0),
        Err(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// The EMF specification's document structure as a JSON Schema (root → `_aws` metadata →
    /// MetricDirective → DimensionSet / MetricDefinition, with the specification's limits).
    const EMF_SCHEMA: &str = include_str!("../tests/emf-schema.json");

    fn validate(line: &Value) {
        let schema: Value = serde_json::from_str(EMF_SCHEMA).unwrap();
        let validator = jsonschema::validator_for(&schema).unwrap();
        let errors: Vec<String> = validator.iter_errors(line).map(|e| e.to_string()).collect();
        assert!(errors.is_empty(), "{errors:?} in {line}");
        // What a schema cannot say: every dimension and metric named by a directive is a root
        // member; dimension values are strings, metric values numbers; names are unique.
        for directive in line["_aws"]["CloudWatchMetrics"].as_array().unwrap() {
            for set in directive["Dimensions"].as_array().unwrap() {
                for dimension in set.as_array().unwrap() {
                    let name = dimension.as_str().unwrap();
                    assert!(
                        line[name].is_string(),
                        "dimension {name} is not a string member of {line}"
                    );
                    assert!(line[name].as_str().unwrap().len() <= 1024);
                }
            }
            let mut names = std::collections::HashSet::new();
            for metric in directive["Metrics"].as_array().unwrap() {
                let name = metric["Name"].as_str().unwrap();
                assert!(names.insert(name), "metric {name} twice");
                assert!(
                    line[name].is_number(),
                    "metric {name} is not a number member of {line}"
                );
            }
        }
    }

    fn processed() -> Metadata {
        let mut metadata = Metadata::new(
            imgpipe_core::metadata::SourceInfo {
                bytes: Some(1234),
                ..Default::default()
            },
            "sha256:x",
        );
        metadata.timings_ms.total = 12.5;
        metadata
    }

    #[test]
    fn every_kind_of_line_follows_the_specification() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_764_550_000);
        let metadata = processed();
        for end in [
            RecordEnd::Processed(&metadata),
            RecordEnd::Skipped,
            RecordEnd::Deleted,
            RecordEnd::Forwarded,
            RecordEnd::Failed("corrupt"),
            RecordEnd::Retried("s3_get"),
            RecordEnd::Imported,
            RecordEnd::ImportRefused("private_address"),
        ] {
            validate(&emf_line(
                "imgpipe-prod",
                end,
                Some("2025-12-01T00:46:30.500Z"),
                now,
            ));
            validate(&emf_line("imgpipe-prod", end, None, now));
        }
    }

    #[test]
    fn a_processed_line_carries_bytes_stages_and_event_age() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_764_550_000);
        let metadata = processed();
        let line = emf_line(
            "s",
            RecordEnd::Processed(&metadata),
            Some("2025-12-01T00:46:30.500Z"),
            now,
        );
        assert_eq!(line["Processed"], 1.0);
        assert_eq!(line["BytesIn"], 1234.0);
        assert_eq!(line["TotalMs"], 12.5);
        assert_eq!(line["EventAge"], 9.5);
        assert_eq!(line["_aws"]["Timestamp"], 1_764_550_000_000u64);
        assert_eq!(line["_aws"]["CloudWatchMetrics"][0]["Namespace"], NAMESPACE);
    }

    #[test]
    fn failures_are_counted_by_kind() {
        let line = emf_line(
            "s",
            RecordEnd::Failed("over_limit"),
            None,
            SystemTime::now(),
        );
        assert_eq!(line["FailureKind"], "over_limit");
        assert_eq!(line["Failed"], 1.0);
        assert_eq!(
            line["_aws"]["CloudWatchMetrics"][0]["Dimensions"],
            json!([["Stack"], ["Stack", "FailureKind"]])
        );
        assert!(line.get("EventAge").is_none());
    }

    #[test]
    fn a_broken_line_fails_validation() {
        let mut line = emf_line("s", RecordEnd::Skipped, None, SystemTime::now());
        line["_aws"]["CloudWatchMetrics"][0]["Metrics"][0]["Unit"] = "Parsecs".into();
        let schema: Value = serde_json::from_str(EMF_SCHEMA).unwrap();
        assert!(!jsonschema::validator_for(&schema).unwrap().is_valid(&line));
    }
}
