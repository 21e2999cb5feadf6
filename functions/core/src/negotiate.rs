//! Format negotiation for format-less requests (`/<output key>/<group>`): the rules of the CloudFront
//! Function `infra/cloudfront/negotiate.js`, in Rust for the local gateway. Both are tested against the
//! same case table, `infra/cloudfront/cases.json`, so the edge and the gateway answer alike.
//!
//! A request for a variant group is rewritten to the best derivative the client accepts: AVIF, then
//! WebP, then JPEG, then PNG, among the formats the group has. AVIF and WebP count only when the
//! `Accept` header names them with q > 0; JPEG and PNG also through `image/*`, `*/*` or no header, and
//! are the fallback whatever it says. Unsafe paths (dot segments, encoded slashes or dots, backslashes,
//! control characters) are refused before anything else, and so is a last segment that starts with
//! `_` without the shape of a parametric variant (`_<options>[.<signature>].<ext>`). Any other path that is not a derivative
//! file (`.jpg`, `.webp`, `.avif`, `.png`) is not served: the edge never hands out a document
//! (metadata.json holds the uploader's location; summaries and import outcomes hold URLs).

use std::collections::BTreeMap;

/// Group name → format (`avif`, `webp`, `jpeg`, `png`) → file name, as
/// [`PresetSet::edge_groups`](crate::preset::PresetSet::edge_groups) gives it.
pub type EdgeGroups = BTreeMap<String, BTreeMap<String, String>>;

const PREFERENCE: [&str; 4] = ["avif", "webp", "jpeg", "png"];
const FALLBACK: [&str; 4] = ["jpeg", "png", "webp", "avif"];

/// What to do with a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Negotiation {
    /// A derivative file: serve the path as it is.
    Unchanged,
    /// Serve `path` instead; `content_type` is the chosen format's media type, which also replaces
    /// the request's `Accept` so a cache keyed on it holds at most one entry per format.
    Rewritten {
        /// The derivative's path (same encoding as the request's).
        path: String,
        /// `image/avif`, `image/webp`, `image/jpeg` or `image/png`.
        content_type: &'static str,
    },
    /// Refuse with 400: the path tries to leave its prefix or hides characters.
    Refused,
    /// Answer 404: neither a group nor a derivative file (a document, an unknown name).
    NotServed,
}

/// The extensions of the files imgpipe writes ([`OutputFormat::extension`](crate::preset::OutputFormat::extension),
/// with the dot): the only files the edge serves.
pub fn served_extensions() -> Vec<String> {
    crate::preset::OutputFormat::ALL
        .iter()
        .map(|f| format!(".{}", f.extension()))
        .collect()
}

/// True when the last path segment `name` is a derivative file by its extension (no allocation:
/// the local gateway asks on every request).
fn is_derivative_file(name: &str) -> bool {
    crate::preset::OutputFormat::ALL.iter().any(|f| {
        name.strip_suffix(f.extension())
            .and_then(|stem| stem.strip_suffix('.'))
            .is_some_and(|stem| !stem.is_empty())
    })
}

/// Negotiates `path` (percent-encoded, starting with `/`) for a client sending `accept`
/// (`None` or empty when the request has no `Accept`).
pub fn negotiate(path: &str, accept: Option<&str>, groups: &EdgeGroups) -> Negotiation {
    if unsafe_path(path) {
        return Negotiation::Refused;
    }
    let slash = path.rfind('/').unwrap_or(0);
    let last = &path[slash + 1..];
    if last.starts_with('_') && !variant_shaped(last) {
        return Negotiation::Refused;
    }
    let group = groups.get(last).filter(|_| slash > 0);
    let Some(group) = group else {
        return if is_derivative_file(last) {
            Negotiation::Unchanged
        } else {
            Negotiation::NotServed
        };
    };
    let accept = accept.unwrap_or("");
    let weights = parse_accept(accept);
    let chosen = PREFERENCE
        .into_iter()
        .find(|f| group.contains_key(*f) && acceptable(f, &weights, !accept.is_empty()))
        .or_else(|| FALLBACK.into_iter().find(|f| group.contains_key(*f)));
    let Some(format) = chosen else {
        return Negotiation::Unchanged; // a group with no known format: nothing to choose
    };
    Negotiation::Rewritten {
        path: format!("{}{}", &path[..=slash], group[format]),
        content_type: mime(format),
    }
}

fn mime(format: &str) -> &'static str {
    match format {
        "avif" => "image/avif",
        "webp" => "image/webp",
        "png" => "image/png",
        _ => "image/jpeg",
    }
}

/// Highest q-value of each listed media type, lower-cased.
fn parse_accept(header: &str) -> BTreeMap<String, f64> {
    let mut weights = BTreeMap::new();
    for part in header.to_ascii_lowercase().split(',') {
        let mut fields = part.split(';');
        let kind = fields.next().unwrap_or("").trim().to_string();
        if kind.is_empty() {
            continue;
        }
        let mut q = 1.0;
        for param in fields.map(str::trim) {
            if let Some(value) = param.strip_prefix("q=") {
                q = leading_float(value).map_or(0.0, |v| v.clamp(0.0, 1.0));
            }
        }
        let entry = weights.entry(kind).or_insert(0.0);
        *entry = f64::max(*entry, q);
    }
    weights
}

/// JavaScript's `parseFloat`: the longest numeric prefix (after leading white space), if any.
fn leading_float(text: &str) -> Option<f64> {
    let text = text.trim_start();
    (1..=text.len())
        .rev()
        .filter(|&end| text.is_char_boundary(end))
        .find_map(|end| {
            let prefix = &text[..end];
            let numeric = prefix
                .bytes()
                .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'+' | b'-' | b'e' | b'E'));
            numeric.then(|| prefix.parse::<f64>().ok()).flatten()
        })
}

