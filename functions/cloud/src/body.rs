//! Bounded reads of S3 object bodies, whatever Content-Length S3 announces: anything that can write
//! into the buckets could otherwise make a worker read an unbounded body into memory. `store` reads
//! sources (bounded by `max_source_bytes`), header prefixes (by their range, even from a store that
//! ignores Range) and documents imgpipe wrote (metadata.json, progress, tombstones, import
//! outcomes; by [`MAX_DOCUMENT_BYTES`]) through these.

use aws_sdk_s3::primitives::ByteStream;

use crate::failure::Failure;

/// The largest document imgpipe reads back (metadata.json, progress.json, tombstones, import
/// outcomes). Its own are far smaller: metadata.json with responsive ladders is tens of KiB, the
/// progress of a 50 000-item manifest about 12 KiB. Anything larger was written by someone else.
pub const MAX_DOCUMENT_BYTES: u64 = 4 << 20;

/// Reads `body` into memory, stopping with `too_large(bytes so far)` as soon as more than `max`
/// bytes have arrived, whatever Content-Length said.
pub(crate) async fn read_body(
    bucket: &str,
    key: &str,
    mut body: ByteStream,
    max: u64,
    too_large: impl Fn(u64) -> Failure,
) -> Result<Vec<u8>, Failure> {
    let mut bytes = Vec::new();
    while let Some(chunk) = body
        .try_next()
        .await
        .map_err(|e| read_error(bucket, key, e))?
    {
        let total = bytes.len() as u64 + chunk.len() as u64;
        if total > max {
            return Err(too_large(total));
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(bytes)
}

/// The refusal of a document over [`MAX_DOCUMENT_BYTES`]: permanent, it will not shrink.
pub(crate) fn document_too_large(bucket: &str, key: &str, bytes: u64) -> Failure {
    Failure::permanent(
        "document_too_large",
        format!(
            "s3://{bucket}/{key} is {bytes} bytes or more, over the {MAX_DOCUMENT_BYTES} bytes any \
             document imgpipe writes can be; something else wrote it: delete or move it"
        ),
    )
}

/// The first `length` bytes of `body` (all of it when shorter); the rest is never read.
pub(crate) async fn read_prefix(
    bucket: &str,
    key: &str,
    mut body: ByteStream,
    length: u64,
) -> Result<Vec<u8>, Failure> {
    let mut bytes = Vec::new();
    while (bytes.len() as u64) < length {
        let Some(chunk) = body
            .try_next()
            .await
            .map_err(|e| read_error(bucket, key, e))?
        else {
            break;
        };
        let room = (length - bytes.len() as u64) as usize;
        bytes.extend_from_slice(&chunk[..chunk.len().min(room)]);
    }
    Ok(bytes)
}

/// A body that broke off while streaming: transient, a retry reads it again.
fn read_error(bucket: &str, key: &str, e: impl std::fmt::Display) -> Failure {
    Failure::transient("s3_get", format!("reading s3://{bucket}/{key}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(n: u64) -> Failure {
        Failure::permanent("too_large", format!("{n}"))
    }

    #[tokio::test]
    async fn a_body_is_read_up_to_its_bound_and_refused_past_it() {
        let at_bound = read_body("b", "k", ByteStream::from(vec![7u8; 1000]), 1000, refused)
            .await
            .unwrap();
        assert_eq!(at_bound.len(), 1000);
        let over = read_body("b", "k", ByteStream::from(vec![7u8; 1001]), 1000, refused)
            .await
            .unwrap_err();
        assert_eq!(
            (over.kind.as_str(), over.message.as_str()),
            ("too_large", "1001")
        );
    }

    #[test]
    fn an_oversize_document_is_a_permanent_failure_naming_the_object() {
        let failure = document_too_large("out", "derived/a.jpg/metadata.json", 5 << 20);
        assert_eq!(failure.kind, "document_too_large");
        assert!(!failure.retryable);
        assert!(
            failure
                .message
                .starts_with("s3://out/derived/a.jpg/metadata.json is 5242880 bytes"),
            "{}",
            failure.message
        );
    }
}
