//! imgpipe-core: the pure image pipeline. Bytes and presets in, derivatives and a metadata document
//! out. No AWS, no async runtime, no environment reads: everything it needs is an argument.
//!
//! `probe header ⇒ check limits ⇒ read EXIF ⇒ plan ⇒ decode (shrink-on-load) ⇒ sRGB ⇒ orient ⇒ resize ×N ⇒ encode ×N ⇒ metadata`
//!
//! # Layout
//! - [`pipeline`]: the steps in order ([`process`] is the entry point).
//! - [`format`] and [`probe`]: magic-byte sniffing and header-only dimensions; [`heif`] reads the
//!   HEIF boxes of HEIC and AVIF; [`gain_map`] spots Ultra HDR JPEGs.
//! - [`limits`]: byte and pixel limits checked before decoding; [`memory`]: the peak memory an image
//!   will need, predicted from its header (admission).
//! - [`exif`]: orientation, camera facts and GPS.
//! - [`plan`]: output geometry, JPEG shrink-on-load factor, cascade order; [`focus`]: faces, the
//!   attention point and the app's focal point, found once per image, and where cover crops sit.
//! - [`decode`] (one file per format), [`colour`] (ICC) and [`cicp`] (code points, HDR tone-map),
//!   [`orient`], [`resize`] (CPU resampling), [`blur`], [`encode`]: the pixel steps;
//! - [`engine`]: per-thread work state, offering steps to an [`accelerator`] (the GPU worker's device);
//!   [`animation`] for presets that keep an animation; [`placeholder`] for ThumbHash and colours.
//! - [`preset`]: preset files, validation and the preset-set hash; [`quality_search`]: the
//!   per-image quality for a perceptual target, in a bounded number of trial encodes;
//!   [`perceptual`]: the SSIMULACRA2 score it aims at; [`quality`]: a preset's fixed quality or
//!   perceptual target; [`auto_quality`]: encoding to that target.
//! - [`metadata`] and [`layout`]: the metadata document and the output key layout.
//! - [`events`]: the `imgpipe.image.*` / `imgpipe.batch.done` events built from what was written.
//! - [`error`]: error kinds; every core error is permanent (bad input or config).
//! - [`route`]: CPU or GPU queue for a job, from key, size and a ranged read of the header.
//! - [`variant`]: what a request may ask for beyond the eager outputs (ladder rungs, signed
//!   parametric variants), spelled one way and signed; [`render`]: one such variant, made by the
//!   same pipeline.
//! - [`kernel`]: the GPU backend's resize math on the CPU (its reference in tests).
#![warn(missing_docs)]

pub mod accelerator;
pub mod animation;
pub mod auto_quality;
pub mod blur;
pub mod cicp;
pub mod colour;
pub mod decode;
pub mod encode;
pub mod engine;
pub mod error;
pub mod events;
pub mod exif;
pub mod focus;
pub mod format;
pub mod gain_map;
pub mod groups;
pub mod heif;
pub mod jpegli;
pub mod kernel;
pub mod layout;
pub mod limits;
pub mod memory;
pub mod metadata;
pub mod negotiate;
pub mod orient;
pub mod perceptual;
pub mod pipeline;
pub mod pixels;
pub mod placeholder;
pub mod plan;
pub mod preset;
pub mod probe;
pub mod quality;
pub mod quality_search;
pub mod render;
pub mod resize;
pub mod route;
#[cfg(test)]
mod testing;
pub mod variant;

pub use accelerator::Accelerator;
pub use engine::Engine;
pub use error::{ErrorKind, PipelineError};
pub use layout::OutputLayout;
pub use limits::Limits;
pub use metadata::Metadata;
pub use pipeline::{Derivative, Failed, GpsPolicy, Options, Processed, SourceRef, process};
pub use preset::{OutputFormat, Preset, PresetSet};

/// Version of the pipeline, part of every metadata document and of the preset-set hash.
pub const PIPELINE_VERSION: &str = env!("CARGO_PKG_VERSION");
