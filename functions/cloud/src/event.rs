//! SQS message body → S3 notification → validated jobs.
//!
//! Accepts what S3 really sends: the `s3:TestEvent` written when notifications are configured (no
//! `Records`; acknowledged and ignored), event bodies with one or more `Records`, and the same wrapped
//! in an SNS envelope (S3 → SNS → SQS fan-out). Object keys arrive form-URL-encoded (`+` for space,
//! `%xx` for UTF-8 bytes; LocalStack writes `%20`), and are decoded here, once: S3 never fills
//! `aws_lambda_events`' `url_decoded_key`. Only the fields imgpipe needs are read, so an event with an
//! unexpected extra or missing optional field still works.

use serde::Deserialize;

use crate::ordering::Change;
use crate::progress::BatchItem;

/// What one SQS message body says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notification {
    /// `s3:TestEvent`: nothing to do.
    Test,
    /// One or more object events.
    Records(Vec<ObjectEvent>),
    /// A manifest URL to import ([`crate::importer::ImportJob`]).
    Import(crate::importer::ImportJob),
}

/// One S3 object event, key decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectEvent {
    /// e.g. `ObjectCreated:Put`, `ObjectCreated:CompleteMultipartUpload`.
    pub event_name: String,
    /// Bucket name.
    pub bucket: String,
    /// Decoded object key.
    pub key: String,
    /// Object size from the event, if present.
    pub size: Option<u64>,
    /// Object ETag from the event (no quotes), if present.
    pub etag: Option<String>,
    /// On a job fanned out from a manifest: which manifest, and which of its queued items.
    pub batch: Option<BatchItem>,
    /// S3's order of this key's events (hex; see [`crate::ordering`]); absent on jobs imgpipe sent.
    pub sequencer: Option<String>,
    /// Object version in a versioned bucket.
    pub version_id: Option<String>,
    /// When S3 saw the change (`eventTime`, RFC 3339); kept on jobs forwarded to the GPU queue,
    /// absent on backfill and manifest jobs. The event-age metric counts from it.
    pub event_time: Option<String>,
}

impl ObjectEvent {
    /// This event as an S3 notification body with one record, key encoded as S3 encodes it, so a
    /// forwarded job (GPU queue, manifest fan-out) is parsed by [`parse_body`] like an original one.
    pub fn to_body(&self) -> String {
        use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
        const KEY: &AsciiSet = &NON_ALPHANUMERIC
            .remove(b'-')
            .remove(b'_')
            .remove(b'.')
            .remove(b'~')
            .remove(b'/');
        let mut object = serde_json::json!({
            "key": utf8_percent_encode(&self.key, KEY).to_string(),
        });
        if let Some(size) = self.size {
            object["size"] = size.into();
        }
        if let Some(etag) = &self.etag {
            object["eTag"] = etag.clone().into();
        }
        if let Some(sequencer) = &self.sequencer {
            object["sequencer"] = sequencer.clone().into();
        }
        if let Some(version) = &self.version_id {
            object["versionId"] = version.clone().into();
        }
        let mut record = serde_json::json!({
            "eventSource": "aws:s3",
            "eventName": self.event_name,
            "s3": { "bucket": { "name": self.bucket }, "object": object },
        });
        if let Some(time) = &self.event_time {
            record["eventTime"] = time.clone().into();
        }
        if let Some(batch) = &self.batch {
            record["imgpipe"] = serde_json::json!({ "batch": batch });
        }
        serde_json::json!({ "Records": [record] }).to_string()
    }

    /// True for `ObjectCreated:*` events (Put, Post, Copy, CompleteMultipartUpload).
    pub fn is_created(&self) -> bool {
        self.change() == Change::Created
    }

    /// What the event says happened to the key.
    pub fn change(&self) -> Change {
        Change::of(&self.event_name, self.version_id.as_deref())
    }
}

/// A body that is not an S3 notification imgpipe understands (permanent: retrying cannot help).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("message body is not an S3 event notification: {0}")]
pub struct EventError(pub String);

