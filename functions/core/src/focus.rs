//! Where a cover crop looks. Once per image, at upload, on a small upright sRGB copy: the faces
//! ([`faces`]) and, when there are none, the most salient point ([`attention`]); an app may also set
//! a focal point by hand ([`FocalPoint`], from the upload's `focus` or `PUT /v1/images/{id}/focus`).
//! A preset's [`Gravity`] picks among them ([`Analysis::subject`]) and [`window`] places the crop so
//! the subject stays inside. Everything is in normalised upright coordinates (0–1, after EXIF
//! orientation), so it applies at any decode scale and is what metadata records.
//!
//! `upright pixels ⇒ ≤ 512 px copy ⇒ faces (+ attention when none) ⇒ Analysis ⇒ per cover preset: subject ⇒ window`

pub mod attention;
pub mod faces;
pub mod refocus;
pub mod window;

use crate::engine::Engine;
use crate::error::Result;
use crate::pixels::Pixels;

/// Where a `fit = "cover"` crop is placed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Gravity {
    /// The centre (default; what every cover crop did before gravity existed).
    #[default]
    #[serde(alias = "center")]
    Centre,
    /// The manual focal point if the image has one, else the faces, else the attention point, else
    /// the centre.
    Auto,
    /// The faces (all confident ones if they fit, else the largest), else the centre.
    Faces,
    /// The attention point (edges, skin tones and saturated colour), else the centre.
    Attention,
    /// The manual focal point, else the centre.
    Focal,
}

impl Gravity {
    /// True for the default, which needs no analysis.
    pub fn is_centre(&self) -> bool {
        *self == Gravity::Centre
    }
}

/// A point in normalised upright coordinates: `x` from the left edge, `y` from the top, both 0–1.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct FocalPoint {
    /// 0 (left edge) – 1 (right edge).
    pub x: f64,
    /// 0 (top edge) – 1 (bottom edge).
    pub y: f64,
}

impl FocalPoint {
    /// The centre of the picture.
    pub const CENTRE: FocalPoint = FocalPoint { x: 0.5, y: 0.5 };

    /// A checked point: both coordinates finite and within 0–1. The error says what is wrong.
    pub fn new(x: f64, y: f64) -> std::result::Result<Self, String> {
        for (name, v) in [("x", x), ("y", y)] {
            if !(v.is_finite() && (0.0..=1.0).contains(&v)) {
                return Err(format!(
                    "focus {name} = {v} is outside 0..1 (fractions of the upright width and height)"
                ));
            }
        }
        Ok(Self { x, y })
    }

    /// Parses the S3 user-metadata form `"<x>,<y>"` (for example `"0.25,0.4"`).
    pub fn parse(text: &str) -> std::result::Result<Self, String> {
        let bad = || {
            format!("focus '{text}' is not '<x>,<y>' with fractions 0..1 (for example '0.25,0.4')")
        };
        let (x, y) = text.trim().split_once(',').ok_or_else(bad)?;
        let x: f64 = x.trim().parse().map_err(|_| bad())?;
        let y: f64 = y.trim().parse().map_err(|_| bad())?;
        Self::new(x, y)
    }

    /// The S3 user-metadata form, at most 4 decimals: `"0.25,0.4"`.
    pub fn to_header(&self) -> String {
        format!("{},{}", round4(self.x), round4(self.y))
    }
}

/// A rectangle in normalised upright coordinates.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rect {
    /// Left edge, 0–1.
    pub x: f64,
    /// Top edge, 0–1.
    pub y: f64,
    /// Width, 0–1.
    pub w: f64,
    /// Height, 0–1.
    pub h: f64,
}

impl Rect {
    /// The smallest rectangle holding both.
    pub fn union(&self, other: &Rect) -> Rect {
        let (x, y) = (self.x.min(other.x), self.y.min(other.y));
        let right = (self.x + self.w).max(other.x + other.w);
        let bottom = (self.y + self.h).max(other.y + other.h);
        Rect {
            x,
            y,
            w: right - x,
            h: bottom - y,
        }
    }

    /// Its centre.
    pub fn centre(&self) -> FocalPoint {
        FocalPoint {
            x: self.x + self.w / 2.0,
            y: self.y + self.h / 2.0,
        }
    }

    /// Clipped to the picture (0–1 on both axes).
    pub fn clamped(&self) -> Rect {
        let x = self.x.clamp(0.0, 1.0);
        let y = self.y.clamp(0.0, 1.0);
        Rect {
            x,
            y,
            w: (self.x + self.w).clamp(0.0, 1.0) - x,
            h: (self.y + self.h).clamp(0.0, 1.0) - y,
        }
    }
}

