//! `POST /v1/uploads` request: parsed and validated field by field, so every refusal names its
//! field. Pure: no AWS, no clock.
//!
//! Filenames are refused, never rewritten, when they could be mistaken for a path or hide what
//! they say: empty, over 255 bytes (UTF-8), `/` or `\`, `..`, `.` alone, control characters,
//! Unicode bidirectional controls (U+202E makes `photo<U+202E>gpj.exe` display as `photoexe.jpg`), leading/trailing whitespace, or `${`
//! (S3 replaces `${filename}` in a POST upload's `key` field with the name of the file sent, so the
//! object could land under another key than the one the API promised). Anything else (spaces,
//! accents, CJK, emoji, `#`, `%`, `+`, a `$` alone) is kept as is: keys are UTF-8, and URLs are
//! percent-encoded where they are built.

use imgpipe_core::focus::FocalPoint;

use crate::error::ApiError;

/// Content types imgpipe decodes (the sniffed bytes decide in the end; this is the upload's
/// declared, enforced `Content-Type`).
pub const ACCEPTED_CONTENT_TYPES: &[&str] = &[
    "image/jpeg",
    "image/png",
    "image/webp",
    "image/gif",
    "image/tiff",
    "image/bmp",
    "image/heic",
    "image/heif",
    "image/avif",
    "image/jxl",
];

/// Longest filename, in UTF-8 bytes (a common filesystem limit; S3 keys allow 1 024 in all).
pub const MAX_FILENAME_BYTES: usize = 255;

const FIELDS: &[&str] = &["filename", "content_type", "bytes", "method", "focus"];

/// How the app will upload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum UploadMethod {
    /// A pre-signed POST form: S3 enforces type, key, size range and expiry (the default).
    Post,
    /// A pre-signed PUT URL: S3 enforces type, key, the exact declared size (a signed
    /// `Content-Length`) and expiry.
    Put,
}

/// A valid request.
#[derive(Debug, Clone, PartialEq)]
pub struct UploadRequest {
    /// The file's name, as sent (validated).
    pub filename: String,
    /// One of [`ACCEPTED_CONTENT_TYPES`].
    pub content_type: &'static str,
    /// Declared size in bytes, 1 to the limit.
    pub bytes: u64,
    /// POST (default) or PUT.
    pub method: UploadMethod,
    /// The app's focal point (`{"x": 0.5, "y": 0.2}`, fractions of the upright picture): stored as
    /// the object's `x-amz-meta-focus`, enforced by the POST policy or signed into the PUT URL.
    pub focus: Option<FocalPoint>,
}

/// Parses and validates a request body against `max_bytes`.
pub fn parse_request(body: &[u8], max_bytes: u64) -> Result<UploadRequest, ApiError> {
    let value: serde_json::Value = serde_json::from_slice(body).map_err(|e| {
        ApiError::field(
            "invalid_json",
            "body",
            format!("the body is not valid JSON: {e}"),
        )
    })?;
    let example = r#"{"filename": "photo.jpg", "content_type": "image/jpeg", "bytes": 123456}"#;
    let object = value.as_object().ok_or_else(|| {
        ApiError::field(
            "invalid_json",
            "body",
            format!("the body must be a JSON object like {example}"),
        )
    })?;
    if let Some(unknown) = object.keys().find(|k| !FIELDS.contains(&k.as_str())) {
        return Err(ApiError::field(
            "unknown_field",
            unknown,
            format!(
                "unknown field '{unknown}'; the fields are filename, content_type, bytes and (optional) method and focus"
            ),
        ));
    }
    let text = |field: &'static str| -> Result<&str, ApiError> {
        match object.get(field) {
            None | Some(serde_json::Value::Null) => Err(ApiError::field(
                "missing_field",
                field,
                format!("'{field}' is required, e.g. {example}"),
            )),
            Some(serde_json::Value::String(s)) => Ok(s.as_str()),
            Some(other) => Err(ApiError::invalid(
                field,
                format!("'{field}' must be a string, not {other}"),
            )),
        }
    };
    let filename = text("filename")?;
    check_filename(filename)
        .map_err(|reason| ApiError::invalid("filename", format!("filename {reason}")))?;
    let declared = text("content_type")?;
    let content_type = ACCEPTED_CONTENT_TYPES
        .iter()
        .find(|t| t.eq_ignore_ascii_case(declared.trim()))
        .ok_or_else(|| {
            ApiError::field(
                "unsupported_content_type",
                "content_type",
                format!(
                    "'{declared}' is not a type imgpipe processes; send one of {}",
                    ACCEPTED_CONTENT_TYPES.join(", ")
                ),
            )
            .with_details(serde_json::json!({ "accepted": ACCEPTED_CONTENT_TYPES }))
        })?;
    let bytes = match object.get("bytes") {
        None | Some(serde_json::Value::Null) => {
            return Err(ApiError::field(
                "missing_field",
                "bytes",
                format!("'bytes' (the file's size) is required, e.g. {example}"),
            ));
        }
        Some(v) => v.as_u64().ok_or_else(|| {
            ApiError::invalid(
                "bytes",
                format!("'bytes' must be a whole number of bytes, not {v}"),
            )
        })?,
    };
    if bytes == 0 {
        return Err(ApiError::invalid(
            "bytes",
            "'bytes' is 0: an empty file is not an image",
        ));
    }
    if bytes > max_bytes {
        return Err(ApiError::field(
            "too_large",
            "bytes",
            format!("{bytes} bytes is over the {max_bytes}-byte upload limit"),
        )
        .with_details(serde_json::json!({ "max_bytes": max_bytes })));
    }
    let method = match object.get("method") {
        None | Some(serde_json::Value::Null) => UploadMethod::Post,
        Some(serde_json::Value::String(m)) if m.eq_ignore_ascii_case("post") => UploadMethod::Post,
        Some(serde_json::Value::String(m)) if m.eq_ignore_ascii_case("put") => UploadMethod::Put,
        Some(other) => {
            return Err(ApiError::invalid(
                "method",
                format!(
                    "'method' must be \"POST\" (default: a size range) or \"PUT\" (exactly the declared size), not {other}"
                ),
            ));
        }
    };
    let focus = match object.get("focus") {
        None | Some(serde_json::Value::Null) => None,
        Some(value) => Some(parse_focus(value)?),
    };
    Ok(UploadRequest {
        filename: filename.to_string(),
        content_type,
        bytes,
        method,
        focus,
    })
}

