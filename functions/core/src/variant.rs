//! What a request may ask for beyond a source's eager outputs (rendering on request): the grammar
//! of the last segment of a variant path, its one canonical form, and its signature. Pure: the
//! render binary, `imgpipe serve` and the signing examples all follow this file.
//!
//! Under a source's output folder `/<prefix><key>/`, the last segment names one of:
//! - **a preset or a group** by name (`thumbnail.jpg`, `preview`): always allowed, served or
//!   negotiated as the eager outputs are ([`crate::negotiate`]); an `on_request` preset's output
//!   (`card.webp`) is made on its first request ([`Request::OnRequest`]);
//! - **a ladder rung**, `<preset>-<width>w.<ext>`: allowed when the preset has `widths` listing
//!   that width and `ext` is the preset's format ([`Request::Rung`]). A narrower width below the
//!   ladder's top also parses: for a source narrower than the top rungs, they collapse into one at
//!   the source's width (`hero-1536w.webp`), which the source's metadata lists in its group; the
//!   renderer checks that list before rendering such a width ([`listed_in`]), so no other width is
//!   ever made;
//! - **a parametric variant**, `_<options>.<signature>.<ext>` ([`Request::Parametric`]), allowed only
//!   with a valid signature and within [`VariantLimits`]. The options are, in this order and each
//!   only when it is not the default: `w<width>`, `h<height>` (each a multiple of
//!   [`VariantLimits::step`], at most the limit), `cover` or `fill` (the fit; `inside`, the default,
//!   is never written), `q<quality>` (1–100; the format's default when absent), joined by `-`:
//!   `_w640-h480-cover-q70.<signature>.webp`. At least a width or a height.
//!
//! One variant has one key: a segment that is not the canonical spelling of its options (`w641`,
//! `q070`, `h480-w640`, `inside`) is refused with the canonical one in the reason, never mapped, so
//! a CDN and the derivatives bucket hold each variant once. [`Params::canonical`] writes it.
//!
//! **Signature**: the first 16 bytes of HMAC-SHA256 over the signed path, base64url without
//! padding (22 characters). The signed path is the variant's path without its leading `/` and
//! without the signature: `<prefix><key>/_<options>.<ext>`, the key as stored (not
//! percent-encoded). Several keys may be configured (rotation): [`SigningKeys::sign`] uses the
//! first, [`SigningKeys::verify`] accepts any.
//!
//! Refusals cost no render: [`Refusal::Malformed`] (HTTP 400: the syntax, a non-canonical
//! spelling, a limit) and [`Refusal::Forbidden`] (HTTP 403: a missing or wrong signature, or a
//! rung no preset offers). A parametric variant is checked for syntax, then its signature, then
//! its limits, so an unsigned request learns nothing about the limits.

use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::preset::{Fit, OutputFormat, PresetSet};

/// Bytes of HMAC-SHA256 kept in a signature (128 bits).
pub const SIGNATURE_BYTES: usize = 16;

/// What the last segment asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// A preset's output or a group, by name (`thumbnail.jpg`, `preview`).
    Named(String),
    /// One rung of a preset's `widths` ladder.
    Rung {
        /// The preset.
        preset: String,
        /// The rung's width.
        width: u32,
        /// The preset's format.
        format: OutputFormat,
    },
    /// A signed parametric variant.
    Parametric(Params),
    /// The output of an `on_request` preset (`card.webp`).
    OnRequest {
        /// The preset.
        preset: String,
        /// Its format.
        format: OutputFormat,
    },
}

/// The options of a parametric variant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Params {
    /// Target width, pixels.
    pub width: Option<u32>,
    /// Target height, pixels.
    pub height: Option<u32>,
    /// How the source fits the box.
    pub fit: Fit,
    /// Encoder quality, 1–100; the format's default when `None`.
    pub quality: Option<u8>,
    /// Output format.
    pub format: OutputFormat,
}

impl Params {
    /// The canonical segment without its signature: `_w640-h480-cover-q70.webp`.
    pub fn canonical(&self) -> String {
        let mut options = Vec::new();
        if let Some(w) = self.width {
            options.push(format!("w{w}"));
        }
        if let Some(h) = self.height {
            options.push(format!("h{h}"));
        }
        match self.fit {
            Fit::Inside => {}
            Fit::Cover => options.push("cover".into()),
            Fit::Fill => options.push("fill".into()),
        }
        if let Some(q) = self.quality {
            options.push(format!("q{q}"));
        }
        format!("_{}.{}", options.join("-"), self.format.extension())
    }
}

/// What parametric variants may ask for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VariantLimits {
    /// Largest width or height (default 4096). The render also never upscales past the source.
    pub max_dimension: u32,
    /// Widths and heights are multiples of this (default 8), so a client cannot make a render per
    /// pixel; signers snap to it ([`snap`]).
    pub step: u32,
    /// Formats a variant may be encoded to (default all four).
    pub formats: Vec<OutputFormat>,
}

