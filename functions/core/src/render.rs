//! Rendering one variant on request: a ladder rung or a signed parametric variant
//! ([`crate::variant`]), made by the same pipeline as the eager outputs (limits, orientation,
//! colour, never upscaled), one output instead of the whole set. Pure like the rest of the core:
//! the caller reads the source and stores the result.
//!
//! A variant is a one-preset set built from the request and validated like any preset file, so a
//! parametric variant cannot ask for what a preset could not. Its file name is the request's last
//! segment without the signature (`_w640-cover-q70.webp`, `hero-640w.webp`).

use crate::engine::Engine;
use crate::pipeline::{Failed, Options, SourceRef, process};
use crate::preset::{Fit, OutputFormat, PresetSet};
use crate::variant::{Params, Request};

/// One rendered variant.
#[derive(Debug, Clone)]
pub struct Rendered {
    /// File name in the source's output folder: `hero-640w.webp`, `_w640-cover-q70.webp`.
    pub name: String,
    /// The encoded bytes.
    pub bytes: Vec<u8>,
    /// Their format.
    pub format: OutputFormat,
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
}

/// Why a variant was not rendered.
#[derive(Debug, Clone)]
pub enum RenderError {
    /// Not something to render for this source (HTTP 404): a name the eager set makes, or a rung
    /// wider than the source (its ladder tops out at the source's own width).
    NotOffered(String),
    /// The pipeline refused or failed on the source (its failure kind, as for an upload).
    Failed(Box<Failed>),
}

/// Renders `request` from the source `bytes`, with the ladder presets of `presets`.
pub fn render(
    bytes: &[u8],
    source: &SourceRef,
    request: &Request,
    presets: &PresetSet,
    options: &Options,
    engine: &mut Engine,
) -> Result<Rendered, RenderError> {
    let (set, wanted) = match request {
        Request::Named(name) => {
            return Err(RenderError::NotOffered(format!(
                "{name} is made at upload, not on request"
            )));
        }
        Request::Rung {
            preset,
            width,
            format,
        } => (
            one_preset_set(presets, preset, Some(*width))?,
            format!("{preset}-{width}w.{}", format.extension()),
        ),
        Request::Parametric(params) => {
            let name = params.canonical();
            (parametric_set(params), name)
        }
        Request::OnRequest { preset, format } => (
            one_preset_set(presets, preset, None)?,
            format!("{preset}.{}", format.extension()),
        ),
    };
    let processed = process(bytes, source, &set, options, engine).map_err(RenderError::Failed)?;
    let derivative = processed
        .derivatives
        .into_iter()
        .next()
        .expect("a one-preset set makes one output");
    let name = format!("{}.{}", derivative.name, derivative.format.extension());
    if name != wanted {
        return Err(RenderError::NotOffered(format!(
            "this source's ladder tops out at {name} (it is {} px wide)",
            derivative.width
        )));
    }
    Ok(Rendered {
        name,
        bytes: derivative.bytes,
        format: derivative.format,
        width: derivative.width,
        height: derivative.height,
    })
}

/// The preset `name` alone, made now (and, for a ladder, only the rung `width`).
fn one_preset_set(
    presets: &PresetSet,
    name: &str,
    width: Option<u32>,
) -> Result<PresetSet, RenderError> {
    let Some(preset) = presets.presets().iter().find(|p| p.name == name) else {
        return Err(RenderError::NotOffered(format!("no preset {name}")));
    };
    let mut preset = preset.clone();
    preset.on_request = false;
    if let Some(width) = width {
        // A width the ladder lists, or a collapsed top rung: made from the narrowest listed rung
        // at least as wide, which the source's size then caps to `width` (or not: NotOffered).
        let rung = preset
            .widths
            .as_ref()
            .and_then(|widths| widths.iter().copied().find(|&rung| rung >= width))
            .unwrap_or(width);
        preset.widths = Some(vec![rung]);
    }
    let toml = toml::to_string(&Wrapper {
        preset: vec![preset],
    })
    .expect("a preset serialises");
    Ok(PresetSet::from_file_text("on-request preset", &toml)
        .expect("a preset of a valid set, alone, is valid"))
}

/// The one-preset set of a parametric variant, named by its canonical segment's stem.
fn parametric_set(params: &Params) -> PresetSet {
    let canonical = params.canonical();
    let (stem, _) = canonical
        .rsplit_once('.')
        .expect("canonical has an extension");
    let mut toml = format!(
        "[[preset]]\nname = \"{stem}\"\nformat = \"{}\"\n",
        serde_plain_format(params.format)
    );
    if let Some(w) = params.width {
        toml.push_str(&format!("width = {w}\n"));
    }
    if let Some(h) = params.height {
        toml.push_str(&format!("height = {h}\n"));
    }
    toml.push_str(match params.fit {
        Fit::Inside => "fit = \"inside\"\n",
        // A parametric cover crop keeps what the upload's `auto` crops keep (faces, the app's focal
        // point): the same rules for eager and on-request crops.
        Fit::Cover => "fit = \"cover\"\ngravity = \"auto\"\n",
        Fit::Fill => "fit = \"fill\"\n",
    });
    if let Some(q) = params.quality {
        toml.push_str(&format!("quality = {q}\n"));
    }
    PresetSet::from_file_text("on-request variant", &toml)
        .expect("the variant grammar only spells valid presets")
}

