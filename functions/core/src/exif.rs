//! EXIF reading (kamadak-exif): orientation for the pixels, camera facts and GPS for the metadata.
//!
//! Malformed EXIF never fails an image: a source whose EXIF cannot be parsed is processed as if it had
//! none (orientation 1, no camera facts). Derivatives never carry EXIF, so nothing here leaks.
//!
//! WebP `EXIF` and PNG `eXIf` chunks are found here rather than by kamadak-exif, so that a payload
//! starting with JPEG APP1's `Exif\0\0` header is read too: both specifications say raw TIFF, but
//! several writers copy the APP1 payload whole, and kamadak-exif then reads nothing (the photo came
//! out sideways, without GPS or camera).

use std::io::Cursor;

use exif::{In, Tag, Value};

/// Camera facts from EXIF, for the metadata document. Every field is optional.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct CameraInfo {
    /// Camera maker (`Make`).
    pub make: Option<String>,
    /// Camera model (`Model`).
    pub model: Option<String>,
    /// Lens model (`LensModel`, else `LensSpecification` as `18-200mm f/3.5-5.6`, else `LensMake`).
    pub lens: Option<String>,
    /// ISO sensitivity (`PhotographicSensitivity`).
    pub iso: Option<u32>,
    /// Exposure time as written by cameras, e.g. `1/250`.
    pub exposure_time: Option<String>,
    /// Exposure time in seconds.
    pub exposure_seconds: Option<f64>,
    /// Aperture f-number, e.g. 2.8.
    pub f_number: Option<f64>,
    /// Focal length in millimetres.
    pub focal_length_mm: Option<f64>,
    /// `DateTimeOriginal` as ISO 8601 (`2008-10-22T16:28:39`), with the offset when `OffsetTimeOriginal` is present.
    pub date_taken: Option<String>,
    /// Software that wrote the file (`Software`).
    pub software: Option<String>,
    /// Copyright notice (`Copyright`).
    pub copyright: Option<String>,
}

impl CameraInfo {
    /// True when no field is set.
    pub fn is_empty(&self) -> bool {
        *self == CameraInfo::default()
    }
}

/// GPS position in decimal degrees (south and west negative) and metres above sea level.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct GpsPosition {
    /// Latitude, −90…90.
    pub latitude: f64,
    /// Longitude, −180…180.
    pub longitude: f64,
    /// Altitude in metres (negative below sea level), when recorded.
    pub altitude_m: Option<f64>,
}

/// Everything imgpipe reads from EXIF.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ExifData {
    /// Raw orientation tag 1–8 (1 when absent or invalid).
    pub orientation: u8,
    /// Camera facts.
    pub camera: CameraInfo,
    /// GPS position, when a usable latitude and longitude are present.
    pub gps: Option<GpsPosition>,
}

/// Reads EXIF from JPEG, TIFF, PNG (`eXIf`) and WebP (`EXIF`), with or without an `Exif\0\0` header
/// before the TIFF data. Never fails.
pub fn read(bytes: &[u8]) -> ExifData {
    let mut reader = exif::Reader::new();
    reader.continue_on_error(true);
    let result = match chunk_payload(bytes)
        .map(<[u8]>::to_vec)
        .or_else(|| box_payload(bytes))
    {
        Some(payload) => {
            let tiff = payload.strip_prefix(APP1_HEADER).unwrap_or(&payload);
            reader.read_raw(tiff.to_vec())
        }
        None => reader.read_from_container(&mut Cursor::new(bytes)),
    };
    let parsed = match result {
        Ok(exif) => exif,
        Err(exif::Error::PartialResult(partial)) => partial.into_inner().0,
        Err(_) => {
            return ExifData {
                orientation: 1,
                ..Default::default()
            };
        }
    };
    let field = |tag: Tag| parsed.get_field(tag, In::PRIMARY).map(|f| &f.value);
    let text = |tag: Tag| field(tag).and_then(ascii);
    let rational = |tag: Tag| field(tag).and_then(first_rational);

    let orientation = field(Tag::Orientation)
        .and_then(|v| v.get_uint(0))
        .filter(|o| (1..=8).contains(o))
        .unwrap_or(1);
    let date_taken = text(Tag::DateTimeOriginal)
        .or_else(|| text(Tag::DateTime))
        .and_then(|d| exif_date_to_iso(&d))
        .map(|d| match text(Tag::OffsetTimeOriginal) {
            Some(offset) if offset.len() == 6 => format!("{d}{offset}"),
            _ => d,
        });
    let exposure_seconds = rational(Tag::ExposureTime);
    let exposure_time = match field(Tag::ExposureTime) {
        Some(Value::Rational(r)) if !r.is_empty() && r[0].denom != 0 => {
            Some(format_exposure(r[0].num, r[0].denom))
        }
        _ => None,
    };
    let camera = CameraInfo {
        make: text(Tag::Make),
        model: text(Tag::Model),
        lens: text(Tag::LensModel)
            .or_else(|| field(Tag::LensSpecification).and_then(lens_specification))
            .or_else(|| text(Tag::LensMake)),
        iso: field(Tag::PhotographicSensitivity).and_then(|v| v.get_uint(0)),
        exposure_time,
        exposure_seconds,
        f_number: rational(Tag::FNumber),
        focal_length_mm: rational(Tag::FocalLength),
        date_taken,
        software: text(Tag::Software),
        copyright: text(Tag::Copyright),
    };
    let gps = read_gps(&parsed);
    ExifData {
        orientation: orientation as u8,
        camera,
        gps,
    }
}

