//! The marker segments a progressive JPEG needs (T.81 Annex B): the frame header (SOF2), quantisation
//! and Huffman tables, the restart interval, scan headers, and the Adobe APP14 colour transform.
//! Anything this decoder does not handle is a [`Refusal::Unsupported`], for libjpeg-turbo to decode.

use super::Refusal;
use super::entropy::Huffman;

/// Zigzag index → natural (row-major) index in an 8×8 block (T.81 Figure A.6).
pub const ZIGZAG: [u8; 64] = [
    0, 1, 8, 16, 9, 2, 3, 10, 17, 24, 32, 25, 18, 11, 4, 5, 12, 19, 26, 33, 40, 48, 41, 34, 27, 20,
    13, 6, 7, 14, 21, 28, 35, 42, 49, 56, 57, 50, 43, 36, 29, 22, 15, 23, 30, 37, 44, 51, 58, 59,
    52, 45, 38, 31, 39, 46, 53, 60, 61, 54, 47, 55, 62, 63,
];

/// One image component of the frame.
#[derive(Debug, Clone)]
pub struct Component {
    pub id: u8,
    /// Horizontal and vertical sampling factors (1 or 2 here).
    pub h: usize,
    pub v: usize,
    /// Quantisation table selector.
    pub tq: usize,
    /// Blocks that hold image data (a single-component scan covers exactly these).
    pub blocks_w: usize,
    pub blocks_h: usize,
    /// Blocks including the padding an interleaved scan's whole MCUs add (the store's size).
    pub padded_w: usize,
    pub padded_h: usize,
    /// Samples at full scale: the image size divided by the subsampling.
    pub width: usize,
    pub height: usize,
}

/// The frame header.
#[derive(Debug, Clone)]
pub struct Frame {
    pub width: usize,
    pub height: usize,
    pub components: Vec<Component>,
    pub h_max: usize,
    pub v_max: usize,
    pub mcus_x: usize,
    pub mcus_y: usize,
}

/// One scan header.
#[derive(Debug, Clone)]
pub struct Scan {
    /// Frame component indexes, with each one's DC and AC table selectors.
    pub components: Vec<(usize, usize, usize)>,
    /// Spectral selection start and end (zigzag indexes).
    pub ss: usize,
    pub se: usize,
    /// Successive approximation: the previous and the current point transform.
    pub ah: u32,
    pub al: u32,
}

/// Reads a segment's payload: `bytes[pos..]` starts at its 2-byte length. Returns (payload, next).
pub fn payload(bytes: &[u8], pos: usize) -> Result<(&[u8], usize), Refusal> {
    let length = bytes
        .get(pos..pos + 2)
        .map(|b| usize::from(u16::from_be_bytes([b[0], b[1]])))
        .ok_or(Refusal::Corrupt("a segment is cut short"))?;
    if length < 2 {
        return Err(Refusal::Corrupt("a segment length is too small"));
    }
    let end = pos + length;
    let body = bytes
        .get(pos + 2..end)
        .ok_or(Refusal::Corrupt("a segment is cut short"))?;
    Ok((body, end))
}

/// SOF2: 8-bit, one (grey) or three (YCbCr) components, sampling factors 1 or 2 with the luma
/// (or the first component) the largest.
pub fn frame(body: &[u8]) -> Result<Frame, Refusal> {
    if body.len() < 6 {
        return Err(Refusal::Corrupt("the frame header is cut short"));
    }
    if body[0] != 8 {
        return Err(Refusal::Unsupported("not 8-bit"));
    }
    let height = usize::from(u16::from_be_bytes([body[1], body[2]]));
    let width = usize::from(u16::from_be_bytes([body[3], body[4]]));
    let count = usize::from(body[5]);
    if height == 0 {
        return Err(Refusal::Unsupported("the height comes later (DNL)"));
    }
    if width == 0 {
        return Err(Refusal::Corrupt("the frame is 0 pixels wide"));
    }
    if count != 1 && count != 3 {
        return Err(Refusal::Unsupported("not grey or YCbCr"));
    }
    if body.len() < 6 + 3 * count {
        return Err(Refusal::Corrupt("the frame header is cut short"));
    }
    let mut components = Vec::with_capacity(count);
    for i in 0..count {
        let c = &body[6 + 3 * i..9 + 3 * i];
        let (h, v) = (usize::from(c[1] >> 4), usize::from(c[1] & 15));
        if !(1..=2).contains(&h) || !(1..=2).contains(&v) {
            return Err(Refusal::Unsupported("a sampling factor other than 1 or 2"));
        }
        if c[2] > 3 {
            return Err(Refusal::Corrupt(
                "a quantisation table selector is out of range",
            ));
        }
        components.push(Component {
            id: c[0],
            h,
            v,
            tq: usize::from(c[2]),
            blocks_w: 0,
            blocks_h: 0,
            padded_w: 0,
            padded_h: 0,
            width: 0,
            height: 0,
        });
    }
    if count == 1 {
        // A lone component's scans are never interleaved: its sampling factors do not matter.
        components[0].h = 1;
        components[0].v = 1;
    }
    let h_max = components.iter().map(|c| c.h).max().unwrap_or(1);
    let v_max = components.iter().map(|c| c.v).max().unwrap_or(1);
    if components[0].h != h_max || components[0].v != v_max {
        return Err(Refusal::Unsupported(
            "chroma sampled more densely than luma",
        ));
    }
    let mcus_x = width.div_ceil(8 * h_max);
    let mcus_y = height.div_ceil(8 * v_max);
    for c in &mut components {
        c.width = (width * c.h).div_ceil(h_max);
        c.height = (height * c.v).div_ceil(v_max);
        c.blocks_w = c.width.div_ceil(8);
        c.blocks_h = c.height.div_ceil(8);
        c.padded_w = mcus_x * c.h;
        c.padded_h = mcus_y * c.v;
    }
    Ok(Frame {
        width,
        height,
        components,
        h_max,
        v_max,
        mcus_x,
        mcus_y,
    })
}

