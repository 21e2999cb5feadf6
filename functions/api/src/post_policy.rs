//! Pre-signed POST for S3 (browser-based upload with an AWS Signature Version 4 policy).
//!
//! The policy is a JSON document, base64-encoded into the form's `policy` field, that S3 checks the
//! POST against: an expiry and one condition per field. imgpipe's policy pins the bucket, the exact
//! key, the exact `Content-Type`, the size range `[1, max]`, the object's tags (`tagging`, the
//! `imgpipe-status=pending` tag the ingest bucket's lifecycle rules select on), the exact user
//! metadata (`x-amz-meta-focus`, the app's focal point, when the request had one) and the signing
//! fields, so S3 itself refuses a bigger or empty body, another type, another key, other tags or a
//! late upload. The signature is
//! `hex(HMAC-SHA256(signing key, base64 policy))` with the usual SigV4 signing key, derived by the
//! SDK's own `aws-sigv4` (the SDK pre-signs PUT/GET but has no POST policy builder). Pure: the
//! caller passes credentials and the time.

use std::time::SystemTime;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

/// What the policy allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PostPolicy<'a> {
    /// Bucket.
    pub bucket: &'a str,
    /// The exact key.
    pub key: &'a str,
    /// The exact `Content-Type`.
    pub content_type: &'a str,
    /// Largest body in bytes (the smallest is 1).
    pub max_bytes: u64,
    /// The exact `tagging` field: an S3 Tagging XML document.
    pub tagging: &'a str,
    /// User metadata, each as the exact `x-amz-meta-<name>` field (`focus`: the app's focal point).
    pub metadata: &'a [(&'a str, String)],
    /// When the policy stops being accepted.
    pub expires_at: SystemTime,
}

/// Credentials that sign (the API's role; its session token travels in the form).
#[derive(Clone, PartialEq, Eq)]
pub struct SigningCredentials {
    /// Access key id.
    pub access_key_id: String,
    /// Secret access key.
    pub secret_access_key: String,
    /// Session token of temporary credentials.
    pub session_token: Option<String>,
}

impl std::fmt::Debug for SigningCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "SigningCredentials({}, secret redacted)",
            self.access_key_id
        )
    }
}

/// The form an app posts: these fields (in this order), then the file as the last field `file`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedPost {
    /// Form fields, `file` excluded.
    pub fields: Vec<(String, String)>,
    /// The policy document that was signed (for tests and debugging).
    pub policy: serde_json::Value,
}

/// Signs `policy` with `credentials` for `region`, at `now`.
pub fn sign(
    policy: &PostPolicy<'_>,
    credentials: &SigningCredentials,
    region: &str,
    now: SystemTime,
) -> SignedPost {
    let amz_date = compact(humantime::format_rfc3339_seconds(now).to_string()); // 20261130T160000Z
    let date = &amz_date[..8];
    let credential = format!(
        "{}/{date}/{region}/s3/aws4_request",
        credentials.access_key_id
    );
    let mut fields = vec![
        ("key".to_string(), policy.key.to_string()),
        ("Content-Type".to_string(), policy.content_type.to_string()),
        ("tagging".to_string(), policy.tagging.to_string()),
        (
            "x-amz-algorithm".to_string(),
            "AWS4-HMAC-SHA256".to_string(),
        ),
        ("x-amz-credential".to_string(), credential.clone()),
        ("x-amz-date".to_string(), amz_date.clone()),
    ];
    let mut conditions = vec![
        serde_json::json!({ "bucket": policy.bucket }),
        serde_json::json!({ "key": policy.key }),
        serde_json::json!({ "Content-Type": policy.content_type }),
        serde_json::json!(["content-length-range", 1, policy.max_bytes]),
        serde_json::json!({ "tagging": policy.tagging }),
        serde_json::json!({ "x-amz-algorithm": "AWS4-HMAC-SHA256" }),
        serde_json::json!({ "x-amz-credential": credential }),
        serde_json::json!({ "x-amz-date": amz_date }),
    ];
    for (name, value) in policy.metadata {
        let field = format!("x-amz-meta-{name}");
        conditions.push(serde_json::json!({ field.as_str(): value }));
        fields.push((field, value.clone()));
    }
    if let Some(token) = &credentials.session_token {
        fields.push(("x-amz-security-token".to_string(), token.clone()));
        conditions.push(serde_json::json!({ "x-amz-security-token": token }));
    }
    let document = serde_json::json!({
        "expiration": humantime::format_rfc3339_millis(policy.expires_at).to_string(),
        "conditions": conditions,
    });
    let encoded = STANDARD.encode(document.to_string());
    let signing_key = aws_sigv4::sign::v4::generate_signing_key(
        &credentials.secret_access_key,
        now,
        region,
        "s3",
    );
    let signature = aws_sigv4::sign::v4::calculate_signature(signing_key, encoded.as_bytes());
    fields.push(("policy".to_string(), encoded));
    fields.push(("x-amz-signature".to_string(), signature));
    SignedPost {
        fields,
        policy: document,
    }
}

/// `2026-11-30T16:00:00Z` → `20261130T160000Z`.
fn compact(rfc3339: String) -> String {
    rfc3339.chars().filter(|c| *c != '-' && *c != ':').collect()
}

