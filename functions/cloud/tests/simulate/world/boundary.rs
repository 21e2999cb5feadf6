//! The simulated cloud behind the effect boundary: [`Sim`] implements every trait of
//! [`imgpipe_cloud::effects`] on the [`World`](super::World), each call through its fault gate.

use super::*;

/// A handle on the world, as one process sees it.
#[derive(Clone)]
pub struct Sim(pub Arc<World>);

#[async_trait]
impl ObjectStore for Sim {
    async fn get(&self, r: Get<'_>) -> Result<Got, Failure> {
        self.0
            .enter(
                &format!("GetObject s3://{}/{}", r.bucket, r.key),
                Some(r.key),
                false,
            )
            .await?;
        let s = self.0.state.lock().unwrap();
        let Some(o) = s.buckets.get(r.bucket).and_then(|b| b.get(r.key)) else {
            return Ok(Got::Missing);
        };
        if r.if_match.is_some_and(|e| e != o.etag) {
            return Ok(Got::NotMatched);
        }
        let size = o.bytes.len() as u64;
        let bytes = match r.first_bytes {
            Some(n) => o.bytes[..(n as usize).min(o.bytes.len())].to_vec(),
            None if size > r.max_bytes => return Ok(Got::TooLarge(size)),
            None => o.bytes.clone(),
        };
        Ok(Got::Found(Object {
            bytes,
            etag: Some(o.etag.clone()),
            version_id: None,
            size: Some(size),
            metadata: o.metadata.clone(),
        }))
    }

    async fn head(&self, bucket: &str, key: &str) -> Result<Option<ObjectHead>, Failure> {
        self.0
            .enter(&format!("HeadObject s3://{bucket}/{key}"), None, false)
            .await?;
        let s = self.0.state.lock().unwrap();
        Ok(s.buckets
            .get(bucket)
            .and_then(|b| b.get(key))
            .map(|o| ObjectHead {
                size: o.bytes.len() as u64,
                etag: Some(o.etag.clone()),
                metadata: o.metadata.clone(),
            }))
    }

    async fn put(&self, r: Put<'_>) -> Result<bool, Failure> {
        let what = format!("PutObject s3://{}/{}", r.bucket, r.key);
        let (bucket, key) = (r.bucket.to_string(), r.key.to_string());
        let condition = r.condition.map(|c| match c {
            Condition::IfMatch(e) => Some(e.to_string()),
            Condition::IfNoneMatch => None,
        });
        let mut stored = Stored {
            modified: 0,
            etag: etag_of(&r.body),
            bytes: r.body,
            tags: r
                .tagging
                .map(|t| {
                    t.split('&')
                        .filter_map(|kv| kv.split_once('='))
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect()
                })
                .unwrap_or_default(),
            metadata: r
                .metadata
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect(),
        };
        self.0
            .effect(what, move |s| {
                stored.modified = s.clock;
                let (size, etag) = (stored.bytes.len() as u64, stored.etag.clone());
                let notify = s.notify.clone().filter(|(b, _)| *b == bucket);
                let b = s.buckets.entry(bucket.clone()).or_default();
                let holds = match &condition {
                    None => true,
                    Some(Some(etag)) => b.get(&key).is_some_and(|o| &o.etag == etag),
                    Some(None) => !b.contains_key(&key),
                };
                if holds {
                    b.insert(key.clone(), stored);
                    if let Some((bucket, queue)) = notify {
                        s.sequencer += 1;
                        let body = s3_event(
                            &bucket,
                            "ObjectCreated:Put",
                            &key,
                            Some(size),
                            Some(&etag),
                            s.sequencer,
                        );
                        push(s, &queue, body, Vec::new(), 0);
                    }
                }
                holds
            })
            .await
    }

    async fn delete(&self, bucket: &str, keys: &[String]) -> Result<(), Failure> {
        let what = format!("DeleteObjects s3://{bucket} {keys:?}");
        let (bucket, keys) = (bucket.to_string(), keys.to_vec());
        self.0
            .effect(what, move |s| {
                if let Some(b) = s.buckets.get_mut(&bucket) {
                    for k in &keys {
                        b.remove(k);
                    }
                }
            })
            .await
    }