/// What JPEG's APP1 segment puts before the TIFF data.
const APP1_HEADER: &[u8] = b"Exif\0\0";

/// The payload of a WebP file's `EXIF` chunk or a PNG file's `eXIf` chunk; `None` for other formats
/// and files without one. Reads only chunk headers; stops at anything out of bounds.
fn chunk_payload(bytes: &[u8]) -> Option<&[u8]> {
    let read_u32 = |at: usize, little: bool| -> Option<usize> {
        let b: [u8; 4] = bytes.get(at..at.checked_add(4)?)?.try_into().ok()?;
        Some(if little {
            u32::from_le_bytes(b)
        } else {
            u32::from_be_bytes(b)
        } as usize)
    };
    if bytes.starts_with(b"RIFF") && bytes.get(8..12) == Some(b"WEBP") {
        // RIFF chunks: fourcc, little-endian size, data padded to an even length.
        let mut at = 12;
        while let Some(size) = read_u32(at + 4, true) {
            let data = at + 8;
            let end = data.checked_add(size)?;
            if &bytes[at..at + 4] == b"EXIF" {
                return bytes.get(data..end);
            }
            at = end.checked_add(size % 2)?;
        }
        return None;
    }
    if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        // PNG chunks: big-endian length, type, data, CRC; eXIf may come before or after IDAT.
        let mut at = 8;
        while let Some(size) = read_u32(at, false) {
            let kind = bytes.get(at + 4..at + 8)?;
            let data = at + 8;
            let end = data.checked_add(size)?;
            match kind {
                b"eXIf" => return bytes.get(data..end),
                b"IEND" => return None,
                _ => at = end.checked_add(4)?,
            }
        }
    }
    None
}

/// The EXIF of an ISO-BMFF file, from the TIFF header on: a HEIC/AVIF `Exif` item (found through
/// the HEIF boxes) or a JPEG XL container's `Exif` box; both start with a 4-byte offset to the TIFF
/// header, which is honoured.
fn box_payload(bytes: &[u8]) -> Option<Vec<u8>> {
    if bytes.get(4..8) != Some(b"ftyp") && !bytes.starts_with(b"\0\0\0\x0cJXL ") {
        return None;
    }
    if bytes.get(4..8) == Some(b"ftyp") {
        return crate::heif::parse(bytes).ok()?.exif();
    }
    let body = crate::heif::top_level_box(bytes, b"Exif")?;
    let offset = u32::from_be_bytes(body.get(0..4)?.try_into().ok()?) as usize;
    body.get(4usize.checked_add(offset)?..).map(<[u8]>::to_vec)
}

