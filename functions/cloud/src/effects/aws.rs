//! The AWS executor: the [effect boundary](super) on the SDK clients. Each call names the
//! operation and the object or queue in its error, and classifies it: everything the network or
//! the service can cause is transient (the message is retried with backoff).

use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use aws_sdk_s3::primitives::ByteStream;

use super::{Attribute, Condition, Get, Got, Listed, Object, ObjectHead, Outgoing, Put};
use crate::body::{read_body, read_prefix};
use crate::failure::Failure;

impl super::Effects {
    /// The AWS executor: S3, SQS, SNS and (with a distribution) CloudFront clients, the system's
    /// network for URL imports and the system clock.
    pub fn aws(
        s3: aws_sdk_s3::Client,
        sqs: aws_sdk_sqs::Client,
        sns: aws_sdk_sns::Client,
        cloudfront: Option<aws_sdk_cloudfront::Client>,
    ) -> Self {
        use std::sync::Arc;
        Self {
            store: Arc::new(s3),
            queues: Arc::new(sqs),
            topic: Arc::new(sns),
            cdn: cloudfront.map(|c| Arc::new(c) as Arc<dyn super::Cdn>),
            web: Arc::new(crate::importer::NetworkWeb(Arc::new(
                crate::importer::SystemNetwork,
            ))),
            clock: Arc::new(super::SystemClock),
        }
    }
}

fn quoted(etag: &str) -> String {
    format!("\"{}\"", etag.trim_matches('"'))
}

fn unquoted(etag: Option<&str>) -> Option<String> {
    etag.map(|e| e.trim_matches('"').to_string())
}

