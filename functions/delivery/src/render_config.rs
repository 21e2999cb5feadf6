//! The render function's configuration, from its environment (documented defaults; the same
//! variables as the `derive` worker where they mean the same thing, so one preset file and one set
//! of limits serve both):
//!
//! | variable | default | meaning |
//! |---|---|---|
//! | `IMGPIPE_OUTPUT_BUCKET` | required | the derivatives bucket (read and written) |
//! | `IMGPIPE_OUTPUT_PREFIX` | `derived/` | the output prefix |
//! | `IMGPIPE_PRESETS_FILE` | the built-in set | presets: ladders and `on_request` presets say what may be rendered |
//! | `IMGPIPE_MAX_SOURCE_BYTES`, `…_PIXELS`, `…_WIDTH`, `…_HEIGHT`, `…_FRAMES`, `IMGPIPE_MAX_DECODE_MIB` | as `derive` | limits on the source |
//! | `IMGPIPE_JPEG_BACKGROUND` | `#ffffff` | what transparency is flattened onto in a JPEG |
//! | `IMGPIPE_CACHE_CONTROL` | as `derive` | Cache-Control of what is stored and answered |
//! | `IMGPIPE_VARIANT_KEYS` / `IMGPIPE_VARIANT_KEYS_PARAMETER` | none | signing keys of parametric variants, space-separated (the first signs), or the SSM SecureString holding them; neither: parametric variants answer 403 |
//! | `IMGPIPE_VARIANT_MAX_DIMENSION` | 4096 | largest width or height of a parametric variant |
//! | `IMGPIPE_VARIANT_STEP` | 8 | widths and heights are multiples of it |
//! | `IMGPIPE_VARIANT_FORMATS` | `jpeg,webp,avif,png` | formats a parametric variant may ask for |
//! | `IMGPIPE_RENDER_INLINE_MAX_BYTES` | 4194304 | larger results are stored and answered with a redirect |

use imgpipe_cloud::config::{
    ConfigError, DEFAULT_CACHE_CONTROL, Lookup, read_background, read_layout, read_limits,
    read_number, read_presets, read_required,
};
use imgpipe_cloud::secret::SecretSource;
use imgpipe_core::preset::OutputFormat;
use imgpipe_core::variant::VariantLimits;
use imgpipe_core::{Limits, OutputLayout, PresetSet};

use crate::render_origin::DEFAULT_INLINE_MAX;

/// The render function's configuration.
#[derive(Debug, Clone)]
pub struct RenderConfig {
    /// The derivatives bucket.
    pub output_bucket: String,
    /// Output layout (its prefix).
    pub layout: OutputLayout,
    /// The preset set.
    pub presets: PresetSet,
    /// Limits on the source.
    pub limits: Limits,
    /// JPEG background for transparent sources.
    pub background: [u8; 3],
    /// Cache-Control of what is stored.
    pub cache_control: String,
    /// Where the signing keys come from; `None`: parametric variants are forbidden.
    pub keys: Option<SecretSource>,
    /// Limits of parametric variants.
    pub variant_limits: VariantLimits,
    /// Inline answers up to this many bytes.
    pub inline_max: usize,
}