fn read_gps(parsed: &exif::Exif) -> Option<GpsPosition> {
    let field = |tag: Tag| parsed.get_field(tag, In::PRIMARY).map(|f| &f.value);
    // Degrees, minutes, seconds. The standard says RATIONAL; some phones (Nokia/HMD) write SRATIONAL.
    let degrees = |tag: Tag| {
        let dms: Vec<f64> = match field(tag)? {
            Value::Rational(r) if r.iter().all(|x| x.denom != 0) => {
                r.iter().map(|x| x.to_f64()).collect()
            }
            Value::SRational(r) if r.iter().all(|x| x.denom != 0) => {
                r.iter().map(|x| x.to_f64().abs()).collect()
            }
            _ => return None,
        };
        (dms.len() == 3).then(|| dms[0] + dms[1] / 60.0 + dms[2] / 3600.0)
    };
    let reference = |tag: Tag| field(tag).and_then(ascii).unwrap_or_default();
    let mut latitude = degrees(Tag::GPSLatitude)?;
    let mut longitude = degrees(Tag::GPSLongitude)?;
    if reference(Tag::GPSLatitudeRef).eq_ignore_ascii_case("S") {
        latitude = -latitude;
    }
    if reference(Tag::GPSLongitudeRef).eq_ignore_ascii_case("W") {
        longitude = -longitude;
    }
    if !(-90.0..=90.0).contains(&latitude) || !(-180.0..=180.0).contains(&longitude) {
        return None;
    }
    let altitude_m = field(Tag::GPSAltitude).and_then(first_rational).map(|alt| {
        let below =
            matches!(field(Tag::GPSAltitudeRef), Some(Value::Byte(b)) if b.first() == Some(&1));
        if below { -alt } else { alt }
    });
    Some(GpsPosition {
        latitude: round6(latitude),
        longitude: round6(longitude),
        altitude_m: altitude_m.map(round1),
    })
}

fn round6(v: f64) -> f64 {
    (v * 1e6).round() / 1e6
}
fn round1(v: f64) -> f64 {
    (v * 10.0).round() / 10.0
}

fn ascii(value: &Value) -> Option<String> {
    match value {
        Value::Ascii(parts) => {
            let joined = parts
                .iter()
                .map(|p| String::from_utf8_lossy(p).trim().to_string())
                .collect::<Vec<_>>()
                .join(" ");
            let cleaned = joined.trim_matches(char::from(0)).trim().to_string();
            (!cleaned.is_empty()).then_some(cleaned)
        }
        _ => None,
    }
}

/// `LensSpecification` (min/max focal length, min f-number at each) as `18-200mm f/3.5-5.6`.
fn lens_specification(value: &Value) -> Option<String> {
    let Value::Rational(r) = value else {
        return None;
    };
    if r.len() != 4 || r[..2].iter().any(|x| x.denom == 0 || x.num == 0) {
        return None;
    }
    let number = |v: f64| {
        let text = format!("{v:.1}");
        text.strip_suffix(".0").map(str::to_string).unwrap_or(text)
    };
    let (short, long) = (r[0].to_f64(), r[1].to_f64());
    let focal = if short == long {
        format!("{}mm", number(short))
    } else {
        format!("{}-{}mm", number(short), number(long))
    };
    let apertures: Vec<f64> = r[2..]
        .iter()
        .filter(|x| x.denom != 0 && x.num != 0)
        .map(|x| x.to_f64())
        .collect();
    Some(match apertures[..] {
        [a, b] if a != b => format!("{focal} f/{}-{}", number(a), number(b)),
        [a, ..] => format!("{focal} f/{}", number(a)),
        [] => focal,
    })
}

fn first_rational(value: &Value) -> Option<f64> {
    match value {
        Value::Rational(r) => r.first().filter(|x| x.denom != 0).map(|x| x.to_f64()),
        Value::SRational(r) => r.first().filter(|x| x.denom != 0).map(|x| x.to_f64()),
        _ => None,
    }
}

fn format_exposure(num: u32, denom: u32) -> String {
    if num == 0 {
        return "0".into();
    }
    if num >= denom {
        let seconds = f64::from(num) / f64::from(denom);
        return if seconds.fract() == 0.0 {
            format!("{seconds}")
        } else {
            format!("{seconds:.1}")
        };
    }
    format!("1/{}", (f64::from(denom) / f64::from(num)).round())
}