#[async_trait]
impl super::ObjectStore for aws_sdk_s3::Client {
    async fn get(&self, request: Get<'_>) -> Result<Got, Failure> {
        let Get {
            bucket,
            key,
            first_bytes,
            if_match,
            max_bytes,
        } = request;
        let response = match self
            .get_object()
            .bucket(bucket)
            .key(key)
            .set_range(first_bytes.map(|n| format!("bytes=0-{}", n.saturating_sub(1))))
            .set_if_match(if_match.map(quoted))
            .send()
            .await
        {
            Ok(response) => response,
            Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_key()) => {
                return Ok(Got::Missing);
            }
            Err(e) if e.raw_response().is_some_and(|r| r.status().as_u16() == 412) => {
                return Ok(Got::NotMatched);
            }
            Err(e) => {
                return Err(Failure::transient(
                    "s3_get",
                    format!(
                        "GetObject s3://{bucket}/{key}: {}",
                        crate::aws_error::brief(&e)
                    ),
                ));
            }
        };
        let etag = unquoted(response.e_tag());
        let version_id = response
            .version_id()
            .filter(|v| !v.is_empty() && *v != "null")
            .map(str::to_string);
        let length = response.content_length().map(|l| l.max(0) as u64);
        let metadata = response.metadata().cloned().unwrap_or_default();
        if let Some(wanted) = first_bytes {
            // Content-Range: bytes 0-262143/31457280
            let size = response
                .content_range()
                .and_then(|r| r.rsplit('/').next())
                .and_then(|t| t.parse().ok())
                .or(length);
            // A store that ignores Range sends the whole object: read_prefix stops at `length`.
            let bytes = read_prefix(bucket, key, response.body, wanted).await?;
            return Ok(Got::Found(Object {
                bytes,
                etag,
                version_id,
                size,
                metadata,
            }));
        }
        if let Some(length) = length
            && length > max_bytes
        {
            return Ok(Got::TooLarge(length));
        }
        // Bytes seen when the body went over `max_bytes` (0: it did not).
        let over = AtomicU64::new(0);
        let read = read_body(bucket, key, response.body, max_bytes, |n| {
            over.store(n, Ordering::Relaxed);
            Failure::permanent("too_large", String::new())
        })
        .await;
        let over = Some(over.load(Ordering::Relaxed)).filter(|n| *n > 0);
        match (read, over) {
            (_, Some(n)) => Ok(Got::TooLarge(n)),
            (Ok(bytes), None) => Ok(Got::Found(Object {
                bytes,
                etag,
                version_id,
                size: length,
                metadata,
            })),
            (Err(e), None) => Err(e),
        }
    }

    async fn head(&self, bucket: &str, key: &str) -> Result<Option<ObjectHead>, Failure> {
        match self.head_object().bucket(bucket).key(key).send().await {
            Ok(r) => Ok(Some(ObjectHead {
                size: r.content_length().unwrap_or(0).max(0) as u64,
                etag: unquoted(r.e_tag()),
                metadata: r.metadata().cloned().unwrap_or_default(),
            })),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_not_found()) => Ok(None),
            Err(e) => Err(Failure::transient(
                "s3_head",
                format!(
                    "HeadObject s3://{bucket}/{key}: {}",
                    crate::aws_error::brief(&e)
                ),
            )),
        }
    }

    async fn put(&self, request: Put<'_>) -> Result<bool, Failure> {
        let Put {
            bucket,
            key,
            body,
            content_type,
            cache_control,
            tagging,
            metadata,
            condition,
        } = request;
        let mut put = self
            .put_object()
            .bucket(bucket)
            .key(key)
            .body(ByteStream::from(body))
            .content_type(content_type)
            .set_cache_control(cache_control.map(str::to_string))
            .set_tagging(tagging.map(str::to_string));
        for (name, value) in metadata {
            put = put.metadata(name, value);
        }
        put = match condition {
            Some(Condition::IfMatch(etag)) => put.if_match(quoted(etag)),
            Some(Condition::IfNoneMatch) => put.if_none_match("*"),
            None => put,
        };
        match put.send().await {
            Ok(_) => Ok(true),
            Err(e)
                if condition.is_some()
                    && matches!(
                        e.raw_response().map(|r| r.status().as_u16()),
                        Some(412 | 409)
                    ) =>
            {
                Ok(false)
            }
            Err(e) => Err(Failure::transient(
                "s3_put",
                format!(
                    "PutObject s3://{bucket}/{key}: {}",
                    crate::aws_error::brief(&e)
                ),
            )),
        }
    }

    async fn delete(&self, bucket: &str, keys: &[String]) -> Result<(), Failure> {
        use aws_sdk_s3::types::{Delete, ObjectIdentifier};
        for chunk in keys.chunks(1000) {
            let objects = chunk
                .iter()
                .map(|k| ObjectIdentifier::builder().key(k).build())
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| {
                    Failure::permanent("internal", format!("DeleteObjects request: {e}"))
                })?;
            let delete = Delete::builder()
                .set_objects(Some(objects))
                .quiet(true)
                .build()
                .map_err(|e| {
                    Failure::permanent("internal", format!("DeleteObjects request: {e}"))
                })?;
            let response = self
                .delete_objects()
                .bucket(bucket)
                .delete(delete)
                .send()
                .await
                .map_err(|e| {
                    Failure::transient(
                        "s3_delete",
                        format!(
                            "DeleteObjects s3://{bucket} ({} keys): {}",
                            chunk.len(),
                            crate::aws_error::brief(&e)
                        ),
                    )
                })?;
            if let Some(error) = response.errors().first() {
                return Err(Failure::transient(
                    "s3_delete",
                    format!(
                        "DeleteObjects s3://{bucket}/{}: {} {} ({} of {} keys not deleted)",
                        error.key().unwrap_or_default(),
                        error.code().unwrap_or_default(),
                        error.message().unwrap_or_default(),
                        response.errors().len(),
                        chunk.len()
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Pages with continuation tokens and fails, instead of looping, when one comes back twice
    /// (LocalStack 4.13 does that on keys with spaces). `start_after` is also applied here,
    /// since LocalStack decodes it twice.
    async fn list(
        &self,
        bucket: &str,
        prefix: &str,
        delimiter: Option<&str>,
        start_after: Option<&str>,
    ) -> Result<Vec<Listed>, Failure> {
        let mut found = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let page = self
                .list_objects_v2()
                .bucket(bucket)
                .prefix(prefix)
                .set_delimiter(delimiter.map(str::to_string))
                .set_start_after(start_after.map(str::to_string))
                .set_continuation_token(token.clone())
                .send()
                .await
                .map_err(|e| {
                    Failure::transient(
                        "s3_list",
                        format!(
                            "ListObjectsV2 s3://{bucket}/{prefix}: {}",
                            crate::aws_error::brief(&e)
                        ),
                    )
                })?;
            found.extend(page.contents().iter().filter_map(|o| {
                let key = o.key()?;
                if start_after.is_some_and(|after| key <= after) {
                    return None;
                }
                Some(Listed {
                    key: key.to_string(),
                    size: o.size().unwrap_or(0).max(0) as u64,
                    etag: unquoted(o.e_tag()),
                    modified: o.last_modified().map_or(0, |t| t.secs()),
                })
            }));
            match page.next_continuation_token() {
                None => return Ok(found),
                Some(next) if token.as_deref() == Some(next) => {
                    return Err(Failure::transient(
                        "s3_list",
                        format!(
                            "ListObjectsV2 s3://{bucket}/{prefix} returned the same continuation token twice after {} keys (LocalStack does this for keys with spaces)",
                            found.len()
                        ),
                    ));
                }
                Some(next) => token = Some(next.to_string()),
            }
        }
    }

    async fn tags(
        &self,
        bucket: &str,
        key: &str,
        version_id: Option<&str>,
    ) -> Result<Option<Vec<(String, String)>>, Failure> {
        match self
            .get_object_tagging()
            .bucket(bucket)
            .key(key)
            .set_version_id(version_id.map(String::from))
            .send()
            .await
        {
            Ok(out) => Ok(Some(
                out.tag_set()
                    .iter()
                    .map(|t| (t.key().to_string(), t.value().to_string()))
                    .collect(),
            )),
            Err(e) if is_missing(&e) => Ok(None),
            Err(e) => Err(tagging_failure(
                "GetObjectTagging",
                bucket,
                key,
                crate::aws_error::brief(&e),
            )),
        }
    }

    async fn set_tags(
        &self,
        bucket: &str,
        key: &str,
        version_id: Option<&str>,
        tags: &[(String, String)],
    ) -> Result<bool, Failure> {
        use aws_sdk_s3::types::{Tag, Tagging};
        let failure = |brief: String| tagging_failure("PutObjectTagging", bucket, key, brief);
        let tags = tags
            .iter()
            .map(|(k, v)| Tag::builder().key(k).value(v).build())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| failure(e.to_string()))?;
        let tagging = Tagging::builder()
            .set_tag_set(Some(tags))
            .build()
            .map_err(|e| failure(e.to_string()))?;
        match self
            .put_object_tagging()
            .bucket(bucket)
            .key(key)
            .set_version_id(version_id.map(String::from))
            .tagging(tagging)
            .send()
            .await
        {
            Ok(_) => Ok(true),
            Err(e) if is_missing(&e) => Ok(false),
            Err(e) => Err(failure(crate::aws_error::brief(&e))),
        }
    }
}

fn tagging_failure(operation: &str, bucket: &str, key: &str, brief: String) -> Failure {
    Failure::transient(
        "s3_tagging",
        format!("{operation} s3://{bucket}/{key}: {brief}"),
    )
}

fn is_missing<E: aws_sdk_s3::error::ProvideErrorMetadata>(
    e: &aws_sdk_s3::error::SdkError<E, aws_sdk_s3::config::http::HttpResponse>,
) -> bool {
    e.raw_response().is_some_and(|r| r.status().as_u16() == 404)
        || e.as_service_error()
            .is_some_and(|s| matches!(s.code(), Some("NoSuchKey" | "NoSuchVersion")))
}

fn sqs_attribute(attribute: &Attribute) -> aws_sdk_sqs::types::MessageAttributeValue {
    aws_sdk_sqs::types::MessageAttributeValue::builder()
        .data_type(if attribute.number { "Number" } else { "String" })
        .string_value(&attribute.value)
        .build()
        .expect("data type set")
}

#[async_trait]
impl super::Queues for aws_sdk_sqs::Client {
    /// One message: SendMessage. More: SendMessageBatch, 10 per call, 8 calls at once.
    async fn send(&self, queue_url: &str, messages: &[Outgoing]) -> Result<(), Failure> {
        use aws_sdk_sqs::types::SendMessageBatchRequestEntry;
        let failure = |operation: &str, brief: String| {
            Failure::transient("sqs_send", format!("{operation} to {queue_url}: {brief}"))
        };
        if let [message] = messages {
            let mut send = self
                .send_message()
                .queue_url(queue_url)
                .message_body(&message.body);
            if message.delay_seconds > 0 {
                send = send.delay_seconds(message.delay_seconds.min(900) as i32);
            }
            for attribute in &message.attributes {
                send = send.message_attributes(attribute.name, sqs_attribute(attribute));
            }
            send.send()
                .await
                .map_err(|e| failure("SendMessage", crate::aws_error::brief(&e)))?;
            return Ok(());
        }
        for group in messages.chunks(80) {
            let calls = group.chunks(10).map(|chunk| async move {
                let entries = chunk
                    .iter()
                    .enumerate()
                    .map(|(i, message)| {
                        let mut entry = SendMessageBatchRequestEntry::builder()
                            .id(i.to_string())
                            .message_body(&message.body);
                        if message.delay_seconds > 0 {
                            entry = entry.delay_seconds(message.delay_seconds.min(900) as i32);
                        }
                        for attribute in &message.attributes {
                            entry =
                                entry.message_attributes(attribute.name, sqs_attribute(attribute));
                        }
                        entry.build().expect("id and body set")
                    })
                    .collect();
                let out = self
                    .send_message_batch()
                    .queue_url(queue_url)
                    .set_entries(Some(entries))
                    .send()
                    .await
                    .map_err(|e| failure("SendMessageBatch", crate::aws_error::brief(&e)))?;
                match out.failed().first() {
                    None => Ok(()),
                    Some(failed) => Err(failure(
                        "SendMessageBatch",
                        format!(
                            "{} of {} messages refused, first: {} {}",
                            out.failed().len(),
                            chunk.len(),
                            failed.code(),
                            failed.message().unwrap_or_default()
                        ),
                    )),
                }
            });
            futures::future::join_all(calls)
                .await
                .into_iter()
                .collect::<Result<Vec<()>, Failure>>()?;
        }
        Ok(())
    }

    async fn set_visibility(
        &self,
        queue_url: &str,
        receipt_handle: &str,
        seconds: u32,
    ) -> Result<(), Failure> {
        self.change_message_visibility()
            .queue_url(queue_url)
            .receipt_handle(receipt_handle)
            .visibility_timeout(seconds.min(43_200) as i32)
            .send()
            .await
            .map_err(|e| {
                Failure::transient(
                    "sqs_visibility",
                    format!("ChangeMessageVisibility: {}", crate::aws_error::brief(&e)),
                )
            })?;
        Ok(())
    }

    async fn delete(&self, queue_url: &str, receipt_handles: &[String]) -> usize {
        use aws_sdk_sqs::types::DeleteMessageBatchRequestEntry;
        let mut failed = 0;
        for chunk in receipt_handles.chunks(10) {
            let entries: Vec<DeleteMessageBatchRequestEntry> = chunk
                .iter()
                .enumerate()
                .map(|(i, handle)| {
                    DeleteMessageBatchRequestEntry::builder()
                        .id(i.to_string())
                        .receipt_handle(handle)
                        .build()
                        .expect("id and handle set")
                })
                .collect();
            match self
                .delete_message_batch()
                .queue_url(queue_url)
                .set_entries(Some(entries))
                .send()
                .await
            {
                Ok(out) => {
                    for f in out.failed() {
                        tracing::warn!(
                            code = f.code(),
                            message = f.message(),
                            "delete failed; the message will be received again"
                        );
                    }
                    failed += out.failed().len();
                }
                Err(e) => {
                    tracing::warn!(error = %crate::aws_error::brief(&e), "DeleteMessageBatch failed; the messages will be received again");
                    failed += chunk.len();
                }
            }
        }
        failed
    }
}

#[async_trait]
impl super::Topic for aws_sdk_sns::Client {
    async fn publish(
        &self,
        topic_arn: &str,
        message: &str,
        attributes: &[(&str, &str)],
    ) -> Result<(), Failure> {
        let mut publish = self.publish().topic_arn(topic_arn).message(message);
        for (name, value) in attributes {
            publish = publish.message_attributes(
                *name,
                aws_sdk_sns::types::MessageAttributeValue::builder()
                    .data_type("String")
                    .string_value(*value)
                    .build()
                    .expect("data type set"),
            );
        }
        publish.send().await.map_err(|e| {
            Failure::transient(
                "sns_publish",
                format!(
                    "SNS Publish to {topic_arn}: {}",
                    crate::aws_error::brief(&e)
                ),
            )
        })?;
        Ok(())
    }
}

#[async_trait]
impl super::Cdn for aws_sdk_cloudfront::Client {
    async fn invalidate(
        &self,
        distribution_id: &str,
        paths: &[String],
        caller_reference: &str,
    ) -> Result<Option<String>, Failure> {
        use aws_sdk_cloudfront::types::{InvalidationBatch, Paths};
        let items = Paths::builder()
            .quantity(paths.len() as i32)
            .set_items(Some(paths.to_vec()))
            .build()
            .map_err(|e| Failure::permanent("internal", format!("invalidation paths: {e}")))?;
        let batch = InvalidationBatch::builder()
            .paths(items)
            .caller_reference(caller_reference)
            .build()
            .map_err(|e| Failure::permanent("internal", format!("invalidation batch: {e}")))?;
        let response = self
            .create_invalidation()
            .distribution_id(distribution_id)
            .invalidation_batch(batch)
            .send()
            .await
            .map_err(|e| {
                Failure::transient(
                    "cdn_invalidate",
                    format!(
                        "CloudFront CreateInvalidation {distribution_id} ({} paths): {}",
                        paths.len(),
                        crate::aws_error::brief(&e)
                    ),
                )
            })?;
        Ok(response.invalidation().map(|i| i.id().to_string()))
    }
}