    async fn list(
        &self,
        bucket: &str,
        prefix: &str,
        delimiter: Option<&str>,
        start_after: Option<&str>,
    ) -> Result<Vec<Listed>, Failure> {
        self.0
            .enter(
                &format!("ListObjectsV2 s3://{bucket}/{prefix}"),
                None,
                false,
            )
            .await?;
        let s = self.0.state.lock().unwrap();
        let Some(b) = s.buckets.get(bucket) else {
            return Ok(Vec::new());
        };
        Ok(b.iter()
            .filter(|(k, _)| k.starts_with(prefix))
            .filter(|(k, _)| start_after.is_none_or(|a| k.as_str() > a))
            .filter(|(k, _)| delimiter.is_none_or(|d| !k[prefix.len()..].contains(d)))
            .map(|(k, o)| Listed {
                key: k.clone(),
                size: o.bytes.len() as u64,
                etag: Some(o.etag.clone()),
                modified: (EPOCH + o.modified) as i64,
            })
            .collect())
    }

    async fn tags(
        &self,
        bucket: &str,
        key: &str,
        _version_id: Option<&str>,
    ) -> Result<Option<Vec<(String, String)>>, Failure> {
        self.0
            .enter(
                &format!("GetObjectTagging s3://{bucket}/{key}"),
                None,
                false,
            )
            .await?;
        let s = self.0.state.lock().unwrap();
        Ok(s.buckets
            .get(bucket)
            .and_then(|b| b.get(key))
            .map(|o| o.tags.clone()))
    }

    async fn set_tags(
        &self,
        bucket: &str,
        key: &str,
        _version_id: Option<&str>,
        tags: &[(String, String)],
    ) -> Result<bool, Failure> {
        let what = format!("PutObjectTagging s3://{bucket}/{key} {tags:?}");
        let (bucket, key, tags) = (bucket.to_string(), key.to_string(), tags.to_vec());
        self.0
            .effect(what, move |s| {
                match s.buckets.get_mut(&bucket).and_then(|b| b.get_mut(&key)) {
                    Some(o) => {
                        o.tags = tags;
                        true
                    }
                    None => false,
                }
            })
            .await
    }
}

#[async_trait]
impl Queues for Sim {
    async fn send(&self, queue_url: &str, messages: &[Outgoing]) -> Result<(), Failure> {
        let what = format!("SendMessage {queue_url} ×{}", messages.len());
        let url = queue_url.to_string();
        let messages = messages.to_vec();
        self.0
            .effect(what, move |s| {
                for m in messages {
                    let attributes = m
                        .attributes
                        .into_iter()
                        .map(|a| (a.name.to_string(), a.value, a.number))
                        .collect();
                    push(s, &url, m.body, attributes, m.delay_seconds);
                }
            })
            .await
    }

    async fn set_visibility(
        &self,
        queue_url: &str,
        receipt_handle: &str,
        seconds: u32,
    ) -> Result<(), Failure> {
        let what = format!("ChangeMessageVisibility {queue_url} {receipt_handle} {seconds}s");
        let (url, receipt) = (queue_url.to_string(), receipt_handle.to_string());
        self.0
            .effect(what, move |s| {
                let now = s.clock;
                if let Some(m) = s
                    .queues
                    .get_mut(&url)
                    .unwrap()
                    .messages
                    .iter_mut()
                    .find(|m| m.receipt.as_deref() == Some(&receipt))
                {
                    m.visible_at = now + u64::from(seconds);
                }
            })
            .await
    }