/// `{"x": <0-1>, "y": <0-1>}`: where cover crops centre, as fractions of the upright picture.
pub(crate) fn parse_focus(value: &serde_json::Value) -> Result<FocalPoint, ApiError> {
    let shape = || {
        ApiError::invalid(
            "focus",
            format!(
                "'focus' must be {{\"x\": <0-1>, \"y\": <0-1>}} (fractions of the upright width and height, from the top left), not {value}"
            ),
        )
    };
    let object = value.as_object().ok_or_else(shape)?;
    if object.len() != 2 {
        return Err(shape());
    }
    let coordinate = |name: &str| {
        object
            .get(name)
            .and_then(serde_json::Value::as_f64)
            .ok_or_else(shape)
    };
    FocalPoint::new(coordinate("x")?, coordinate("y")?)
        .map_err(|why| ApiError::invalid("focus", why))
}

/// Why `name` cannot be a filename, if it cannot.
pub fn check_filename(name: &str) -> Result<(), String> {
    if name.trim().is_empty() {
        return Err("is empty".into());
    }
    if name.len() > MAX_FILENAME_BYTES {
        return Err(format!(
            "is {} bytes long; at most {MAX_FILENAME_BYTES} bytes (UTF-8)",
            name.len()
        ));
    }
    if name.contains(['/', '\\']) {
        return Err("contains a path separator ('/' or '\\'); send the file's name only".into());
    }
    if name == "." || name.contains("..") {
        return Err("contains '..' or is '.'".into());
    }
    if let Some(c) = name.chars().find(|c| c.is_control() || is_bidi_control(*c)) {
        return Err(format!(
            "contains the invisible control character U+{:04X}",
            u32::from(c)
        ));
    }
    if name.trim() != name {
        return Err("starts or ends with whitespace".into());
    }
    if name.contains("${") {
        return Err(
            "contains '${', which S3 replaces in a POST upload's key (${filename}); rename the file"
                .into(),
        );
    }
    Ok(())
}

/// Unicode bidirectional formatting characters, which can make a name display as something else.
fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{061C}')
}

