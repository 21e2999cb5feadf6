//! `PUT /v1/images/{id}/focus`: the app sets (or corrects) where cover crops centre, after the
//! upload was processed.
//!
//! `auth ⇒ body {x, y} ⇒ find the upload ⇒ HEAD it ⇒ its metadata.json done for this ETag, and no
//! earlier point still being applied? (else 409) ⇒ same point already? (200, nothing to do) ⇒
//! CopyObject onto itself, If-Match its ETag, with the new x-amz-meta-focus (everything else kept)
//! ⇒ 202`
//!
//! The source object is where the point lives, as with `focus` at upload: every later run
//! (backfill, redrive) reads it from there. The copy keeps the bytes and ETag; S3 sends
//! `ObjectCreated:Copy`, and the handler re-makes only the cover derivatives that follow the point
//! (gravity `auto` or `focal`), rewrites metadata.json and invalidates what changed on the CDN
//! (`imgpipe_cloud` `handler/refocus.rs`). The answer is `202 Accepted`: the status URL says
//! when `metadata.focus` has the new point.
//!
//! A write: only an authenticated caller (a JWT or IAM authorizer) may set it, unless the operator
//! set `IMGPIPE_ANONYMOUS_FOCUS=allow` (the local server, a trusted network).

use std::collections::HashMap;

use aws_sdk_s3::types::MetadataDirective;
use axum::http::StatusCode;
use imgpipe_cloud::store::{FOCUS_METADATA, focus_in};
use imgpipe_core::focus::FocalPoint;
use imgpipe_core::focus::refocus;
use imgpipe_core::metadata::{Metadata, Status, strip_quotes};

use crate::auth::Caller;
use crate::error::ApiError;
use crate::routes::AppState;

/// Reads the body `{"x": <0-1>, "y": <0-1>}`.
pub fn parse_body(body: &[u8]) -> Result<FocalPoint, ApiError> {
    let value: serde_json::Value = serde_json::from_slice(body).map_err(|e| {
        ApiError::field(
            "invalid_json",
            "body",
            format!("the body is not JSON ({e}); send {{\"x\": <0-1>, \"y\": <0-1>}}"),
        )
    })?;
    crate::upload::parse_focus(&value)
}

/// Who may set a focal point: an authenticated caller, or anyone when the operator allowed it.
pub fn authorise(caller: &Caller, anonymous_allowed: bool) -> Result<(), ApiError> {
    if caller.is_authenticated() || anonymous_allowed {
        return Ok(());
    }
    Err(ApiError::field(
        "unauthorized",
        "Authorization",
        "setting a focal point needs an authenticated caller (a bearer token the API's JWT authorizer accepts); anonymous writes are off unless the operator sets IMGPIPE_ANONYMOUS_FOCUS=allow",
    )
    .with_status(StatusCode::UNAUTHORIZED))
}

/// Whether the upload's document lets a focal point be applied now: done, for the source's
/// current ETag. `Err`: 409 saying what to wait for.
pub fn ready(metadata: Option<&Metadata>, etag: Option<&str>) -> Result<(), ApiError> {
    let current = metadata.filter(|m| m.source.etag.as_deref().map(strip_quotes) == etag);
    let conflict = |why: &str| {
        ApiError::field("not_ready", "id", why.to_string()).with_status(StatusCode::CONFLICT)
    };
    match current.map(|m| m.status) {
        Some(Status::Done) => Ok(()),
        Some(Status::Failed) => Err(conflict(
            "the upload failed; there are no derivatives to re-crop (upload the image again)",
        )),
        None => Err(conflict(
            "the upload is still being processed; set the focal point once GET /v1/images/{id} says done, or pass focus to POST /v1/uploads",
        )),
    }
}

/// Refuses (409) while the source has a focal point its document does not: a change the handler
/// has not applied yet. One at a time, so two quick changes never race to overwrite the same covers.
pub fn in_flight(metadata: Option<&Metadata>, current: Option<FocalPoint>) -> Result<(), ApiError> {
    match metadata {
        Some(document) if document.focus.is_some() && refocus::needed(document, current) => {
            Err(ApiError::field(
                "not_ready",
                "id",
                "the previous focal point is still being applied; try again in a few seconds (GET /v1/images/{id} shows it in metadata.focus once it is)",
            )
            .with_status(StatusCode::CONFLICT))
        }
        _ => Ok(()),
    }
}

