//! Ultra HDR / ISO 21496-1 gain maps in JPEG: detected (for `source.gain_map` in metadata), never
//! decoded. The primary image is what libjpeg-turbo decodes; the gain map is a second JPEG after it
//! (listed by an MPF segment), which only HDR displays use.

/// True when the JPEG's header segments announce a gain map: Adobe/Google's `hdrgm` XMP namespace,
/// a GContainer directory item with `Semantic="GainMap"`, or the ISO 21496-1 APP2 URN. Only the
/// segments before the first scan are read; MPF alone (stereo MPO files) does not count.
pub fn has_gain_map(bytes: &[u8]) -> bool {
    let mut at = 2;
    while at + 4 <= bytes.len() && bytes[at] == 0xFF {
        let marker = bytes[at + 1];
        if marker == 0xDA || marker == 0xD9 {
            break;
        }
        let length = usize::from(u16::from_be_bytes([bytes[at + 2], bytes[at + 3]]));
        let Some(body) = bytes.get(at + 4..at + 2 + length.max(2)) else {
            break;
        };
        let found = match marker {
            0xE1 => {
                contains(body, b"http://ns.adobe.com/hdr-gain-map/1.0/")
                    || contains(body, b"Semantic=\"GainMap\"")
            }
            0xE2 => body.starts_with(b"urn:iso:std:iso:ts:21496:-1"),
            _ => false,
        };
        if found {
            return true;
        }
        at += 2 + length.max(2);
    }
    false
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jpeg_with(marker: u8, body: &[u8]) -> Vec<u8> {
        let mut out = vec![0xFF, 0xD8, 0xFF, 0xE0, 0, 4, 0, 0, 0xFF, marker];
        out.extend(((body.len() + 2) as u16).to_be_bytes());
        out.extend_from_slice(body);
        out.extend([0xFF, 0xDA, 0, 2, 0xFF, 0xD9]);
        out
    }

    #[test]
    fn finds_ultra_hdr_and_iso_gain_maps_but_not_stereo_mpo() {
        let xmp = b"http://ns.adobe.com/xap/1.0/\0<x:xmpmeta xmlns:hdrgm=\"http://ns.adobe.com/hdr-gain-map/1.0/\" hdrgm:Version=\"1.0\"/>";
        assert!(has_gain_map(&jpeg_with(0xE1, xmp)));
        let directory = b"http://ns.adobe.com/xap/1.0/\0<Container:Item Item:Semantic=\"GainMap\" Item:Mime=\"image/jpeg\"/>";
        assert!(has_gain_map(&jpeg_with(0xE1, directory)));
        assert!(has_gain_map(&jpeg_with(
            0xE2,
            b"urn:iso:std:iso:ts:21496:-1\0\0"
        )));
        assert!(!has_gain_map(&jpeg_with(0xE2, b"MPF\0II*\0")));
        assert!(!has_gain_map(&jpeg_with(0xE1, b"Exif\0\0MM\0*")));
        // Truncated or garbage never panics.
        let full = jpeg_with(0xE1, xmp);
        for cut in 0..full.len() {
            let _ = has_gain_map(&full[..cut]);
        }
    }
}
