//! Format sniffing from magic bytes. The object key and the Content-Type are never trusted.

use crate::error::{PipelineError, Result};

/// An input format imgpipe can decode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SourceFormat {
    /// JPEG (baseline or progressive; MPO reads as its first view).
    Jpeg,
    /// PNG (8/16-bit, palette, alpha).
    Png,
    /// WebP (lossy, lossless; first frame of an animation).
    Webp,
    /// GIF (first frame).
    Gif,
    /// TIFF (little- or big-endian).
    Tiff,
    /// Windows bitmap.
    Bmp,
    /// HEIC/HEIF (HEVC stills; grids, 10-bit, alpha).
    Heic,
    /// AVIF (AV1 stills; 8/10/12-bit, alpha, HDR).
    Avif,
    /// JPEG XL (codestream or container).
    Jxl,
}

impl SourceFormat {
    /// Lower-case name as written in metadata.
    pub fn as_str(self) -> &'static str {
        match self {
            SourceFormat::Jpeg => "jpeg",
            SourceFormat::Png => "png",
            SourceFormat::Webp => "webp",
            SourceFormat::Gif => "gif",
            SourceFormat::Tiff => "tiff",
            SourceFormat::Bmp => "bmp",
            SourceFormat::Heic => "heic",
            SourceFormat::Avif => "avif",
            SourceFormat::Jxl => "jxl",
        }
    }
}

/// Identifies the format of `bytes` from their first bytes.
///
/// Unknown content is a permanent [`ErrorKind::Unsupported`](crate::ErrorKind::Unsupported) error
/// naming what was found (e.g. "HTML document", "HEIC image"), so a user knows what they uploaded.
pub fn sniff(bytes: &[u8]) -> Result<SourceFormat> {
    if bytes.is_empty() {
        return Err(PipelineError::new(
            crate::ErrorKind::Empty,
            "the source object is empty (0 bytes); upload the image again",
        ));
    }
    let starts = |magic: &[u8]| bytes.starts_with(magic);
    if starts(&[0xFF, 0xD8, 0xFF]) {
        return Ok(SourceFormat::Jpeg);
    }
    if starts(b"\x89PNG\r\n\x1a\n") {
        return Ok(SourceFormat::Png);
    }
    if bytes.len() >= 12 && &bytes[0..4] == b"RIFF" && &bytes[8..12] == b"WEBP" {
        return Ok(SourceFormat::Webp);
    }
    if starts(b"GIF87a") || starts(b"GIF89a") {
        return Ok(SourceFormat::Gif);
    }
    if starts(b"II*\0") || starts(b"MM\0*") {
        return Ok(SourceFormat::Tiff);
    }
    if starts(b"BM") && bytes.len() >= 26 {
        return Ok(SourceFormat::Bmp);
    }
    if starts(&[0xFF, 0x0A]) || starts(b"\0\0\0\x0cJXL \r\n\x87\n") {
        return Ok(SourceFormat::Jxl);
    }
    if let Some(format) = heif_format(bytes) {
        return Ok(format);
    }
    Err(PipelineError::unsupported(format!(
        "{} is not a supported image format; supported inputs are JPEG, PNG, WebP, GIF, TIFF, BMP, \
         HEIC, AVIF and JPEG XL",
        describe_unknown(bytes)
    )))
}

/// AVIF or HEIC from the `ftyp` brands (major or compatible): an AVIF brand wins, since AVIF files
/// also list `mif1`; a HEIF file whose item turns out to be AV1 is still decoded as AVIF.
fn heif_format(bytes: &[u8]) -> Option<SourceFormat> {
    if bytes.get(4..8) != Some(b"ftyp") {
        return None;
    }
    let brands = crate::heif::brands(bytes);
    let has = |names: &[&[u8; 4]]| brands.iter().any(|b| names.contains(&b));
    if has(&[b"avif", b"avis"]) {
        Some(SourceFormat::Avif)
    } else if has(&[
        b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"mif1", b"msf1",
    ]) {
        Some(SourceFormat::Heic)
    } else {
        None
    }
}

