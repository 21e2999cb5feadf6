//! How the pipeline describes its outputs in metadata: a made derivative, an on-request output not
//! made yet (a group member with its future URL), and the public URL of a key.

use super::{Derivative, Options};
use crate::metadata::{DerivativeInfo, QualityInfo};
use crate::plan;
use crate::preset::PresetSet;

/// An on-request output as a group member: where it will be and its size; no bytes yet.
pub(super) fn planned(
    target: &plan::Target,
    presets: &PresetSet,
    source_key: &str,
    options: &Options,
) -> DerivativeInfo {
    let preset = &presets.presets()[target.preset];
    let key = options
        .layout
        .derivative_key(source_key, &target.name, preset.format.extension());
    DerivativeInfo {
        preset: preset.name.clone(),
        group: Some(preset.group_name().to_string()),
        url: options
            .cdn_base_url
            .as_deref()
            .map(|base| public_url(base, &key)),
        key,
        format: preset.format.as_str().into(),
        content_type: preset.format.content_type().into(),
        width: target.width,
        height: target.height,
        frames: 1,
        bytes: 0,
        compression_ratio: 0.0,
        quality: None,
        crop: None,
    }
}

pub(super) fn describe(
    derivative: &Derivative,
    source_bytes: usize,
    cdn_base_url: Option<&str>,
) -> DerivativeInfo {
    let ratio = source_bytes as f64 / derivative.bytes.len().max(1) as f64;
    let url = cdn_base_url.map(|base| public_url(base, &derivative.key));
    DerivativeInfo {
        preset: derivative.preset.clone(),
        group: Some(derivative.group.clone()),
        key: derivative.key.clone(),
        format: derivative.format.as_str().into(),
        content_type: derivative.format.content_type().into(),
        width: derivative.width,
        height: derivative.height,
        frames: derivative.frames,
        bytes: derivative.bytes.len() as u64,
        url,
        compression_ratio: (ratio * 100.0).round() / 100.0,
        quality: derivative.quality.map(|c| QualityInfo {
            target: c.target,
            setting: c.quality,
            score: (c.score * 100.0).round() / 100.0,
            trials: c.trials,
            reached: c.reached,
        }),
        crop: derivative.crop,
    }
}

/// `base` + `/` + the key with each path segment percent-encoded (spaces, `+`, `%`, non-ASCII…).
pub fn public_url(base: &str, key: &str) -> String {
    use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
    const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'_')
        .remove(b'.')
        .remove(b'~');
    let path: Vec<String> = key
        .split('/')
        .map(|segment| utf8_percent_encode(segment, SEGMENT).to_string())
        .collect();
    format!("{}/{}", base.trim_end_matches('/'), path.join("/"))
}