/// DQT: stores each table in natural order.
pub fn quant_tables(mut body: &[u8], tables: &mut [Option<[u16; 64]>; 4]) -> Result<(), Refusal> {
    while !body.is_empty() {
        let (precision, id) = (body[0] >> 4, usize::from(body[0] & 15));
        let size = if precision == 0 { 64 } else { 128 };
        if id > 3 || precision > 1 || body.len() < 1 + size {
            return Err(Refusal::Corrupt("a quantisation table is malformed"));
        }
        let mut table = [0u16; 64];
        for (k, &natural) in ZIGZAG.iter().enumerate() {
            table[usize::from(natural)] = if precision == 0 {
                u16::from(body[1 + k])
            } else {
                u16::from_be_bytes([body[1 + 2 * k], body[2 + 2 * k]])
            };
        }
        tables[id] = Some(table);
        body = &body[1 + size..];
    }
    Ok(())
}

/// DHT: builds each table into `dc` or `ac`.
pub fn huffman_tables(
    mut body: &[u8],
    dc: &mut [Option<Huffman>; 4],
    ac: &mut [Option<Huffman>; 4],
) -> Result<(), Refusal> {
    while !body.is_empty() {
        if body.len() < 17 {
            return Err(Refusal::Corrupt("a Huffman table is cut short"));
        }
        let (class, id) = (body[0] >> 4, usize::from(body[0] & 15));
        if class > 1 || id > 3 {
            return Err(Refusal::Corrupt("a Huffman table selector is out of range"));
        }
        let counts: [u8; 16] = body[1..17].try_into().expect("16 bytes");
        let total: usize = counts.iter().map(|&c| usize::from(c)).sum();
        let symbols = body
            .get(17..17 + total)
            .ok_or(Refusal::Corrupt("a Huffman table is cut short"))?;
        let table = Huffman::new(&counts, symbols)?;
        if class == 0 {
            dc[id] = Some(table);
        } else {
            ac[id] = Some(table);
        }
        body = &body[17 + total..];
    }
    Ok(())
}

/// DRI: the restart interval in MCUs (0: none).
pub fn restart_interval(body: &[u8]) -> Result<usize, Refusal> {
    match body {
        [hi, lo] => Ok(usize::from(u16::from_be_bytes([*hi, *lo]))),
        _ => Err(Refusal::Corrupt(
            "the restart interval segment is malformed",
        )),
    }
}

/// SOS: validates the progression parameters as libjpeg does (T.81 G.1.1.1.1).
pub fn scan(body: &[u8], frame: &Frame) -> Result<Scan, Refusal> {
    let count = usize::from(
        *body
            .first()
            .ok_or(Refusal::Corrupt("a scan header is empty"))?,
    );
    if count == 0 || count > 4 || body.len() != 4 + 2 * count {
        return Err(Refusal::Corrupt("a scan header is malformed"));
    }
    let mut components = Vec::with_capacity(count);
    for i in 0..count {
        let (id, tables) = (body[1 + 2 * i], body[2 + 2 * i]);
        let index = frame
            .components
            .iter()
            .position(|c| c.id == id)
            .ok_or(Refusal::Corrupt("a scan names a component the frame lacks"))?;
        let (td, ta) = (usize::from(tables >> 4), usize::from(tables & 15));
        if td > 3 || ta > 3 || components.iter().any(|&(c, _, _)| c == index) {
            return Err(Refusal::Corrupt("a scan header is malformed"));
        }
        components.push((index, td, ta));
    }
    let tail = &body[1 + 2 * count..];
    let (ss, se) = (usize::from(tail[0]), usize::from(tail[1]));
    let (ah, al) = (u32::from(tail[2] >> 4), u32::from(tail[2] & 15));
    let valid = if ss == 0 {
        se == 0
    } else {
        se >= ss && se <= 63 && count == 1
    };
    if !valid || al > 13 || (ah != 0 && ah != al + 1) {
        return Err(Refusal::Corrupt(
            "a scan's progression parameters are invalid",
        ));
    }
    Ok(Scan {
        components,
        ss,
        se,
        ah,
        al,
    })
}