fn serde_plain_format(format: OutputFormat) -> &'static str {
    match format {
        OutputFormat::Jpeg => "jpeg",
        OutputFormat::Webp => "webp",
        OutputFormat::Png => "png",
        OutputFormat::Avif => "avif",
    }
}

#[derive(serde::Serialize)]
struct Wrapper {
    preset: Vec<crate::preset::Preset>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::fixture;

    fn source() -> SourceRef {
        SourceRef {
            bucket: "in".into(),
            key: "photo.jpg".into(),
            ..Default::default()
        }
    }

    fn params(width: Option<u32>, height: Option<u32>, fit: Fit, format: OutputFormat) -> Request {
        Request::Parametric(Params {
            width,
            height,
            fit,
            quality: Some(70),
            format,
        })
    }

    fn go(request: &Request, presets: &PresetSet) -> Result<Rendered, RenderError> {
        // Landscape_1.jpg: 600 × 450 once upright.
        render(
            &fixture("Landscape_1.jpg"),
            &source(),
            request,
            presets,
            &Options::default(),
            &mut Engine::default(),
        )
    }

    #[test]
    fn a_parametric_variant_is_rendered_by_the_pipeline_under_its_canonical_name() {
        let out = go(
            &params(Some(320), None, Fit::Inside, OutputFormat::Webp),
            &PresetSet::default_set(),
        )
        .unwrap();
        assert_eq!(out.name, "_w320-q70.webp");
        assert_eq!((out.width, out.height), (320, 240));
        assert_eq!(crate::format::sniff(&out.bytes).unwrap().as_str(), "webp");
        let cover = go(
            &params(Some(96), Some(96), Fit::Cover, OutputFormat::Jpeg),
            &PresetSet::default_set(),
        )
        .unwrap();
        assert_eq!(
            (cover.name.as_str(), cover.width, cover.height),
            ("_w96-h96-cover-q70.jpg", 96, 96)
        );
    }

    #[test]
    fn a_variant_is_never_upscaled() {
        let out = go(
            &params(Some(4096), None, Fit::Inside, OutputFormat::Jpeg),
            &PresetSet::default_set(),
        )
        .unwrap();
        assert_eq!((out.width, out.height), (600, 450));
    }

    #[test]
    fn a_rung_is_made_when_the_source_fills_it_and_refused_past_it() {
        let presets = PresetSet::from_file_text(
            "t.toml",
            "[[preset]]\nname = \"hero\"\nwidths = [320, 640, 1280]\nformat = \"webp\"\n",
        )
        .unwrap();
        let rung = |width| Request::Rung {
            preset: "hero".into(),
            width,
            format: OutputFormat::Webp,
        };
        let out = go(&rung(320), &presets).unwrap();
        assert_eq!((out.name.as_str(), out.width), ("hero-320w.webp", 320));
        match go(&rung(1280), &presets) {
            Err(RenderError::NotOffered(why)) => assert!(why.contains("hero-600w.webp"), "{why}"),
            other => panic!("{other:?}"),
        }
        // The collapsed top rung (what metadata lists for this 600 px source) is made; a width
        // between rungs is not.
        let out = go(&rung(600), &presets).unwrap();
        assert_eq!((out.name.as_str(), out.width), ("hero-600w.webp", 600));
        assert!(matches!(
            go(&rung(500), &presets),
            Err(RenderError::NotOffered(_))
        ));
        assert!(matches!(
            go(&Request::Named("preview".into()), &presets),
            Err(RenderError::NotOffered(_))
        ));
    }

    #[test]
    fn an_on_request_preset_is_made_on_request_and_never_at_upload() {
        let presets = PresetSet::from_file_text(
            "t.toml",
            "[[preset]]\nname = \"thumb\"\nwidth = 64\n\n[[preset]]\nname = \"card\"\nwidth = 300\nformat = \"webp\"\non_request = true\n",
        )
        .unwrap();
        let uploaded = crate::process(
            &fixture("Landscape_1.jpg"),
            &source(),
            &presets,
            &Options::default(),
            &mut Engine::default(),
        )
        .unwrap();
        let made: Vec<&str> = uploaded
            .derivatives
            .iter()
            .map(|d| d.name.as_str())
            .collect();
        assert_eq!(made, ["thumb"], "nothing of `card` at upload");
        let request = crate::variant::parse(
            "derived/photo.jpg/",
            "card.webp",
            &presets,
            &Default::default(),
            None,
        )
        .unwrap();
        let out = go(&request, &presets).unwrap();
        assert_eq!(
            (out.name.as_str(), out.width, out.height),
            ("card.webp", 300, 225)
        );
    }

    #[test]
    fn a_bad_source_fails_as_an_upload_would() {
        let out = render(
            b"not an image",
            &source(),
            &params(Some(320), None, Fit::Inside, OutputFormat::Webp),
            &PresetSet::default_set(),
            &Options::default(),
            &mut Engine::default(),
        );
        match out {
            Err(RenderError::Failed(failed)) => {
                assert_eq!(failed.error.kind.as_str(), "unsupported")
            }
            other => panic!("{other:?}"),
        }
    }
}