#[derive(Deserialize)]
struct Body {
    #[serde(rename = "Records")]
    records: Option<Vec<Record>>,
    #[serde(rename = "Event")]
    event: Option<String>,
    /// SNS envelope: `{"Type":"Notification","Message":"<S3 event JSON>"}`.
    #[serde(rename = "Type")]
    sns_type: Option<String>,
    #[serde(rename = "Message")]
    sns_message: Option<String>,
    /// imgpipe's own URL-import job.
    #[serde(rename = "imgpipeImport")]
    import: Option<crate::importer::ImportJob>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Record {
    event_name: Option<String>,
    event_time: Option<String>,
    s3: Option<S3Entity>,
    /// imgpipe's own addition on jobs it sends itself (manifest items); S3 never writes it.
    imgpipe: Option<Extension>,
}

#[derive(Deserialize)]
struct Extension {
    batch: Option<BatchItem>,
}

#[derive(Deserialize)]
struct S3Entity {
    bucket: Option<Named>,
    object: Option<Object>,
}

#[derive(Deserialize)]
struct Named {
    name: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Object {
    key: Option<String>,
    size: Option<u64>,
    e_tag: Option<String>,
    sequencer: Option<String>,
    version_id: Option<String>,
}

/// Parses an SQS message body.
pub fn parse_body(body: &str) -> Result<Notification, EventError> {
    let parsed: Body =
        serde_json::from_str(body).map_err(|e| EventError(format!("invalid JSON ({e})")))?;
    if parsed.sns_type.as_deref() == Some("Notification")
        && let Some(inner) = parsed.sns_message
    {
        return parse_body(&inner);
    }
    if parsed.event.as_deref() == Some("s3:TestEvent") {
        return Ok(Notification::Test);
    }
    if let Some(job) = parsed.import {
        return Ok(Notification::Import(job));
    }
    let records = parsed
        .records
        .ok_or_else(|| EventError("no 'Records' and not an s3:TestEvent".into()))?;
    if records.is_empty() {
        return Err(EventError("'Records' is empty".into()));
    }
    records
        .into_iter()
        .enumerate()
        .map(|(i, r)| to_event(i, r))
        .collect::<Result<_, _>>()
        .map(Notification::Records)
}

fn to_event(index: usize, record: Record) -> Result<ObjectEvent, EventError> {
    let missing = |what: &str| EventError(format!("Records[{index}] has no {what}"));
    let s3 = record.s3.ok_or_else(|| missing("s3"))?;
    let bucket = s3
        .bucket
        .and_then(|b| b.name)
        .ok_or_else(|| missing("s3.bucket.name"))?;
    let object = s3.object.ok_or_else(|| missing("s3.object"))?;
    let raw_key = object.key.ok_or_else(|| missing("s3.object.key"))?;
    let key = decode_key(&raw_key).map_err(|e| EventError(format!("Records[{index}]: {e}")))?;
    Ok(ObjectEvent {
        event_name: record.event_name.unwrap_or_default(),
        bucket,
        key,
        size: object.size,
        etag: object
            .e_tag
            .map(|e| e.trim_matches('"').to_string())
            .filter(|e| !e.is_empty()),
        batch: record.imgpipe.and_then(|x| x.batch),
        sequencer: object.sequencer.filter(|s| !s.is_empty()),
        version_id: object.version_id.filter(|v| !v.is_empty()),
        event_time: record.event_time.filter(|t| !t.is_empty()),
    })
}

/// Decodes an S3 event key: `+` → space, then `%xx` → bytes, which must be UTF-8.
pub fn decode_key(raw: &str) -> Result<String, String> {
    let plus_decoded = raw.replace('+', " ");
    let decoded = percent_encoding::percent_decode_str(&plus_decoded)
        .decode_utf8()
        .map_err(|_| format!("key '{raw}' does not decode to UTF-8"))?;
    if decoded.is_empty() {
        return Err("key is empty".into());
    }
    Ok(decoded.into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> String {
        let path = std::path::Path::new(
            &std::env::var_os("CARGO_MANIFEST_DIR")
                .expect("cargo sets CARGO_MANIFEST_DIR for tests"),
        )
        .join("../../tests/fixtures/events")
        .join(name);
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    #[test]
    fn decodes_aws_and_localstack_key_encodings() {
        assert_eq!(decode_key("red+flower.jpg").unwrap(), "red flower.jpg");
        assert_eq!(
            decode_key("my%20photo%20%C3%A9%2B%C3%BC.jpg").unwrap(),
            "my photo é+ü.jpg"
        );
        assert_eq!(decode_key("a%2Bb+c.jpg").unwrap(), "a+b c.jpg");
        assert_eq!(
            decode_key("uploads/%E6%BC%A2%E5%AD%97.png").unwrap(),
            "uploads/漢字.png"
        );
        assert!(decode_key("%FF%FE.jpg").is_err());
        assert!(decode_key("").is_err());
    }

    #[test]
    fn aws_put_event() {
        let Notification::Records(records) = parse_body(&fixture("s3-put-aws.json")).unwrap()
        else {
            panic!()
        };
        assert_eq!(records.len(), 1);
        let r = &records[0];
        assert_eq!(
            (r.bucket.as_str(), r.key.as_str()),
            ("amzn-s3-demo-bucket", "uploads/red flower (1).jpg")
        );
        assert_eq!(r.etag.as_deref(), Some("0123456789abcdef0123456789abcdef"));
        assert_eq!(r.size, Some(1024));
        assert!(r.is_created());
    }

    #[test]
    fn localstack_multipart_event_with_unicode_key() {
        let Notification::Records(records) =
            parse_body(&fixture("s3-multipart-localstack.json")).unwrap()
        else {
            panic!()
        };
        assert_eq!(records[0].key, "originals/my photo é+ü 漢字 (1)&x=y.jpg");
        assert_eq!(
            records[0].event_name,
            "ObjectCreated:CompleteMultipartUpload"
        );
        assert_eq!(
            records[0].etag.as_deref(),
            Some("04e6c1d5a7d1b0b2a0f7e2f6b1c5d3e4-2")
        );
    }

    #[test]
    fn several_records_in_one_message() {
        let Notification::Records(records) = parse_body(&fixture("s3-two-records.json")).unwrap()
        else {
            panic!()
        };
        assert_eq!(
            records.iter().map(|r| r.key.as_str()).collect::<Vec<_>>(),
            ["a.jpg", "b c.png"]
        );
    }

    #[test]
    fn test_event_is_recognised() {
        assert_eq!(
            parse_body(&fixture("s3-test-event.json")).unwrap(),
            Notification::Test
        );
    }

    #[test]
    fn sns_envelope_is_unwrapped() {
        let Notification::Records(records) =
            parse_body(&fixture("sns-wrapped-s3-put.json")).unwrap()
        else {
            panic!()
        };
        assert_eq!(records[0].key, "uploads/cat.jpg");
    }

    #[test]
    fn removal_events_are_not_creations() {
        let body = fixture("s3-put-aws.json").replace("ObjectCreated:Put", "ObjectRemoved:Delete");
        let Notification::Records(records) = parse_body(&body).unwrap() else {
            panic!()
        };
        assert!(!records[0].is_created());
        assert_eq!(records[0].change(), crate::ordering::Change::Removed);
        assert_eq!(records[0].sequencer.as_deref(), Some("0A1B2C3D4E5F678901"));
    }

    #[test]
    fn garbage_is_a_clear_error() {
        assert!(
            parse_body("not json")
                .unwrap_err()
                .0
                .contains("invalid JSON")
        );
        assert!(parse_body("{}").unwrap_err().0.contains("Records"));
        assert!(
            parse_body(r#"{"Records":[{"s3":{"bucket":{"name":"b"},"object":{}}}]}"#)
                .unwrap_err()
                .0
                .contains("s3.object.key")
        );
    }

    #[test]
    fn forwarded_bodies_parse_back_to_the_same_event() {
        let event = ObjectEvent {
            event_name: "ObjectCreated:Put".into(),
            bucket: "ingest".into(),
            key: "uploads/a b+c%/é 漢字&.jpg".into(),
            size: Some(42),
            etag: Some("abc".into()),
            batch: None,
            sequencer: Some("0055AED6DCD90281E5".into()),
            version_id: Some("3HL4kqtJlcpXroDTDmJ+rmSpXd3dIbrHY".into()),
            event_time: Some("2026-12-01T00:00:00.123Z".into()),
        };
        let body = event.to_body();
        assert!(body.contains("uploads/a%20b%2Bc%25/"), "{body}");
        assert_eq!(
            parse_body(&body).unwrap(),
            Notification::Records(vec![event.clone()])
        );
        // A manifest item keeps its manifest and index through the queue.
        let item = ObjectEvent {
            batch: Some(BatchItem {
                manifest: imgpipe_core::events::ManifestRef {
                    bucket: "ingest".into(),
                    key: "manifests/m.csv".into(),
                    etag: Some("m1".into()),
                },
                item: 7,
            }),
            sequencer: None,
            version_id: None,
            ..event
        };
        assert_eq!(
            parse_body(&item.to_body()).unwrap(),
            Notification::Records(vec![item])
        );
    }
}
