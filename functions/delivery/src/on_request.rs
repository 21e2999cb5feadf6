//! Variants made on first request, for the local edge (`imgpipe serve`): a ladder rung or a signed
//! parametric variant ([`imgpipe_core::variant`]) that is not in the derivatives bucket yet is
//! rendered from its source ([`imgpipe_core::render`]), stored at its canonical key in the
//! source's output folder (so the deletion cascade removes it with the eager outputs), and
//! answered; later requests are served from the bucket.
//!
//! `request ⇒ parse the last segment (400 malformed, 403 unsigned or not offered; no render) ⇒
//! canonical key ⇒ in the bucket? serve ⇒ one render per key at a time (single-flight) ⇒ stored
//! meanwhile? serve ⇒ metadata.json done? (none, deleted or failed: 404, no render) ⇒ a rung width
//! the ladder does not list is listed in the metadata? (else 403, no render) ⇒ read the
//! source under the limits ⇒ render (blocking pool) ⇒ PutObject ⇒ answer`

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use imgpipe_cloud::effects::ObjectStore;
use imgpipe_core::metadata::Status;
use imgpipe_core::render::{RenderError, render};
use imgpipe_core::variant::{Request, SigningKeys, VariantLimits, listed_in, needs_listing, parse};
use imgpipe_core::{Engine, Limits, Options, PresetSet, SourceRef};

/// What may be rendered, and how.
pub struct OnRequest {
    /// The output prefix (`derived/`).
    pub prefix: String,
    /// The preset set (its ladders say which rungs exist).
    pub presets: PresetSet,
    /// Limits of parametric variants.
    pub limits: VariantLimits,
    /// Signing keys; `None`: parametric variants are forbidden.
    pub keys: Option<SigningKeys>,
    /// Limits on the source, as for an upload.
    pub source_limits: Limits,
    /// Pipeline options, as for an upload.
    pub options: Options,
    /// Cache-Control of what is stored (the eager outputs').
    pub cache_control: String,
    flights: std::sync::Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    renders: AtomicU64,
}

/// A variant request, resolved: where it is stored and what it asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Variant {
    /// Its key in the derivatives bucket: the output folder and the canonical name.
    pub key: String,
    /// The output folder, `<prefix><source key>/`.
    pub dir: String,
    /// What it asks for.
    pub request: Request,
}

/// The outcome of a render, for the gateway to answer.
pub enum Made {
    /// Rendered now (or by a concurrent request: `bytes` is then `None`, serve the bucket).
    Rendered {
        /// The bytes, when this request rendered them.
        bytes: Option<Vec<u8>>,
        /// Content-Type.
        content_type: &'static str,
        /// Milliseconds the render took.
        ms: u64,
    },
    /// Nothing to render: 404 with the reason (no such image, deleted, failed, past the ladder).
    NotFound(String),
    /// Not offered for this source (a rung width its ladder does not have): 403, no render.
    Refused(String),
    /// The pipeline refused the source (its failure kind and message): 422.
    Failed(String),
    /// S3 failed: 502 with the reason.
    Upstream(String),
}

impl OnRequest {
    /// Renders nothing yet; see the fields.
    pub fn new(
        prefix: String,
        presets: PresetSet,
        keys: Option<SigningKeys>,
        source_limits: Limits,
        options: Options,
        cache_control: String,
    ) -> Self {
        Self {
            prefix,
            presets,
            limits: VariantLimits::default(),
            keys,
            source_limits,
            options,
            cache_control,
            flights: std::sync::Mutex::new(HashMap::new()),
            renders: AtomicU64::new(0),
        }
    }

    /// With the pipeline's default limits and options and the eager outputs' default
    /// Cache-Control: what `imgpipe serve` and the tests use.
    pub fn with_defaults(prefix: String, presets: PresetSet, keys: Option<SigningKeys>) -> Self {
        Self::new(
            prefix,
            presets,
            keys,
            Limits::default(),
            Options::default(),
            imgpipe_cloud::config::DEFAULT_CACHE_CONTROL.into(),
        )
    }