/// Sets the focal point of upload `id` (a canonical ULID) to `focus`; the answer's status and body.
pub async fn set(
    state: &AppState,
    id: &str,
    focus: FocalPoint,
    status_url: String,
) -> Result<(StatusCode, serde_json::Value), ApiError> {
    let config = &state.config;
    let object = crate::status::find_source(state, id).await?;
    let head = state
        .s3
        .head_object()
        .bucket(&config.ingest_bucket)
        .key(&object.key)
        .send()
        .await
        .map_err(|e| {
            ApiError::upstream(
                "S3 HeadObject of the upload",
                imgpipe_cloud::aws_error::brief(&e),
            )
        })?;
    let etag = head.e_tag().map(|e| strip_quotes(e).to_string());
    let metadata_key = config.layout.metadata_key(&object.key);
    let metadata =
        imgpipe_cloud::store::get_metadata(&state.s3, &config.output_bucket, &metadata_key)
            .await
            .map_err(|f| ApiError::upstream("S3 GetObject of metadata.json", f.message))?;
    ready(metadata.as_ref(), etag.as_deref())?;
    let mut user_metadata: HashMap<String, String> = head.metadata().cloned().unwrap_or_default();
    let current = focus_in(&user_metadata).ok().flatten();
    in_flight(metadata.as_ref(), current)?;
    let remade: Vec<String> = config
        .presets
        .presets()
        .iter()
        .filter(|p| !p.on_request && refocus::follows_manual(p))
        .map(|p| p.name.clone())
        .collect();
    let unchanged = current.map(|c| c.to_header()) == Some(focus.to_header());
    let mut body = serde_json::json!({
        "id": id,
        "focus": focus,
        "status_url": status_url,
        "remade": remade,
    });
    // The document exists (`ready`) and has the source's point (`in_flight`): the same point
    // again changes nothing.
    if unchanged {
        body["changed"] = false.into();
        body["note"] = "the image already has this focal point; nothing to re-make".into();
        return Ok((StatusCode::OK, body));
    }
    user_metadata.insert(FOCUS_METADATA.to_string(), focus.to_header());
    // Onto itself, with what REPLACE would otherwise reset kept as it is (headers, storage class,
    // redirect, encryption); tags are copied. If-Match on the source (CopySourceIfMatch) and on the
    // destination: the version checked above, never a newer upload to the same key.
    let copy_source = format!(
        "{}/{}",
        config.ingest_bucket,
        percent_encoding::utf8_percent_encode(&object.key, COPY_SOURCE)
    );
    let mut copy = state
        .s3
        .copy_object()
        .bucket(&config.ingest_bucket)
        .key(&object.key)
        .copy_source(copy_source)
        .metadata_directive(MetadataDirective::Replace)
        .set_metadata(Some(user_metadata))
        .set_content_type(head.content_type().map(str::to_string))
        .set_cache_control(head.cache_control().map(str::to_string))
        .set_content_disposition(head.content_disposition().map(str::to_string))
        .set_content_encoding(head.content_encoding().map(str::to_string))
        .set_content_language(head.content_language().map(str::to_string))
        .set_storage_class(head.storage_class().cloned())
        .set_website_redirect_location(head.website_redirect_location().map(str::to_string))
        .set_server_side_encryption(head.server_side_encryption().cloned())
        .set_ssekms_key_id(head.ssekms_key_id().map(str::to_string))
        .set_bucket_key_enabled(head.bucket_key_enabled());
    if let Some(etag) = &etag {
        copy = copy
            .copy_source_if_match(format!("\"{etag}\""))
            .if_match(format!("\"{etag}\""));
    }
    copy.send().await.map_err(|e| {
        // 412: another version now; 409: a concurrent conditional write.
        if matches!(
            e.raw_response().map(|r| r.status().as_u16()),
            Some(412 | 409)
        ) {
            return ApiError::field(
                "not_ready",
                "id",
                "the upload was replaced while its focal point was set; try again once it is processed",
            )
            .with_status(StatusCode::CONFLICT);
        }
        ApiError::upstream(
            "S3 CopyObject of the upload onto itself",
            imgpipe_cloud::aws_error::brief(&e),
        )
    })?;
    tracing::info!(id, key = %object.key, focus = %focus.to_header(), "focal point set");
    body["changed"] = true.into();
    if metadata.as_ref().is_some_and(|m| m.focus.is_none()) {
        // Stored on the source for a later preset set; nothing is re-made now.
        body["note"] = "stored on the upload; no preset of the current set crops by a focal point, so nothing is re-made".into();
        return Ok((StatusCode::OK, body));
    }
    body["note"] = "accepted: the cover derivatives listed in 'remade' are re-made and invalidated on the CDN; GET status_url shows metadata.focus with source 'manual' once they are".into();
    Ok((StatusCode::ACCEPTED, body))
}