impl Default for VariantLimits {
    fn default() -> Self {
        Self {
            max_dimension: 4096,
            step: 8,
            formats: OutputFormat::ALL.to_vec(),
        }
    }
}

/// `pixels` rounded to the nearest multiple of `step` (at least `step`): what a signer asks for.
pub fn snap(pixels: u32, step: u32) -> u32 {
    let step = step.max(1);
    (pixels.saturating_add(step / 2) / step).max(1) * step
}

/// Why a request is refused; no render is made for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// HTTP 400: not a variant this grammar can spell, not canonical, or over a limit.
    Malformed(String),
    /// HTTP 403: a parametric variant without a valid signature, or a rung no preset offers.
    Forbidden(String),
}

impl Refusal {
    /// The HTTP status to answer with.
    pub fn status(&self) -> u16 {
        match self {
            Refusal::Malformed(_) => 400,
            Refusal::Forbidden(_) => 403,
        }
    }

    /// The short reason.
    pub fn reason(&self) -> &str {
        match self {
            Refusal::Malformed(r) | Refusal::Forbidden(r) => r,
        }
    }
}

/// The signing keys (`IMGPIPE_VARIANT_KEYS`: several separated by spaces while rotating, the
/// first signs).
#[derive(Clone)]
pub struct SigningKeys(Vec<Vec<u8>>);

impl std::fmt::Debug for SigningKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SigningKeys({} keys)", self.0.len())
    }
}

/// Shortest key accepted: 32 bytes, HMAC-SHA256's own output size.
pub const MIN_KEY_BYTES: usize = 32;

impl SigningKeys {
    /// Parses space-separated keys; each at least [`MIN_KEY_BYTES`] long.
    pub fn parse(text: &str) -> Result<Self, String> {
        let keys: Vec<Vec<u8>> = text
            .split_whitespace()
            .map(|k| k.as_bytes().to_vec())
            .collect();
        if keys.is_empty() {
            return Err("no key given".into());
        }
        if let Some(short) = keys.iter().position(|k| k.len() < MIN_KEY_BYTES) {
            return Err(format!(
                "key {} is {} bytes; use at least {MIN_KEY_BYTES} random ones (e.g. `openssl rand -hex 32`)",
                short + 1,
                keys[short].len()
            ));
        }
        Ok(Self(keys))
    }

    fn mac(key: &[u8], signed_path: &str) -> Hmac<Sha256> {
        let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
        mac.update(signed_path.as_bytes());
        mac
    }

    /// The signature of `signed_path` (see the module doc) with the first key.
    pub fn sign(&self, signed_path: &str) -> String {
        let tag = Self::mac(&self.0[0], signed_path).finalize().into_bytes();
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&tag[..SIGNATURE_BYTES])
    }

    /// True when `signature` signs `signed_path` under any key (constant-time comparison).
    pub fn verify(&self, signed_path: &str, signature: &str) -> bool {
        let Ok(tag) = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(signature) else {
            return false;
        };
        tag.len() == SIGNATURE_BYTES
            && self.0.iter().any(|key| {
                Self::mac(key, signed_path)
                    .verify_truncated_left(&tag)
                    .is_ok()
            })
    }
}

/// The full signed segment of `params` for the output folder `dir` (`<prefix><key>/`, as
/// stored): `_w640.<signature>.webp`. What an app's signer (or `imgpipe sign`) hands out.
pub fn signed_segment(keys: &SigningKeys, dir: &str, params: &Params) -> String {
    let canonical = params.canonical();
    let signature = keys.sign(&format!("{dir}{canonical}"));
    let (stem, ext) = canonical
        .rsplit_once('.')
        .expect("a canonical segment has an extension");
    format!("{stem}.{signature}.{ext}")
}

/// Reads the last segment `segment` of a request under the output folder `dir`
/// (`<prefix><key>/`, decoded): which variant it asks for, or why it is refused.
/// `keys`: `None` when no signing key is configured (parametric variants are then forbidden).
pub fn parse(
    dir: &str,
    segment: &str,
    presets: &PresetSet,
    limits: &VariantLimits,
    keys: Option<&SigningKeys>,
) -> Result<Request, Refusal> {
    let malformed = |why: String| Err(Refusal::Malformed(why));
    if segment.is_empty() || segment.len() > 200 {
        return malformed("the last path segment is empty or too long".into());
    }
    if let Some(rest) = segment.strip_prefix('_') {
        return parametric(dir, rest, limits, keys);
    }
    let Some((stem, ext)) = segment.rsplit_once('.') else {
        return Ok(Request::Named(segment.to_string()));
    };
    if let Some(preset) = presets.presets().iter().find(|p| {
        p.on_request && p.widths.is_none() && p.name == stem && p.format.extension() == ext
    }) {
        return Ok(Request::OnRequest {
            preset: preset.name.clone(),
            format: preset.format,
        });
    }
    let Some((name, width)) = stem
        .rsplit_once('-')
        .and_then(|(name, w)| Some((name, w.strip_suffix('w')?)))
        .filter(|(_, w)| !w.is_empty() && w.bytes().all(|b| b.is_ascii_digit()))
    else {
        return Ok(Request::Named(segment.to_string()));
    };
    let width: u32 = match width.parse() {
        Ok(w) if !width.starts_with('0') => w,
        _ => return malformed(format!("'{width}' is not a width")),
    };
    let offered = presets.presets().iter().find(|p| {
        p.name == name
            && p.format.extension() == ext
            && p.widths
                .as_ref()
                .is_some_and(|w| w.iter().any(|&rung| rung >= width))
    });
    match offered {
        Some(preset) => Ok(Request::Rung {
            preset: preset.name.clone(),
            width,
            format: preset.format,
        }),
        None => Err(Refusal::Forbidden(format!(
            "no preset offers {name} at {width} px as .{ext}"
        ))),
    }
}