    /// Renders made by this process.
    pub fn renders(&self) -> u64 {
        self.renders.load(Ordering::Relaxed)
    }

    /// Reads `key` (decoded, without the leading `/`): `None` when it is not a variant (a preset's
    /// file, a group, another folder: the gateway serves it as before), else the variant or the
    /// refusal (`(status, reason)`).
    pub fn resolve(&self, key: &str) -> Option<Result<Variant, (u16, String)>> {
        let rest = key.strip_prefix(&self.prefix)?;
        let (source, segment) = rest.rsplit_once('/')?;
        if source.is_empty() {
            return None;
        }
        let dir = format!("{}{source}/", self.prefix);
        match parse(
            &dir,
            segment,
            &self.presets,
            &self.limits,
            self.keys.as_ref(),
        ) {
            Ok(Request::Named(_)) => None,
            Ok(request) => {
                let name = match &request {
                    Request::Parametric(params) => params.canonical(),
                    _ => segment.to_string(),
                };
                Some(Ok(Variant {
                    key: format!("{dir}{name}"),
                    dir,
                    request,
                }))
            }
            Err(refusal) => Some(Err((refusal.status(), refusal.reason().to_string()))),
        }
    }

    /// Renders `variant` into `bucket` unless it is there, once per key at a time.
    pub async fn make(&self, s3: &dyn ObjectStore, bucket: &str, variant: &Variant) -> Made {
        let flight = {
            let mut flights = self.flights.lock().expect("not poisoned");
            Arc::clone(flights.entry(variant.key.clone()).or_default())
        };
        let made = {
            let _turn = flight.lock().await;
            self.make_alone(s3, bucket, variant).await
        };
        let mut flights = self.flights.lock().expect("not poisoned");
        if Arc::strong_count(&flight) == 2 {
            flights.remove(&variant.key);
        }
        made
    }