    async fn delete(&self, queue_url: &str, receipt_handles: &[String]) -> usize {
        let what = format!("DeleteMessageBatch {queue_url} {receipt_handles:?}");
        let (url, handles) = (queue_url.to_string(), receipt_handles.to_vec());
        let n = handles.len();
        self.0
            .effect(what, move |s| {
                s.queues
                    .get_mut(&url)
                    .unwrap()
                    .messages
                    .retain(|m| !m.receipt.as_ref().is_some_and(|r| handles.contains(r)));
            })
            .await
            .map_or(n, |()| 0)
    }
}

#[async_trait]
impl Topic for Sim {
    async fn publish(
        &self,
        _topic_arn: &str,
        message: &str,
        attributes: &[(&str, &str)],
    ) -> Result<(), Failure> {
        let find = |name: &str| {
            attributes
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| v.to_string())
                .unwrap_or_default()
        };
        let published = Published {
            message: message.to_string(),
            event_type: find(imgpipe_cloud::notify::attributes::EVENT_TYPE),
            event_id: find(imgpipe_cloud::notify::attributes::EVENT_ID),
        };
        let what = format!("Publish {} {}", published.event_type, published.event_id);
        self.0
            .effect(what, move |s| {
                // The webhook queue's subscription (raw message delivery).
                if let Some(queue) = s.subscribed.clone() {
                    push(s, &queue, published.message.clone(), Vec::new(), 0);
                }
                s.published.push(published)
            })
            .await
    }
}

#[async_trait]
impl imgpipe_cloud::effects::Endpoints for Sim {
    async fn post(
        &self,
        url: &str,
        headers: &[(&str, String)],
        body: &str,
    ) -> imgpipe_cloud::webhook::Attempt {
        use imgpipe_cloud::webhook::Attempt;
        let webhook_id = headers
            .iter()
            .find(|(n, _)| *n == "webhook-id")
            .map(|(_, v)| v.clone())
            .unwrap_or_default();
        let what = format!("POST {url} {webhook_id}");
        let (url, body) = (url.to_string(), body.to_string());
        let answered = self
            .0
            .effect(what, move |s| {
                let status = if s.down.contains(&url) { 500 } else { 200 };
                s.received.push(Received {
                    url,
                    webhook_id,
                    body,
                    status,
                });
                status
            })
            .await;
        match answered {
            Ok(status) if (200..300).contains(&status) => Attempt::Delivered(status),
            Ok(status) => Attempt::Failed {
                status: format!("HTTP {status}"),
            },
            Err(e) => Attempt::Failed {
                status: format!("no answer: {}", e.message),
            },
        }
    }
}

#[async_trait]
impl imgpipe_cloud::effects::Web for Sim {
    async fn fetch(
        &self,
        url: &str,
        _policy: &imgpipe_cloud::importer::ImportPolicy,
    ) -> Result<imgpipe_cloud::importer::Fetched, imgpipe_cloud::url_policy::Refusal> {
        use imgpipe_cloud::url_policy::Refusal;
        if let Err(e) = self.0.enter(&format!("GET {url}"), Some(url), false).await {
            return Err(Refusal::new("network", e.message));
        }
        let body = self.0.state.lock().unwrap().web.get(url).cloned();
        let Some(bytes) = body else {
            return Err(Refusal::new(
                "http_status",
                format!("GET {url} answered 404 Not Found"),
            ));
        };
        let format = imgpipe_core::format::sniff(&bytes)
            .map_err(|e| Refusal::new("not_an_image", format!("{url}: {e}")))?;
        Ok(imgpipe_cloud::importer::Fetched {
            bytes,
            format,
            final_url: url.to_string(),
            address: std::net::IpAddr::from([203, 0, 113, 7]),
        })
    }
}

#[async_trait]
impl Cdn for Sim {
    async fn invalidate(
        &self,
        _distribution_id: &str,
        paths: &[String],
        caller_reference: &str,
    ) -> Result<Option<String>, Failure> {
        let what = format!("CreateInvalidation {} paths", paths.len());
        let paths = paths.to_vec();
        let id = caller_reference.to_string();
        self.0
            .effect(what, move |s| {
                s.invalidations.push(paths);
                s.invalidated_at.push(s.clock);
                Some(id)
            })
            .await
    }
}