impl RenderConfig {
    /// Reads the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok().filter(|v| !v.is_empty()))
    }

    /// Reads configuration through `lookup`.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let lookup: Lookup<'_> = &lookup;
        let number = |variable, default| read_number(lookup, variable, default);
        let keys = match (
            lookup("IMGPIPE_VARIANT_KEYS"),
            lookup("IMGPIPE_VARIANT_KEYS_PARAMETER"),
        ) {
            (Some(_), Some(_)) => {
                return Err(ConfigError {
                    variable: "IMGPIPE_VARIANT_KEYS",
                    message: "set it or IMGPIPE_VARIANT_KEYS_PARAMETER, not both".into(),
                });
            }
            (Some(value), None) => Some(SecretSource::Value(value)),
            (None, Some(name)) => Some(SecretSource::SsmParameter(name)),
            (None, None) => None,
        };
        let defaults = VariantLimits::default();
        let formats = match lookup("IMGPIPE_VARIANT_FORMATS") {
            None => defaults.formats,
            Some(list) => list
                .split(',')
                .map(str::trim)
                .filter(|f| !f.is_empty())
                .map(|f| {
                    OutputFormat::ALL
                        .into_iter()
                        .find(|o| o.as_str() == f)
                        .ok_or_else(|| ConfigError {
                            variable: "IMGPIPE_VARIANT_FORMATS",
                            message: format!("'{f}' is not one of jpeg, webp, avif, png"),
                        })
                })
                .collect::<Result<Vec<_>, _>>()?,
        };
        let background = read_background(lookup)?;
        let step = number("IMGPIPE_VARIANT_STEP", u64::from(defaults.step))?;
        if step == 0 {
            return Err(ConfigError {
                variable: "IMGPIPE_VARIANT_STEP",
                message: "must be at least 1".into(),
            });
        }
        Ok(Self {
            output_bucket: read_required(lookup, "IMGPIPE_OUTPUT_BUCKET")?,
            layout: read_layout(lookup),
            presets: read_presets(lookup)?,
            limits: read_limits(lookup)?,
            background,
            cache_control: lookup("IMGPIPE_CACHE_CONTROL")
                .unwrap_or_else(|| DEFAULT_CACHE_CONTROL.into()),
            keys,
            variant_limits: VariantLimits {
                max_dimension: number(
                    "IMGPIPE_VARIANT_MAX_DIMENSION",
                    u64::from(defaults.max_dimension),
                )?
                .clamp(1, 65_535) as u32,
                step: step.min(4096) as u32,
                formats,
            },
            inline_max: number("IMGPIPE_RENDER_INLINE_MAX_BYTES", DEFAULT_INLINE_MAX as u64)?
                as usize,
        })
    }

    /// The pipeline options renders use (metadata is never written by a render, so GPS and the
    /// CDN base URL play no part).
    pub fn pipeline_options(&self) -> imgpipe_core::Options {
        imgpipe_core::Options {
            limits: self.limits,
            background: self.background,
            layout: self.layout.clone(),
            ..imgpipe_core::Options::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(vars: &[(&str, &str)]) -> Result<RenderConfig, ConfigError> {
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        RenderConfig::from_lookup(move |name| {
            vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
        })
    }

    #[test]
    fn defaults_are_the_documented_ones() {
        let c = config(&[("IMGPIPE_OUTPUT_BUCKET", "out")]).unwrap();
        assert_eq!(c.layout.prefix, "derived/");
        assert_eq!(c.keys, None);
        assert_eq!(c.variant_limits, VariantLimits::default());
        assert_eq!(c.inline_max, 4 << 20);
        assert_eq!(c.cache_control, DEFAULT_CACHE_CONTROL);
        assert_eq!(c.background, [255, 255, 255]);
        assert_eq!(c.presets, PresetSet::default_set());
    }

    #[test]
    fn bad_values_name_their_variable() {
        let cases = [
            (vec![], "IMGPIPE_OUTPUT_BUCKET"),
            (
                vec![("IMGPIPE_VARIANT_FORMATS", "webp,gif")],
                "IMGPIPE_VARIANT_FORMATS",
            ),
            (vec![("IMGPIPE_VARIANT_STEP", "0")], "IMGPIPE_VARIANT_STEP"),
            (
                vec![
                    ("IMGPIPE_VARIANT_KEYS", "k"),
                    ("IMGPIPE_VARIANT_KEYS_PARAMETER", "/p"),
                ],
                "IMGPIPE_VARIANT_KEYS",
            ),
            (
                vec![("IMGPIPE_JPEG_BACKGROUND", "#12")],
                "IMGPIPE_JPEG_BACKGROUND",
            ),
        ];
        for (mut vars, variable) in cases {
            if variable != "IMGPIPE_OUTPUT_BUCKET" {
                vars.push(("IMGPIPE_OUTPUT_BUCKET", "out"));
            }
            let error = config(&vars).unwrap_err();
            assert_eq!(error.variable, variable, "{vars:?}: {error}");
        }
    }

    #[test]
    fn variant_limits_and_keys_are_read() {
        let c = config(&[
            ("IMGPIPE_OUTPUT_BUCKET", "out"),
            ("IMGPIPE_VARIANT_FORMATS", "webp, avif"),
            ("IMGPIPE_VARIANT_MAX_DIMENSION", "2048"),
            ("IMGPIPE_VARIANT_STEP", "16"),
            ("IMGPIPE_VARIANT_KEYS_PARAMETER", "/imgpipe/variant-keys"),
            ("IMGPIPE_RENDER_INLINE_MAX_BYTES", "1000"),
        ])
        .unwrap();
        assert_eq!(
            c.variant_limits.formats,
            [OutputFormat::Webp, OutputFormat::Avif]
        );
        assert_eq!(
            (c.variant_limits.max_dimension, c.variant_limits.step),
            (2048, 16)
        );
        assert_eq!(
            c.keys,
            Some(SecretSource::SsmParameter("/imgpipe/variant-keys".into()))
        );
        assert_eq!(c.inline_max, 1000);
    }
}