/// The object key of upload `id`: `<prefix><id>/<filename>`.
pub fn upload_key(prefix: &str, id: &str, filename: &str) -> String {
    format!("{prefix}{id}/{filename}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(body: &str) -> Result<UploadRequest, ApiError> {
        parse_request(body.as_bytes(), 1000)
    }

    #[test]
    fn phone_and_modern_formats_are_accepted() {
        for content_type in ["image/heic", "image/heif", "image/avif", "image/jxl"] {
            let body =
                format!(r#"{{"filename": "a.img", "content_type": "{content_type}", "bytes": 1}}"#);
            assert_eq!(parse(&body).unwrap().content_type, content_type);
        }
    }

    fn refused(body: &str) -> (String, String, u16) {
        let e = parse(body).unwrap_err();
        (
            e.code.to_string(),
            e.field.unwrap_or_default(),
            e.status.as_u16(),
        )
    }

    #[test]
    fn a_good_request_is_accepted_with_post_by_default() {
        let r = parse(
            r#"{"filename": "Café photo (1).JPG", "content_type": "Image/JPEG", "bytes": 1000}"#,
        )
        .unwrap();
        assert_eq!(r.filename, "Café photo (1).JPG");
        assert_eq!(r.content_type, "image/jpeg");
        assert_eq!((r.bytes, r.method), (1000, UploadMethod::Post));
        let put = parse(
            r#"{"filename": "a.png", "content_type": "image/png", "bytes": 1, "method": "put"}"#,
        )
        .unwrap();
        assert_eq!(put.method, UploadMethod::Put);
    }

    #[test]
    fn a_focal_point_is_optional_and_checked() {
        let body = |focus: &str| {
            format!(
                r#"{{"filename": "a.jpg", "content_type": "image/jpeg", "bytes": 1, "focus": {focus}}}"#
            )
        };
        assert_eq!(
            parse(&body(r#"{"x": 0.25, "y": 0}"#)).unwrap().focus,
            Some(FocalPoint { x: 0.25, y: 0.0 })
        );
        assert_eq!(parse(&body("null")).unwrap().focus, None);
        for bad in [
            r#"{"x": 1.5, "y": 0.5}"#,
            r#"{"x": 0.5, "y": -0.1}"#,
            r#"{"x": 0.5}"#,
            r#"{"x": 0.5, "y": 0.5, "z": 1}"#,
            r#"{"x": "0.5", "y": 0.5}"#,
            r#""0.5,0.5""#,
            "[0.5, 0.5]",
        ] {
            let (code, field, status) = refused(&body(bad));
            assert_eq!(
                (code.as_str(), field.as_str(), status),
                ("invalid_field", "focus", 400),
                "{bad}"
            );
        }
    }

    #[test]
    fn every_refusal_names_its_field() {
        let cases = [
            ("not json", ("invalid_json", "body")),
            ("[1, 2]", ("invalid_json", "body")),
            (
                r#"{"content_type": "image/jpeg", "bytes": 1}"#,
                ("missing_field", "filename"),
            ),
            (
                r#"{"filename": "a.jpg", "bytes": 1}"#,
                ("missing_field", "content_type"),
            ),
            (
                r#"{"filename": "a.jpg", "content_type": "image/jpeg"}"#,
                ("missing_field", "bytes"),
            ),
            (
                r#"{"filename": 7, "content_type": "image/jpeg", "bytes": 1}"#,
                ("invalid_field", "filename"),
            ),
            (
                r#"{"filename": "a.jpg", "content_type": "image/svg+xml", "bytes": 1}"#,
                ("unsupported_content_type", "content_type"),
            ),
            (
                r#"{"filename": "a.jpg", "content_type": "image/jpeg; charset=x", "bytes": 1}"#,
                ("unsupported_content_type", "content_type"),
            ),
            (
                r#"{"filename": "a.jpg", "content_type": "image/jpeg", "bytes": 0}"#,
                ("invalid_field", "bytes"),
            ),
            (
                r#"{"filename": "a.jpg", "content_type": "image/jpeg", "bytes": -5}"#,
                ("invalid_field", "bytes"),
            ),
            (
                r#"{"filename": "a.jpg", "content_type": "image/jpeg", "bytes": 1.5}"#,
                ("invalid_field", "bytes"),
            ),
            (
                r#"{"filename": "a.jpg", "content_type": "image/jpeg", "bytes": "12"}"#,
                ("invalid_field", "bytes"),
            ),
            (
                r#"{"filename": "a.jpg", "content_type": "image/jpeg", "bytes": 1001}"#,
                ("too_large", "bytes"),
            ),
            (
                r#"{"filename": "a.jpg", "content_type": "image/jpeg", "bytes": 1, "method": "GET"}"#,
                ("invalid_field", "method"),
            ),
            (
                r#"{"filename": "a.jpg", "contentType": "image/jpeg", "bytes": 1}"#,
                ("unknown_field", "contentType"),
            ),
        ];
        for (body, (code, field)) in cases {
            assert_eq!(
                refused(body),
                (code.to_string(), field.to_string(), 400),
                "{body}"
            );
        }
    }

    #[test]
    fn filenames_that_look_like_paths_or_hide_characters_are_refused() {
        let long = "a".repeat(252) + ".jpg";
        for bad in [
            "",
            "   ",
            ".",
            "..",
            "../etc/passwd",
            "a/b.jpg",
            "C:\\photos\\a.jpg",
            "a..b.jpg",
            "a\u{0}.jpg",
            "a\nb.jpg",
            "a\u{7f}.jpg",
            "a\u{85}.jpg",
            "photo\u{202E}gpj.exe",
            " a.jpg",
            "a.jpg ",
            "${filename}",
            "a${filename}.jpg",
            "x${y}.png",
            long.as_str(),
        ] {
            assert!(check_filename(bad).is_err(), "{bad:?} was accepted");
        }
        let longest = "é".repeat(126) + ".j"; // 254 bytes
        for good in [
            "a.jpg",
            "my photo (1).jpeg",
            "漢字.png",
            "emoji 📷.webp",
            "100%#+&=.gif",
            "price $5.jpg",
            "{braces}.png",
            ".hidden.jpg",
            longest.as_str(),
        ] {
            assert_eq!(check_filename(good), Ok(()), "{good:?}");
        }
        assert!(check_filename(&long).unwrap_err().contains("256 bytes"));
    }

    #[test]
    fn keys_are_prefix_id_filename() {
        assert_eq!(
            upload_key("uploads/", "01ABC", "a b.jpg"),
            "uploads/01ABC/a b.jpg"
        );
    }
}