/// True when an APP14 "Adobe" segment says the three components are RGB, not YCbCr (transform 0).
pub fn adobe_rgb(body: &[u8]) -> bool {
    body.len() >= 12 && body.starts_with(b"Adobe") && body[11] == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sof(width: u16, height: u16, components: &[(u8, u8, u8)]) -> Vec<u8> {
        let mut body = vec![8];
        body.extend_from_slice(&height.to_be_bytes());
        body.extend_from_slice(&width.to_be_bytes());
        body.push(components.len() as u8);
        for &(id, hv, tq) in components {
            body.extend_from_slice(&[id, hv, tq]);
        }
        body
    }

    #[test]
    fn a_420_frame_pads_chroma_and_luma_to_whole_mcus() {
        let f = frame(&sof(33, 17, &[(1, 0x22, 0), (2, 0x11, 1), (3, 0x11, 1)])).unwrap();
        assert_eq!((f.mcus_x, f.mcus_y), (3, 2));
        let (y, cb) = (&f.components[0], &f.components[1]);
        assert_eq!(
            (y.blocks_w, y.blocks_h, y.padded_w, y.padded_h),
            (5, 3, 6, 4)
        );
        assert_eq!((cb.width, cb.height), (17, 9));
        assert_eq!(
            (cb.blocks_w, cb.blocks_h, cb.padded_w, cb.padded_h),
            (3, 2, 3, 2)
        );
    }

    #[test]
    fn out_of_scope_frames_are_unsupported() {
        let mut twelve_bit = sof(8, 8, &[(1, 0x11, 0)]);
        twelve_bit[0] = 12;
        let cmyk = sof(
            8,
            8,
            &[(1, 0x11, 0), (2, 0x11, 0), (3, 0x11, 0), (4, 0x11, 0)],
        );
        let h4 = sof(8, 8, &[(1, 0x41, 0), (2, 0x11, 0), (3, 0x11, 0)]);
        let dense_chroma = sof(8, 8, &[(1, 0x11, 0), (2, 0x22, 0), (3, 0x11, 0)]);
        for (name, body) in [
            ("12-bit", twelve_bit),
            ("cmyk", cmyk),
            ("4:1:1", h4),
            ("dense", dense_chroma),
            ("dnl", sof(8, 0, &[(1, 0x11, 0)])),
        ] {
            assert!(
                matches!(frame(&body), Err(Refusal::Unsupported(_))),
                "{name}"
            );
        }
    }

    #[test]
    fn scans_are_checked_like_libjpeg() {
        let f = frame(&sof(16, 16, &[(1, 0x22, 0), (2, 0x11, 1), (3, 0x11, 1)])).unwrap();
        let dc = scan(&[3, 1, 0x00, 2, 0x11, 3, 0x11, 0, 0, 0x01], &f).unwrap();
        assert_eq!((dc.ss, dc.se, dc.ah, dc.al), (0, 0, 0, 1));
        let ac = scan(&[1, 2, 0x01, 1, 63, 0x21], &f).unwrap();
        assert_eq!((ac.components[0], ac.ss, ac.se), ((1, 0, 1), 1, 63));
        for bad in [
            &[3, 1, 0, 2, 0, 3, 0, 1, 5, 0][..], // an interleaved AC scan
            &[1, 1, 0, 5, 2, 0],                 // Se < Ss
            &[1, 1, 0, 0, 5, 0],                 // a DC scan with Se > 0
            &[1, 1, 0, 1, 5, 0x31],              // Ah ≠ Al + 1
            &[1, 9, 0, 1, 5, 0],                 // no such component
        ] {
            assert!(scan(bad, &f).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn quant_tables_come_out_in_natural_order() {
        let mut body = vec![0x01];
        body.extend((0..64).map(|k| k as u8));
        let mut tables = [None; 4];
        quant_tables(&body, &mut tables).unwrap();
        let table = tables[1].unwrap();
        assert_eq!((table[0], table[1], table[8], table[63]), (0, 1, 2, 63));
    }

    #[test]
    fn adobe_transform_zero_means_rgb() {
        assert!(adobe_rgb(b"Adobe\x00\x64\x00\x00\x00\x00\x00"));
        assert!(!adobe_rgb(b"Adobe\x00\x64\x00\x00\x00\x00\x01"));
    }
}