fn acceptable(format: &str, weights: &BTreeMap<String, f64>, has_accept: bool) -> bool {
    if let Some(q) = weights.get(mime(format)) {
        return *q > 0.0;
    }
    if format != "jpeg" && format != "png" {
        return false; // AVIF and WebP only when named: a bare */* client may not decode them
    }
    if !has_accept {
        return true;
    }
    match weights.get("image/*").or_else(|| weights.get("*/*")) {
        Some(q) => *q > 0.0,
        None => true,
    }
}

/// The shape of a parametric variant's segment (`_<options>[.<22-char signature>].<ext>`,
/// [`crate::variant`]): anything else starting with `_` is refused at the edge with 400, before any
/// origin; the render origin checks the options, the signature and the limits.
fn variant_shaped(segment: &str) -> bool {
    let parts: Vec<&str> = segment[1..].split('.').collect();
    let (options, signature, ext) = match parts[..] {
        [options, signature, ext] => (options, Some(signature), ext),
        [options, ext] => (options, None, ext),
        _ => return false,
    };
    let options_ok = (1..=80).contains(&options.len())
        && options
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    let signature_ok = signature.is_none_or(|s| {
        s.len() == 22
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    });
    options_ok
        && signature_ok
        && crate::preset::OutputFormat::ALL
            .iter()
            .any(|f| f.extension() == ext)
}

fn unsafe_path(path: &str) -> bool {
    if !path.starts_with('/') {
        return true;
    }
    if path.chars().any(|c| c.is_ascii_control() || c == '\\') {
        return true;
    }
    let lower = path.to_ascii_lowercase();
    if ["%2f", "%5c", "%2e", "%00"]
        .iter()
        .any(|e| lower.contains(e))
    {
        return true;
    }
    path.split('/').skip(1).any(|s| s == "." || s == "..")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::preset::PresetSet;

    /// A file of `infra/cloudfront/`, read when the test runs: a file outside this package must not
    /// be compiled in, or a build cached from another clone would keep that clone's copy (see
    /// docs/development.md, "Build cache and test tiers").
    fn infra_cloudfront(name: &str) -> String {
        let path = std::path::Path::new(
            &std::env::var_os("CARGO_MANIFEST_DIR")
                .expect("cargo sets CARGO_MANIFEST_DIR for tests"),
        )
        .join("../../infra/cloudfront")
        .join(name);
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    fn groups_of(value: &serde_json::Value) -> EdgeGroups {
        serde_json::from_value(value.clone()).unwrap()
    }

    #[test]
    fn every_shared_case_gives_what_the_cloudfront_function_gives() {
        // The table `infra/cloudfront/negotiate.test.mjs` runs the CloudFront Function against.
        let table: serde_json::Value =
            serde_json::from_str(&infra_cloudfront("cases.json")).unwrap();
        let default = PresetSet::default_set().edge_groups();
        let avif = groups_of(&table["avif_groups"]);
        let cases = table["cases"].as_array().unwrap();
        assert!(cases.len() >= 15);
        for case in cases {
            let name = case["name"].as_str().unwrap();
            let groups = if case["groups"] == "avif" {
                &avif
            } else {
                &default
            };
            let accept = case["accept"].as_str();
            let got = negotiate(case["uri"].as_str().unwrap(), accept, groups);
            let expect = &case["expect"];
            if expect["status"] == 400 {
                assert_eq!(got, Negotiation::Refused, "{name}");
                continue;
            }
            if expect["status"] == 404 {
                assert_eq!(got, Negotiation::NotServed, "{name}");
                continue;
            }
            let (path, accept_out) = match got {
                Negotiation::Rewritten { path, content_type } => (path, Some(content_type)),
                Negotiation::Unchanged => (case["uri"].as_str().unwrap().to_string(), accept),
                Negotiation::Refused | Negotiation::NotServed => panic!("{name}: no file served"),
            };
            assert_eq!(path, expect["uri"].as_str().unwrap(), "{name}");
            assert_eq!(accept_out, expect["accept"].as_str(), "{name}");
        }
    }

    #[test]
    fn the_functions_groups_are_the_default_sets() {
        let function = infra_cloudfront("negotiate.js");
        let start = function.find("var GROUPS = ").unwrap() + "var GROUPS = ".len();
        let end = start + function[start..].find(";\n").unwrap();
        let in_function: EdgeGroups = serde_json::from_str(&function[start..end]).unwrap();
        assert_eq!(in_function, PresetSet::default_set().edge_groups());
    }

    #[test]
    fn the_function_serves_the_extensions_imgpipe_writes() {
        let function = infra_cloudfront("negotiate.js");
        let start =
            function.find("var FILE_EXTENSIONS = ").unwrap() + "var FILE_EXTENSIONS = ".len();
        let end = start + function[start..].find(";\n").unwrap();
        let in_function: Vec<String> =
            serde_json::from_str(&function[start..end].replace('\'', "\"")).unwrap();
        assert_eq!(in_function, served_extensions());
    }

    #[test]
    fn leading_float_reads_like_parse_float() {
        assert_eq!(leading_float("0.8"), Some(0.8));
        assert_eq!(leading_float(" 0.5abc"), Some(0.5));
        assert_eq!(leading_float("abc"), None);
        assert_eq!(leading_float(""), None);
    }
}