/// `2008:10:22 16:28:39` → `2008-10-22T16:28:39`; None when it is not a date.
fn exif_date_to_iso(raw: &str) -> Option<String> {
    let b = raw.as_bytes();
    if b.len() < 19 || b[4] != b':' || b[7] != b':' || b[13] != b':' || b[16] != b':' {
        return None;
    }
    let digits = [0..4, 5..7, 8..10, 11..13, 14..16, 17..19];
    if !digits
        .iter()
        .all(|r| b[r.clone()].iter().all(u8::is_ascii_digit))
        || &raw[0..4] == "0000"
    {
        return None;
    }
    Some(format!(
        "{}-{}-{}T{}:{}:{}",
        &raw[0..4],
        &raw[5..7],
        &raw[8..10],
        &raw[11..13],
        &raw[14..16],
        &raw[17..19]
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::fixture;

    #[test]
    fn webp_and_png_exif_is_read_with_or_without_the_app1_header() {
        for file in [
            "crafted_webp_exif-prefixed_orient6_gps.webp",
            "crafted_webp_exif-raw_orient6_gps.webp",
            "crafted_png_exif_orient6_gps.png",
        ] {
            let exif = read(&fixture(file));
            assert_eq!(exif.orientation, 6, "{file}");
            assert_eq!(exif.camera.make.as_deref(), Some("imgpipe craft"), "{file}");
            let gps = exif.gps.unwrap_or_else(|| panic!("{file}: no GPS"));
            assert!((gps.latitude - 48.8583).abs() < 1e-3, "{file}: {gps:?}");
            assert!((gps.longitude - 2.2945).abs() < 1e-3, "{file}: {gps:?}");
            assert_eq!(gps.altitude_m, Some(35.0), "{file}");
        }
    }

    #[test]
    fn damaged_chunk_tables_never_panic_and_read_as_no_exif() {
        let whole = fixture("crafted_webp_exif-prefixed_orient6_gps.webp");
        for cut in [5, 12, 16, 20, 40, whole.len() - 3] {
            let exif = read(&whole[..cut]);
            assert!(exif.orientation <= 8);
        }
        // A chunk size pointing past the end, and one near usize::MAX.
        let mut huge = whole.clone();
        huge[16..20].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(read(&huge).orientation, 1);
        let png = fixture("crafted_png_exif_orient6_gps.png");
        let mut bad = png.clone();
        bad[8..12].copy_from_slice(&u32::MAX.to_be_bytes());
        assert_eq!(read(&bad).orientation, 1);
        assert_eq!(chunk_payload(b"RIFF\0\0\0\0WEBP"), None);
        assert_eq!(chunk_payload(b"\x89PNG\r\n\x1a\n"), None);
    }

    #[test]
    fn formats_lens_specification() {
        use exif::Rational;
        let spec = |v: [(u32, u32); 4]| {
            lens_specification(&Value::Rational(
                v.iter()
                    .map(|&(num, denom)| Rational { num, denom })
                    .collect(),
            ))
        };
        assert_eq!(
            spec([(18, 1), (200, 1), (35, 10), (56, 10)]).as_deref(),
            Some("18-200mm f/3.5-5.6")
        );
        assert_eq!(
            spec([(50, 1), (50, 1), (18, 10), (18, 10)]).as_deref(),
            Some("50mm f/1.8")
        );
        assert_eq!(spec([(0, 1), (50, 1), (18, 10), (18, 10)]), None);
    }

    #[test]
    fn formats_exposure_like_cameras() {
        assert_eq!(format_exposure(1, 250), "1/250");
        assert_eq!(format_exposure(10, 2500), "1/250");
        assert_eq!(format_exposure(2, 1), "2");
        assert_eq!(format_exposure(5, 2), "2.5");
    }

    #[test]
    fn converts_exif_dates() {
        assert_eq!(
            exif_date_to_iso("2008:10:22 16:28:39").as_deref(),
            Some("2008-10-22T16:28:39")
        );
        assert_eq!(exif_date_to_iso("0000:00:00 00:00:00"), None);
        assert_eq!(exif_date_to_iso("garbage"), None);
    }

    #[test]
    fn no_exif_means_upright_and_empty() {
        let data = read(b"not an image at all");
        assert_eq!(data.orientation, 1);
        assert!(data.camera.is_empty());
        assert!(data.gps.is_none());
    }
}