/// One detected face: its box in normalised upright coordinates and the detector's score.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Face {
    /// Left edge, 0–1.
    pub x: f64,
    /// Top edge, 0–1.
    pub y: f64,
    /// Width, 0–1 of the upright width.
    pub w: f64,
    /// Height, 0–1 of the upright height.
    pub h: f64,
    /// The detector's confidence (SeetaFace's cascade score; higher is surer, at least
    /// [`faces::MIN_SCORE`]).
    pub score: f64,
}

impl Face {
    /// The box as a [`Rect`].
    pub fn rect(&self) -> Rect {
        Rect {
            x: self.x,
            y: self.y,
            w: self.w,
            h: self.h,
        }
    }
}

/// Where the focus came from, as metadata records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FocusSource {
    /// Set by the app (upload form or `PUT /v1/images/{id}/focus`).
    Manual,
    /// The faces the detector found.
    Faces,
    /// The attention point (no face found).
    Attention,
    /// Nothing better: the centre.
    Centre,
}

/// What a cover crop keeps in view.
#[derive(Debug, Clone, PartialEq)]
pub enum Subject {
    /// Keep these face boxes inside (all if they fit, else the largest; see [`window`]).
    Faces(Vec<Rect>),
    /// Centre on this point, as far as the edges allow.
    Point(FocalPoint, FocusSource),
}

/// What was learnt about one image: found once, applied to every cover crop.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Analysis {
    /// Confident faces, largest first.
    pub faces: Vec<Face>,
    /// The attention point (computed when no face was found).
    pub attention: Option<FocalPoint>,
    /// The app's focal point.
    pub manual: Option<FocalPoint>,
}

impl Analysis {
    /// What a preset with `gravity` keeps in view.
    pub fn subject(&self, gravity: Gravity) -> Subject {
        let centre = Subject::Point(FocalPoint::CENTRE, FocusSource::Centre);
        let manual = self.manual.map(|p| Subject::Point(p, FocusSource::Manual));
        let faces = (!self.faces.is_empty())
            .then(|| Subject::Faces(self.faces.iter().map(Face::rect).collect()));
        let attention = self
            .attention
            .map(|p| Subject::Point(p, FocusSource::Attention));
        match gravity {
            Gravity::Centre => centre,
            Gravity::Focal => manual.unwrap_or(centre),
            Gravity::Faces => faces.unwrap_or(centre),
            Gravity::Attention => attention.unwrap_or(centre),
            Gravity::Auto => manual.or(faces).or(attention).unwrap_or(centre),
        }
    }

    /// [`Analysis::focus`] as metadata records it, rounded ([`round4`]).
    pub fn focus_info(&self) -> crate::metadata::FocusInfo {
        let (point, source) = self.focus();
        crate::metadata::FocusInfo {
            x: round4(point.x),
            y: round4(point.y),
            source,
        }
    }

    /// The image's focus as metadata records it: what `auto` would use, as one point.
    pub fn focus(&self) -> (FocalPoint, FocusSource) {
        match self.subject(Gravity::Auto) {
            Subject::Point(point, source) => (point, source),
            Subject::Faces(boxes) => {
                let all = boxes.iter().skip(1).fold(boxes[0], |acc, b| acc.union(b));
                (all.centre(), FocusSource::Faces)
            }
        }
    }
}

/// Longer side of the copy faces and attention are found on. SeetaFace's window is 40 px and its
/// pyramid never enlarges, so faces at least 8 % of the longer side are found. Chosen on the labelled
/// set (docs/benchmarks.md, "Faces and focus"), as the cheapest side at which `auto` keeps the
/// primary face in 90 % of thumbnails: at 320 px the detector found a third of the faces and `auto`
/// kept 65 %; at 448 px, 85 %; at 512 px, 90 % (12.6 ms a photo); at 576 px, 94 % (15.1 ms).
pub const ANALYSIS_SIDE: u32 = 512;

/// Analyses `upright` (the decoded, oriented sRGB image) on a copy whose longer side is at most
/// `side`: faces, and the attention point when no face is found. `manual` is the app's focal point,
/// kept as given.
pub fn analyse(
    upright: &Pixels,
    manual: Option<FocalPoint>,
    side: u32,
    engine: &mut Engine,
) -> Result<Analysis> {
    let (width, height) = analysis_size(upright.width, upright.height, side);
    let small = engine.resize_box(upright, width, height)?;
    let faces = faces::detect(&small);
    let attention = faces.is_empty().then(|| attention::point(&small));
    Ok(Analysis {
        faces,
        attention,
        manual,
    })
}

/// The analysis copy's size: the longer side at most `side` (never upscaled), aspect kept.
pub fn analysis_size(width: u32, height: u32, side: u32) -> (u32, u32) {
    crate::plan::within(width, height, side)
}

/// Rounds to 4 decimals (a tenth of a pixel on a 1000 px picture): what metadata keeps.
pub fn round4(v: f64) -> f64 {
    (v * 10_000.0).round() / 10_000.0
}

#[cfg(test)]
mod tests;
