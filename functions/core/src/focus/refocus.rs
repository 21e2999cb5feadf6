//! A new focal point for an image already processed (`PUT /v1/images/{id}/focus`): which presets
//! it re-makes, which files rendered on request it makes stale, the analysis to reuse, and the
//! document that results. Pure; the handler does the reading and writing.
//!
//! `recorded focus ≠ the source's ⇒ re-make the eager cover presets that follow the manual point
//! (gravity auto or focal) with the stored analysis ⇒ merge their entries into the document ⇒
//! delete and invalidate the cover variants rendered on request`
//!
//! Every other derivative is left as it is: its bytes, key and ETag do not depend on the focus.

use crate::focus::{Analysis, FocalPoint, FocusSource, Gravity, round4};
use crate::metadata::Metadata;
use crate::preset::{Fit, Preset, PresetSet};

/// True when `preset`'s crop moves with the app's focal point: a cover crop with gravity `auto`
/// (the manual point comes first) or `focal`.
pub fn follows_manual(preset: &Preset) -> bool {
    preset.fit == Fit::Cover && matches!(preset.gravity, Gravity::Auto | Gravity::Focal)
}

/// The eager presets a new focal point re-makes, as a set of their own (`None`: none, only presets
/// made on request follow it).
pub fn presets(set: &PresetSet) -> Option<PresetSet> {
    let remade: Vec<Preset> = set
        .presets()
        .iter()
        .filter(|p| !p.on_request && follows_manual(p))
        .cloned()
        .collect();
    // A subset of a valid set is valid (names unique, one format per group); an empty one is not.
    PresetSet::new(remade).ok()
}

/// The manual focal point `metadata` was made with, as it recorded it.
pub fn recorded(metadata: &Metadata) -> Option<FocalPoint> {
    metadata
        .focus
        .filter(|f| f.source == FocusSource::Manual)
        .map(|f| FocalPoint { x: f.x, y: f.y })
}

/// True when `metadata` was made with another manual focal point than `wanted` (the source object's
/// `focus` user metadata), compared as documents record them (4 decimals). A document without a
/// `focus` (its preset set looks for none) never needs a new one.
pub fn needed(metadata: &Metadata, wanted: Option<FocalPoint>) -> bool {
    let key = |p: FocalPoint| (round4(p.x), round4(p.y));
    metadata.focus.is_some() && recorded(metadata).map(key) != wanted.map(key)
}

/// What to crop by: the stored analysis with `wanted` as the manual point. `None` when the stored
/// one cannot answer without the pixels (no faces and no attention point recorded, and no manual
/// point to use instead): the pipeline then analyses the image again.
pub fn analysis(metadata: &Metadata, wanted: Option<FocalPoint>) -> Option<Analysis> {
    let stored = metadata.analysis()?;
    let usable = wanted.is_some() || !stored.faces.is_empty() || stored.attention.is_some();
    usable.then_some(Analysis {
        manual: wanted,
        ..stored
    })
}

/// `previous` with a new focus: the entries of `remade` (the re-made presets' document, from
/// [`crate::process`] with [`presets`]) in place of those presets' entries, in their places, and
/// its `focus`; without `remade` (nothing eager follows the point), the focus `analysis` gives.
/// Everything else (other derivatives, groups, EXIF, placeholder, timings) is kept: it does not
/// depend on the focus. The re-made files come from a run of those presets alone, which may decode
/// the source at a smaller scale than the whole set: their crops and sizes are a whole run's, their
/// bytes may differ slightly.
///
/// `copy` is the object version the new point came with (the copy's version id and sequencer, from
/// its event): recorded when known, so that expiring the old version of a versioned bucket is not
/// taken for the removal of this one, and an older event is still told apart.
pub fn merge(
    previous: &Metadata,
    remade: Option<&Metadata>,
    analysis: &Analysis,
    copy: &Version,
) -> Metadata {
    let mut merged = previous.clone();
    if copy.version_id.is_some() {
        merged.source.version_id = copy.version_id.clone();
    }
    if copy.sequencer.is_some() {
        merged.source.sequencer = copy.sequencer.clone();
    }
    match remade {
        Some(remade) => {
            let names: Vec<&str> = remade
                .derivatives
                .iter()
                .map(|d| d.preset.as_str())
                .collect();
            let mut derivatives = Vec::with_capacity(previous.derivatives.len());
            let mut placed: Vec<&str> = Vec::new();
            for d in &previous.derivatives {
                if !names.contains(&d.preset.as_str()) {
                    derivatives.push(d.clone());
                } else if !placed.contains(&d.preset.as_str()) {
                    placed.push(&d.preset);
                    derivatives.extend(
                        remade
                            .derivatives
                            .iter()
                            .filter(|r| r.preset == d.preset)
                            .cloned(),
                    );
                }
            }
            // A re-made preset the previous document did not list (it cannot happen for a
            // document of the same preset set; kept rather than dropped).
            derivatives.extend(
                remade
                    .derivatives
                    .iter()
                    .filter(|r| !placed.contains(&r.preset.as_str()))
                    .cloned(),
            );
            merged.derivatives = derivatives;
            merged.focus = remade.focus;
            if remade.faces.is_some() {
                merged.faces = remade.faces.clone();
            }
        }
        None => merged.focus = Some(analysis.focus_info()),
    }
    merged
}

/// The object version a new focal point came with (from its S3 event).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Version {
    /// The copy's version id, in a versioned bucket.
    pub version_id: Option<String>,
    /// The event's sequencer.
    pub sequencer: Option<String>,
}

/// True when `file`, a file of the image's output folder that its document does not list (a
/// variant rendered on request), was cropped by the focus: a signed parametric cover variant
/// (`_w200-h200-cover….webp`, cropped with `auto`) or the output of an on-request preset that
/// [`follows_manual`] (ladder rungs are never covers). Such files are deleted when the focus
/// changes; the next request renders them again.
pub fn stale_on_request(file: &str, set: &PresetSet) -> bool {
    if let Some(options) = file.strip_prefix('_') {
        let options = options.split('.').next().unwrap_or("");
        return options.split('-').any(|o| o == "cover");
    }
    let Some((stem, ext)) = file.rsplit_once('.') else {
        return false;
    };
    set.presets()
        .iter()
        .any(|p| p.name == stem && p.format.extension() == ext && follows_manual(p))
}

#[cfg(test)]
mod tests;