/// True when `file` (`hero-1536w.webp`) is named by a `srcset` of `metadata`'s groups: an output
/// that this source has, made or on request. A rung width its ladder does not list is rendered only
/// when this holds (the ladder's top collapsed to the source's width).
pub fn listed_in(metadata: &crate::metadata::Metadata, file: &str) -> bool {
    let tail = format!("/{file}");
    metadata.groups.values().any(|group| {
        group.variants.iter().any(|variant| {
            variant
                .srcset
                .split(", ")
                .filter_map(|entry| entry.split(' ').next())
                .any(|url| url.ends_with(&tail))
        })
    })
}

/// True when `request` is a rung its preset's `widths` do not list (a collapsed top rung): render it
/// only when [`listed_in`] the source's metadata.
pub fn needs_listing(request: &Request, presets: &PresetSet) -> bool {
    match request {
        Request::Rung { preset, width, .. } => presets
            .presets()
            .iter()
            .find(|p| &p.name == preset)
            .and_then(|p| p.widths.as_ref())
            .is_none_or(|widths| !widths.contains(width)),
        _ => false,
    }
}

fn parametric(
    dir: &str,
    rest: &str,
    limits: &VariantLimits,
    keys: Option<&SigningKeys>,
) -> Result<Request, Refusal> {
    let malformed = |why: String| Err(Refusal::Malformed(why));
    let parts: Vec<&str> = rest.split('.').collect();
    let (options, signature, ext) = match parts[..] {
        [options, signature, ext] => (options, Some(signature), ext),
        [options, ext] => (options, None, ext),
        _ => return malformed("a parametric variant is _<options>.<signature>.<ext>".into()),
    };
    let Some(format) = OutputFormat::ALL.into_iter().find(|f| f.extension() == ext) else {
        return malformed(format!("'.{ext}' is not an output format"));
    };
    let mut params = Params {
        width: None,
        height: None,
        fit: Fit::Inside,
        quality: None,
        format,
    };
    // Digits without a leading zero, at most 5 of them.
    let number = |digits: &str| -> Option<u32> {
        (!digits.is_empty() && !digits.starts_with('0') && digits.len() <= 5)
            .then(|| digits.parse().ok())
            .flatten()
    };
    for option in options.split('-') {
        let (letter, digits) = option.split_at_checked(1).unwrap_or(("", ""));
        match (option, letter, number(digits)) {
            ("cover", ..) => params.fit = Fit::Cover,
            ("fill", ..) => params.fit = Fit::Fill,
            (_, "w", Some(n)) => params.width = Some(n),
            (_, "h", Some(n)) => params.height = Some(n),
            (_, "q", Some(n)) if n <= 100 => params.quality = Some(n as u8),
            _ => {
                return malformed(format!(
                    "'{option}' is not an option (w<px>, h<px>, cover, fill, q<1-100>)"
                ));
            }
        }
    }
    if params.width.is_none() && params.height.is_none() {
        return malformed("a parametric variant needs w<px> or h<px>".into());
    }
    let canonical = params.canonical();
    if format!("_{options}.{ext}") != canonical {
        return malformed(format!("not canonical; the same variant is {canonical}"));
    }
    let Some(keys) = keys else {
        return Err(Refusal::Forbidden(
            "parametric variants are off (no signing key configured)".into(),
        ));
    };
    let Some(signature) = signature else {
        return Err(Refusal::Forbidden("missing signature".into()));
    };
    if !keys.verify(&format!("{dir}{canonical}"), signature) {
        return Err(Refusal::Forbidden("bad signature".into()));
    }
    for (name, value) in [("width", params.width), ("height", params.height)] {
        if let Some(v) = value
            && (v > limits.max_dimension || v % limits.step.max(1) != 0)
        {
            return malformed(format!(
                "{name} {v} is not a multiple of {} up to {}",
                limits.step, limits.max_dimension
            ));
        }
    }
    if !limits.formats.contains(&format) {
        return malformed(format!("'.{ext}' is not offered for variants here"));
    }
    Ok(Request::Parametric(params))
}

#[cfg(test)]
mod tests;