/// Names what an unsupported file most likely is, for the error message.
fn describe_unknown(bytes: &[u8]) -> String {
    if bytes.len() >= 12 && &bytes[4..8] == b"ftyp" {
        let brand = String::from_utf8_lossy(&bytes[8..12]).to_string();
        return format!("ISO media file (brand '{brand}')");
    }
    if bytes.starts_with(b"%PDF") {
        return "PDF document".into();
    }
    if bytes.starts_with(b"8BPS") {
        return "Photoshop document".into();
    }
    if bytes.starts_with(&[0x00, 0x00, 0x00, 0x0C, b'j', b'P'])
        || bytes.starts_with(&[0xFF, 0x4F, 0xFF, 0x51])
    {
        return "JPEG 2000 image".into();
    }
    let head = String::from_utf8_lossy(&bytes[..bytes.len().min(512)]).to_ascii_lowercase();
    let text = head.trim_start_matches('\u{feff}').trim_start();
    if text.starts_with("<svg") || (text.starts_with("<?xml") && head.contains("<svg")) {
        return "SVG document".into();
    }
    if text.starts_with("<!doctype html") || text.starts_with("<html") || head.contains("<script") {
        return "HTML document".into();
    }
    if text.starts_with("<?xml") {
        return "XML document".into();
    }
    let printable = bytes
        .iter()
        .take(512)
        .filter(|b| b.is_ascii_graphic() || b.is_ascii_whitespace())
        .count();
    if printable == bytes.len().min(512) {
        return "plain text".into();
    }
    let hex: Vec<String> = bytes.iter().take(8).map(|b| format!("{b:02x}")).collect();
    format!("unknown data (first bytes {})", hex.join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sniffs_each_supported_magic() {
        assert_eq!(
            sniff(&[0xFF, 0xD8, 0xFF, 0xE0]).unwrap(),
            SourceFormat::Jpeg
        );
        assert_eq!(sniff(b"\x89PNG\r\n\x1a\n....").unwrap(), SourceFormat::Png);
        assert_eq!(sniff(b"RIFF\0\0\0\0WEBPVP8 ").unwrap(), SourceFormat::Webp);
        assert_eq!(sniff(b"GIF89a..").unwrap(), SourceFormat::Gif);
        assert_eq!(sniff(b"II*\0....").unwrap(), SourceFormat::Tiff);
        assert_eq!(sniff(b"MM\0*....").unwrap(), SourceFormat::Tiff);
        assert_eq!(
            sniff(b"BM01234567890123456789012345").unwrap(),
            SourceFormat::Bmp
        );
        assert_eq!(
            sniff(b"\0\0\0\x18ftypheic\0\0\0\0mif1heic").unwrap(),
            SourceFormat::Heic
        );
        assert_eq!(
            sniff(b"\0\0\0\x18ftypmif1\0\0\0\0mif1heic").unwrap(),
            SourceFormat::Heic
        );
        // AVIF files also list mif1; the AVIF brand decides, major or compatible.
        assert_eq!(
            sniff(b"\0\0\0\x1cftypmif1\0\0\0\0mif1avifmiaf").unwrap(),
            SourceFormat::Avif
        );
        assert_eq!(sniff(&[0xFF, 0x0A, 0xFA]).unwrap(), SourceFormat::Jxl);
        assert_eq!(
            sniff(b"\0\0\0\x0cJXL \r\n\x87\n\0\0").unwrap(),
            SourceFormat::Jxl
        );
    }

    #[test]
    fn names_what_it_found() {
        let err = sniff(b"hello, this is text\n").unwrap_err();
        assert_eq!(err.kind, crate::ErrorKind::Unsupported);
        assert!(err.message.contains("plain text"), "{}", err.message);
        let err = sniff(b"<!DOCTYPE html><script>alert(1)</script>").unwrap_err();
        assert!(err.message.contains("HTML"), "{}", err.message);
        let err = sniff(b"<?xml version=\"1.0\"?><svg xmlns=...>").unwrap_err();
        assert!(err.message.contains("SVG"), "{}", err.message);
        let err = sniff(b"\0\0\0\x14ftypqt  \0\0\0\0qt  ").unwrap_err();
        assert!(err.message.contains("ISO media"), "{}", err.message);
    }

    #[test]
    fn empty_is_its_own_kind() {
        assert_eq!(sniff(&[]).unwrap_err().kind, crate::ErrorKind::Empty);
    }
}
