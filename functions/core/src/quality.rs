//! A preset's `quality`: a fixed encoder setting, or a perceptual target that the encoder reaches per
//! image ([`crate::auto_quality`]).
//!
//! ```toml
//! quality = 80              # encoder quality 1–100, the same for every image (the default, 80)
//! quality = "auto"          # = "good"
//! quality = "high"          # named levels: high (SSIMULACRA2 80), good (70), eco (60)
//! quality = { target = 75 } # an SSIMULACRA2 score, 30–95
//! ```
//!
//! SSIMULACRA2 reads roughly: 90 visually lossless at 1:1, 80 very high (differences only on close
//! inspection), 70 high (a typical web photo), 50 medium (artefacts visible). Targets suit JPEG
//! and WebP; AVIF (one AV1 encode per trial costs too much for now), PNG (lossless) and animated
//! presets take a fixed quality.

use serde::de::{self, MapAccess, Visitor};

/// A preset's quality.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Quality {
    /// Encoder quality 1–100.
    Fixed(u8),
    /// A named perceptual level.
    Level(Level),
    /// An SSIMULACRA2 score to reach.
    Target(f64),
}

/// Named perceptual levels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// The default level: [`Level::Good`].
    Auto,
    /// SSIMULACRA2 80.
    High,
    /// SSIMULACRA2 70.
    Good,
    /// SSIMULACRA2 60.
    Eco,
}

/// Lowest and highest target score a preset may ask for.
pub const TARGET_RANGE: std::ops::RangeInclusive<f64> = 30.0..=95.0;

impl Level {
    const ALL: [(Level, &'static str); 4] = [
        (Level::Auto, "auto"),
        (Level::High, "high"),
        (Level::Good, "good"),
        (Level::Eco, "eco"),
    ];

    /// The SSIMULACRA2 score this level aims at.
    pub fn score(self) -> f64 {
        match self {
            Level::High => 80.0,
            Level::Auto | Level::Good => 70.0,
            Level::Eco => 60.0,
        }
    }

    /// The name as written in presets.
    pub fn as_str(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(level, _)| *level == self)
            .map(|(_, name)| *name)
            .expect("every level has a name")
    }
}

impl Default for Quality {
    fn default() -> Self {
        Quality::Fixed(80)
    }
}

impl Quality {
    /// The score to reach, for a perceptual quality; `None` for a fixed one.
    pub fn target(self) -> Option<f64> {
        match self {
            Quality::Fixed(_) => None,
            Quality::Level(level) => Some(level.score()),
            Quality::Target(score) => Some(score),
        }
    }

    /// The fixed encoder quality; `None` for a perceptual target.
    pub fn fixed(self) -> Option<u8> {
        match self {
            Quality::Fixed(q) => Some(q),
            _ => None,
        }
    }
}

impl serde::Serialize for Quality {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        match *self {
            // A plain number, as before targets existed: the preset-set hash of existing presets
            // stays the same.
            Quality::Fixed(q) => s.serialize_u8(q),
            Quality::Level(level) => s.serialize_str(level.as_str()),
            Quality::Target(score) => {
                let mut map = s.serialize_map(Some(1))?;
                map.serialize_entry("target", &score)?;
                map.end()
            }
        }
    }
}

impl<'de> serde::Deserialize<'de> for Quality {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(QualityVisitor)
    }
}

struct QualityVisitor;

const EXPECTED: &str = "a quality 1-100, \"auto\", \"high\", \"good\", \"eco\" or { target = <SSIMULACRA2 score 30-95> }";

impl<'de> Visitor<'de> for QualityVisitor {
    type Value = Quality;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str(EXPECTED)
    }

    // Ranges (1–100, 30–95) are checked by preset validation, whose message names the preset.
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Quality, E> {
        u8::try_from(v)
            .map(Quality::Fixed)
            .map_err(|_| E::custom(format!("{v} is outside 1..=100")))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Quality, E> {
        match u64::try_from(v) {
            Ok(v) => self.visit_u64(v),
            Err(_) => Err(E::custom(format!("{v} is outside 1..=100"))),
        }
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Quality, E> {
        if v.fract() == 0.0 && (0.0..=255.0).contains(&v) {
            return self.visit_u64(v as u64);
        }
        Err(E::custom(format!(
            "{v} is not a whole number; for a perceptual score write {{ target = {v} }}"
        )))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Quality, E> {
        Level::ALL
            .iter()
            .find(|(_, name)| *name == v)
            .map(|(level, _)| Quality::Level(*level))
            .ok_or_else(|| E::custom(format!("unknown level {v:?}; expected {EXPECTED}")))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Quality, A::Error> {
        let mut target = None;
        while let Some(key) = map.next_key::<String>()? {
            if key != "target" || target.is_some() {
                return Err(de::Error::custom(format!(
                    "unexpected key {key:?}; expected {{ target = <score> }}"
                )));
            }
            target = Some(map.next_value::<f64>()?);
        }
        let score = target.ok_or_else(|| de::Error::custom("expected { target = <score> }"))?;
        Ok(Quality::Target(score))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, serde::Serialize, Debug)]
    struct Doc {
        quality: Quality,
    }

    fn parse(toml_value: &str) -> Result<Quality, String> {
        toml::from_str::<Doc>(&format!("quality = {toml_value}"))
            .map(|d| d.quality)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn every_form_parses_from_toml_and_json() {
        assert_eq!(parse("85"), Ok(Quality::Fixed(85)));
        assert_eq!(parse("\"auto\""), Ok(Quality::Level(Level::Auto)));
        assert_eq!(parse("\"eco\""), Ok(Quality::Level(Level::Eco)));
        assert_eq!(parse("{ target = 77.5 }"), Ok(Quality::Target(77.5)));
        assert_eq!(parse("{ target = 80 }"), Ok(Quality::Target(80.0)));
        let json: Doc = serde_json::from_str(r#"{"quality": {"target": 72}}"#).unwrap();
        assert_eq!(json.quality, Quality::Target(72.0));
        let json: Doc = serde_json::from_str(r#"{"quality": 40}"#).unwrap();
        assert_eq!(json.quality, Quality::Fixed(40));
    }

    #[test]
    fn levels_and_targets_give_scores_fixed_gives_none() {
        assert_eq!(Quality::Level(Level::Auto).target(), Some(70.0));
        assert_eq!(Quality::Level(Level::High).target(), Some(80.0));
        assert_eq!(Quality::Target(66.0).target(), Some(66.0));
        assert_eq!(Quality::Fixed(80).target(), None);
        assert_eq!(Quality::Fixed(80).fixed(), Some(80));
    }

    #[test]
    fn bad_values_say_what_is_expected() {
        for (value, says) in [
            ("256", "outside 1..=100"),
            ("-3", "outside 1..=100"),
            ("80.5", "target = 80.5"),
            ("\"best\"", "unknown level \"best\""),
            ("{ score = 80 }", "unexpected key \"score\""),
            ("{}", "expected { target"),
            ("true", "\"auto\""),
        ] {
            let err = parse(value).unwrap_err();
            assert!(err.contains(says), "{value}: {err}");
        }
    }

    #[test]
    fn serialises_as_written_so_fixed_qualities_keep_their_hash() {
        for (quality, json) in [
            (Quality::Fixed(85), "85"),
            (Quality::Level(Level::High), "\"high\""),
            (Quality::Target(75.0), "{\"target\":75.0}"),
        ] {
            assert_eq!(serde_json::to_string(&quality).unwrap(), json);
            let back: Quality = serde_json::from_str(json).unwrap();
            assert_eq!(back, quality);
        }
    }
}