    async fn make_alone(&self, s3: &dyn ObjectStore, bucket: &str, variant: &Variant) -> Made {
        let started = Instant::now();
        match imgpipe_cloud::store::head(s3, bucket, &variant.key).await {
            Ok(Some(_)) => {
                // A request before this one rendered it.
                return Made::Rendered {
                    bytes: None,
                    content_type: "",
                    ms: 0,
                };
            }
            Ok(None) => {}
            Err(e) => return Made::Upstream(e.message),
        }
        let metadata_key = format!("{}metadata.json", variant.dir);
        let metadata = match imgpipe_cloud::store::get_metadata(s3, bucket, &metadata_key).await {
            Ok(Some(m)) => m,
            Ok(None) => {
                return Made::NotFound("no such image (not processed yet, or deleted)".into());
            }
            Err(e) => return Made::Upstream(e.message),
        };
        if metadata.status == Status::Failed {
            let why = metadata.error.as_ref().map_or("failed".to_string(), |e| {
                format!("{}: {}", e.kind, e.message)
            });
            return Made::NotFound(format!("the source failed ({why})"));
        }
        if needs_listing(&variant.request, &self.presets) {
            let file = variant.key.rsplit('/').next().unwrap_or_default();
            if !listed_in(&metadata, file) {
                return Made::Refused(format!(
                    "{file} is not a rung of this source (its metadata lists its ladder)"
                ));
            }
        }
        let (source_bucket, source_key) = (&metadata.source.bucket, &metadata.source.key);
        let fetched = match imgpipe_cloud::store::get_source(
            s3,
            source_bucket,
            source_key,
            &self.source_limits,
        )
        .await
        {
            Ok(fetched) => fetched,
            Err(e) if e.kind == "source_missing" => return Made::NotFound(e.message),
            Err(e) if e.retryable => return Made::Upstream(e.message),
            Err(e) => return Made::Failed(format!("{}: {}", e.kind, e.message)),
        };
        // A cover variant crops where the upload's did: the faces and attention point its metadata
        // recorded, and the app's focal point as the source object carries it now.
        let source = SourceRef {
            bucket: source_bucket.clone(),
            key: source_key.clone(),
            etag: fetched.etag.clone(),
            focus: fetched.focus().unwrap_or_else(|why| {
                tracing::warn!(key = %source_key, why, "focus metadata ignored");
                None
            }),
            analysis: metadata.analysis(),
        };
        let (request, presets, options) = (
            variant.request.clone(),
            self.presets.clone(),
            self.options.clone(),
        );
        let rendered = tokio::task::spawn_blocking(move || {
            render(
                &fetched.bytes,
                &source,
                &request,
                &presets,
                &options,
                &mut Engine::default(),
            )
        })
        .await;
        let rendered = match rendered {
            Ok(Ok(rendered)) => rendered,
            Ok(Err(RenderError::NotOffered(why))) => return Made::NotFound(why),
            Ok(Err(RenderError::Failed(failed))) => {
                return Made::Failed(format!(
                    "{}: {}",
                    failed.error.kind.as_str(),
                    failed.error.message
                ));
            }
            Err(e) => return Made::Upstream(format!("render task: {e}")),
        };
        let content_type = rendered.format.content_type();
        // If-None-Match: * — across processes (Lambda instances) two first requests may both
        // render; the first PUT wins and the bytes stay those of one render (they are equal anyway).
        let stored = imgpipe_cloud::store::put_if(
            s3,
            bucket,
            &variant.key,
            rendered.bytes.clone(),
            content_type,
            &self.cache_control,
            None,
        )
        .await;
        match stored {
            Ok(true) => {}
            Ok(false) => {
                tracing::info!(key = %variant.key, "rendered on request, but another renderer stored it first");
            }
            Err(e) => return Made::Upstream(e.message),
        }
        if let Some(gone) = self.superseded(s3, bucket, variant, &metadata).await {
            return gone;
        }
        self.renders.fetch_add(1, Ordering::Relaxed);
        let ms = started.elapsed().as_millis() as u64;
        tracing::info!(key = %variant.key, width = rendered.width, height = rendered.height, bytes = rendered.bytes.len(), ms, "rendered on request");
        Made::Rendered {
            bytes: Some(rendered.bytes),
            content_type,
            ms,
        }
    }

    /// After this render's PUT: is the source it rendered still the one the folder belongs to? A
    /// deletion or re-upload that listed the folder while this rendered did not see this variant;
    /// then it must not stay (a deleted image's variant would be reachable for good, a re-upload's
    /// would show the old picture). The variant is deleted again and the request answered as the
    /// source now stands. With the cascade's second listing after its tombstone (`deletion.rs`),
    /// a variant is either listed by the cascade or sees the cascade here.
    async fn superseded(
        &self,
        s3: &dyn ObjectStore,
        bucket: &str,
        variant: &Variant,
        rendered_from: &imgpipe_core::Metadata,
    ) -> Option<Made> {
        let metadata_key = format!("{}metadata.json", variant.dir);
        let now = match imgpipe_cloud::store::get_metadata(s3, bucket, &metadata_key).await {
            Ok(now) => now,
            Err(e) => {
                tracing::warn!(key = %variant.key, error = %e.message, "rendered on request; could not re-read metadata.json to confirm the source");
                return None;
            }
        };
        let same = now.as_ref().is_some_and(|m| {
            m.status == Status::Done && m.source.etag == rendered_from.source.etag
        });
        if same {
            return None;
        }
        if let Err(e) =
            imgpipe_cloud::store::delete_keys(s3, bucket, std::slice::from_ref(&variant.key)).await
        {
            tracing::error!(key = %variant.key, error = %e.message, "rendered from a source that changed meanwhile, and could not delete it");
        }
        tracing::info!(key = %variant.key, "the source was deleted or replaced while this rendered; the variant was removed");
        Some(match now {
            None => Made::NotFound("no such image (deleted while this variant rendered)".into()),
            Some(_) => {
                Made::Upstream("the source changed while this variant rendered; ask again".into())
            }
        })
    }
}

#[cfg(test)]
mod tests;