/// What a CopySource key escapes: everything but unreserved characters and `/`.
const COPY_SOURCE: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~')
    .remove(b'/');

#[cfg(test)]
mod tests {
    use super::*;
    use imgpipe_core::metadata::SourceInfo;

    #[test]
    fn only_an_authenticated_caller_may_set_it_unless_the_operator_allows_anyone() {
        let refused = authorise(&Caller::Anonymous, false).unwrap_err();
        assert_eq!(
            (refused.status, refused.code),
            (StatusCode::UNAUTHORIZED, "unauthorized")
        );
        assert!(refused.message.contains("IMGPIPE_ANONYMOUS_FOCUS"));
        assert!(authorise(&Caller::Anonymous, true).is_ok());
        let token = Caller::Authenticated {
            subject: Some("user-7".into()),
        };
        assert!(authorise(&token, false).is_ok());
    }

    #[test]
    fn the_body_is_a_point_inside_the_picture() {
        assert_eq!(
            parse_body(br#"{"x": 0.25, "y": 1}"#).unwrap(),
            FocalPoint { x: 0.25, y: 1.0 }
        );
        for (body, code) in [
            (&b"x=1"[..], "invalid_json"),
            (br#"{"x": 1.5, "y": 0}"#, "invalid_field"),
            (br#"{"x": 0.5}"#, "invalid_field"),
            (br#"{"x": 0.5, "y": 0.5, "z": 0}"#, "invalid_field"),
            (br#"[0.5, 0.5]"#, "invalid_field"),
        ] {
            let e = parse_body(body).unwrap_err();
            assert_eq!(e.status, StatusCode::BAD_REQUEST);
            assert_eq!(e.code, code, "{}", String::from_utf8_lossy(body));
        }
    }

    #[test]
    fn only_a_done_document_for_the_current_upload_can_be_refocused() {
        let document = |status: Status, etag: &str| {
            let mut m = Metadata::new(
                SourceInfo {
                    etag: Some(format!("\"{etag}\"")),
                    ..SourceInfo::default()
                },
                "hash",
            );
            m.status = status;
            m
        };
        assert!(ready(Some(&document(Status::Done, "e1")), Some("e1")).is_ok());
        for (metadata, why) in [
            (None, "still being processed"),
            (Some(document(Status::Done, "e0")), "still being processed"),
            (Some(document(Status::Failed, "e1")), "failed"),
        ] {
            let e = ready(metadata.as_ref(), Some("e1")).unwrap_err();
            assert_eq!((e.status, e.code), (StatusCode::CONFLICT, "not_ready"));
            assert!(e.message.contains(why), "{}", e.message);
        }
    }

    #[test]
    fn a_point_not_applied_yet_holds_the_next_one_back() {
        use imgpipe_core::focus::FocusSource;
        use imgpipe_core::metadata::FocusInfo;
        let mut document = Metadata::new(SourceInfo::default(), "hash");
        let at = |x: f64, y: f64| Some(FocalPoint { x, y });
        // A set without a focus: nothing is ever in flight.
        assert!(in_flight(Some(&document), at(0.1, 0.1)).is_ok());
        document.focus = Some(FocusInfo {
            x: 0.5,
            y: 0.4,
            source: FocusSource::Faces,
        });
        assert!(in_flight(Some(&document), None).is_ok(), "nothing set yet");
        let e = in_flight(Some(&document), at(0.2, 0.2)).unwrap_err();
        assert_eq!((e.status, e.code), (StatusCode::CONFLICT, "not_ready"));
        document.focus = Some(FocusInfo {
            x: 0.2,
            y: 0.2,
            source: FocusSource::Manual,
        });
        assert!(in_flight(Some(&document), at(0.2, 0.2)).is_ok(), "applied");
        assert!(in_flight(None, at(0.2, 0.2)).is_ok());
    }

    #[test]
    fn copy_sources_escape_the_key_but_not_its_slashes() {
        let key = "uploads/01J/a b+c,é.jpg";
        assert_eq!(
            percent_encoding::utf8_percent_encode(key, COPY_SOURCE).to_string(),
            "uploads/01J/a%20b%2Bc%2C%C3%A9.jpg"
        );
    }
}