/// Where the form is posted: `https://<bucket>.s3.<region>.amazonaws.com/` on AWS, or
/// `<endpoint>/<bucket>` (path style) when an endpoint override (LocalStack) is set.
pub fn form_url(bucket: &str, region: &str, endpoint: Option<&str>) -> String {
    match endpoint {
        Some(endpoint) => format!("{}/{bucket}", endpoint.trim_end_matches('/')),
        None if region == "us-east-1" => format!("https://{bucket}.s3.amazonaws.com/"),
        None => format!("https://{bucket}.s3.{region}.amazonaws.com/"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    fn credentials(token: Option<&str>) -> SigningCredentials {
        SigningCredentials {
            access_key_id: "AKIAIOSFODNN7EXAMPLE".into(),
            secret_access_key: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY".into(),
            session_token: token.map(String::from),
        }
    }

    const TAGGING: &str = "<Tagging><TagSet><Tag><Key>imgpipe-status</Key><Value>pending</Value></Tag></TagSet></Tagging>";

    fn field<'a>(post: &'a SignedPost, name: &str) -> &'a str {
        &post.fields.iter().find(|(k, _)| k == name).unwrap().1
    }

    #[test]
    fn the_policy_pins_bucket_key_type_size_and_expiry() {
        let now = UNIX_EPOCH + Duration::from_secs(1_796_054_400); // 2026-11-30T16:00:00Z
        let policy = PostPolicy {
            bucket: "ingest",
            key: "uploads/01J/a b.jpg",
            content_type: "image/jpeg",
            max_bytes: 50_000_000,
            tagging: TAGGING,
            metadata: &[],
            expires_at: now + Duration::from_secs(900),
        };
        let post = sign(&policy, &credentials(None), "us-east-1", now);
        assert_eq!(
            post.policy,
            serde_json::json!({
                "expiration": "2026-11-30T16:15:00.000Z",
                "conditions": [
                    {"bucket": "ingest"},
                    {"key": "uploads/01J/a b.jpg"},
                    {"Content-Type": "image/jpeg"},
                    ["content-length-range", 1, 50_000_000],
                    {"tagging": TAGGING},
                    {"x-amz-algorithm": "AWS4-HMAC-SHA256"},
                    {"x-amz-credential": "AKIAIOSFODNN7EXAMPLE/20261130/us-east-1/s3/aws4_request"},
                    {"x-amz-date": "20261130T160000Z"},
                ]
            })
        );
        let decoded = STANDARD.decode(field(&post, "policy")).unwrap();
        assert_eq!(
            serde_json::from_slice::<serde_json::Value>(&decoded).unwrap(),
            post.policy
        );
        assert_eq!(field(&post, "key"), "uploads/01J/a b.jpg");
        assert_eq!(field(&post, "Content-Type"), "image/jpeg");
        assert_eq!(field(&post, "tagging"), TAGGING);
        assert_eq!(post.fields.last().unwrap().0, "x-amz-signature");
        // Known answer from an independent implementation: Python's hmac/hashlib following the SigV4
        // algorithm as AWS documents it (kDate = HMAC("AWS4" + secret, "20261130"), kRegion,
        // kService, kSigning; signature = hex(HMAC(kSigning, the base64 policy above))).
        assert_eq!(
            field(&post, "x-amz-signature"),
            "7d8a5ac9fc144ff7fada78adb93c2df3517a5d8a35a33efdf21062d13897ac7f"
        );
    }

    #[test]
    fn temporary_credentials_put_their_token_in_form_and_policy() {
        let now = SystemTime::now();
        let policy = PostPolicy {
            bucket: "b",
            key: "k",
            content_type: "image/png",
            max_bytes: 10,
            tagging: TAGGING,
            metadata: &[],
            expires_at: now,
        };
        let post = sign(&policy, &credentials(Some("TOKEN")), "eu-west-1", now);
        assert_eq!(field(&post, "x-amz-security-token"), "TOKEN");
        let conditions = post.policy["conditions"].as_array().unwrap();
        assert!(conditions.contains(&serde_json::json!({"x-amz-security-token": "TOKEN"})));
        assert!(field(&post, "x-amz-credential").ends_with("/eu-west-1/s3/aws4_request"));
        assert!(!format!("{:?}", credentials(Some("T"))).contains("wJalr"));
    }

    #[test]
    fn user_metadata_is_a_form_field_and_an_exact_condition() {
        let now = UNIX_EPOCH + Duration::from_secs(1_796_054_400);
        let metadata = [("focus", "0.25,0.4".to_string())];
        let policy = PostPolicy {
            bucket: "ingest",
            key: "k",
            content_type: "image/jpeg",
            max_bytes: 10,
            tagging: TAGGING,
            metadata: &metadata,
            expires_at: now + Duration::from_secs(900),
        };
        let post = sign(&policy, &credentials(None), "us-east-1", now);
        assert_eq!(field(&post, "x-amz-meta-focus"), "0.25,0.4");
        let conditions = post.policy["conditions"].as_array().unwrap();
        assert!(conditions.contains(&serde_json::json!({"x-amz-meta-focus": "0.25,0.4"})));
        // Signed over the policy: another value is another signature.
        let other = [("focus", "0.5,0.5".to_string())];
        let changed = sign(
            &PostPolicy {
                metadata: &other,
                ..policy
            },
            &credentials(None),
            "us-east-1",
            now,
        );
        assert_ne!(
            field(&changed, "x-amz-signature"),
            field(&post, "x-amz-signature")
        );
    }

    #[test]
    fn form_urls_follow_the_endpoint() {
        assert_eq!(
            form_url("b", "us-east-1", None),
            "https://b.s3.amazonaws.com/"
        );
        assert_eq!(
            form_url("b", "eu-west-1", None),
            "https://b.s3.eu-west-1.amazonaws.com/"
        );
        assert_eq!(
            form_url("b", "us-east-1", Some("http://127.0.0.1:4566/")),
            "http://127.0.0.1:4566/b"
        );
    }
}
