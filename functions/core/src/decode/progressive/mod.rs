//! Progressive JPEG at a reduced scale, with a reduced coefficient store.
//!
//! A progressive JPEG cannot be decoded row by row: every scan refines the whole picture, so a
//! decoder keeps every coefficient until the last scan. libjpeg-turbo keeps all 64 of each 8×8
//! block (128 bytes; 72 MB for a 24 MP 4:2:0 photo) whatever the output scale. Decoding at N/8
//! scale reads only the top-left N×N of them, so this decoder keeps only those and a 64-bit mask of
//! which others are nonzero (what the refinement scans need): 40 bytes a block at 1/2 scale, 16 at
//! 1/4, 10 at 1/8. The Huffman decoding is the same work as libjpeg-turbo's; the zeroing, the
//! page faults and the cache misses of the big store are what it saves.
//!
//! Scope: Huffman-coded progressive (SOF2), 8-bit, grey or YCbCr with sampling factors 1 or 2.
//! Anything else (arithmetic coding, 12-bit, CMYK, RGB-coded, 4:1:1), and any file this decoder
//! finds damaged, is a [`Refusal`]: the caller decodes it with libjpeg-turbo instead, which then
//! gives the result or the error every other JPEG gets. So this decoder never decides whether a
//! file is broken; it only ever saves memory on files it decodes in full.
//!
//! The marker loop lives here; [`segments`] parses headers and tables, [`entropy`] reads bits and
//! Huffman codes, [`scan`] decodes scans into the store, [`output`] makes the RGB pixels.

mod entropy;
mod output;
mod scan;
mod segments;

use super::jpeg::MAX_JPEG_SCANS;
use crate::pixels::Pixels;
use entropy::{BitReader, Huffman};
use scan::Store;
use segments::Frame;

/// Why this decoder handed a file back to libjpeg-turbo.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// A feature outside this decoder's scope.
    Unsupported(&'static str),
    /// Damage this decoder does not try to recover from.
    Corrupt(&'static str),
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::Unsupported(why) => write!(f, "unsupported: {why}"),
            Refusal::Corrupt(why) => write!(f, "damaged: {why}"),
        }
    }
}

/// Decodes a progressive JPEG at 1/`denominator` scale (1, 2, 4 or 8) to 8-bit RGB, or refuses.
pub fn decode(bytes: &[u8], denominator: u32) -> Result<Pixels, Refusal> {
    let n = match denominator {
        1 | 2 | 4 | 8 => 8 / denominator as usize,
        _ => {
            return Err(Refusal::Unsupported(
                "a scale other than 1/1, 1/2, 1/4 or 1/8",
            ));
        }
    };
    if !bytes.starts_with(&[0xFF, 0xD8]) {
        return Err(Refusal::Corrupt("no start-of-image marker"));
    }
    let mut state = State::default();
    let mut pos = 2;
    loop {
        let (marker, after) = next_marker(bytes, pos)?;
        pos = match marker {
            0xD9 => break,
            0xC2 => state.frame(bytes, after, n)?,
            0xC0 | 0xC1 | 0xC3 | 0xC5..=0xC7 | 0xC9..=0xCB | 0xCD..=0xCF => {
                return Err(Refusal::Unsupported("not a Huffman-coded progressive JPEG"));
            }
            0xC4 => {
                let (body, next) = segments::payload(bytes, after)?;
                segments::huffman_tables(body, &mut state.dc, &mut state.ac)?;
                next
            }
            0xDB => {
                let (body, next) = segments::payload(bytes, after)?;
                segments::quant_tables(body, &mut state.quant)?;
                next
            }
            0xDD => {
                let (body, next) = segments::payload(bytes, after)?;
                state.restart_interval = segments::restart_interval(body)?;
                next
            }
            0xDA => state.scan(bytes, after)?,
            0xEE => {
                let (body, next) = segments::payload(bytes, after)?;
                state.adobe_rgb |= segments::adobe_rgb(body);
                next
            }
            0xE0..=0xEF | 0xFE => segments::payload(bytes, after)?.1,
            0xDC => return Err(Refusal::Unsupported("a DNL marker")),
            _ => return Err(Refusal::Corrupt("an unexpected marker")),
        };
    }
    state.finish()
}

/// What the marker loop has read so far.
#[derive(Default)]
struct State {
    frame: Option<Frame>,
    store: Option<Store>,
    quant: [Option<[u16; 64]>; 4],
    /// Each component's table, latched at its first scan (as libjpeg does).
    latched: Vec<Option<[u16; 64]>>,
    dc: [Option<Huffman>; 4],
    ac: [Option<Huffman>; 4],
    restart_interval: usize,
    adobe_rgb: bool,
    scans: u32,
}

impl State {
    fn frame(&mut self, bytes: &[u8], after: usize, n: usize) -> Result<usize, Refusal> {
        if self.frame.is_some() {
            return Err(Refusal::Unsupported("more than one frame"));
        }
        let (body, next) = segments::payload(bytes, after)?;
        let frame = segments::frame(body)?;
        self.refuse_rgb(&frame)?;
        self.store = Some(Store::new(&frame, n)?);
        self.latched = vec![None; frame.components.len()];
        self.frame = Some(frame);
        Ok(next)
    }

    /// Three components coded as RGB (Adobe transform 0, or ids 'R', 'G', 'B' as libjpeg guesses).
    fn refuse_rgb(&self, frame: &Frame) -> Result<(), Refusal> {
        let ids: Vec<u8> = frame.components.iter().map(|c| c.id).collect();
        if frame.components.len() == 3 && (self.adobe_rgb || ids == b"RGB") {
            return Err(Refusal::Unsupported("RGB-coded components"));
        }
        Ok(())
    }

    fn scan(&mut self, bytes: &[u8], after: usize) -> Result<usize, Refusal> {
        let (frame, store) = match (&self.frame, &mut self.store) {
            (Some(frame), Some(store)) => (frame, store),
            _ => return Err(Refusal::Corrupt("a scan before the frame header")),
        };
        self.scans += 1;
        if self.scans > MAX_JPEG_SCANS {
            return Err(Refusal::Corrupt("more scans than imgpipe decodes"));
        }
        let (body, data) = segments::payload(bytes, after)?;
        let scan = segments::scan(body, frame)?;
        for &(component, _, _) in &scan.components {
            if self.latched[component].is_none() {
                let table = self.quant[frame.components[component].tq].ok_or(Refusal::Corrupt(
                    "a scan uses an undefined quantisation table",
                ))?;
                self.latched[component] = Some(table);
            }
        }
        let mut reader = BitReader::new(bytes, data);
        let mut next_restart = |at: usize, k: usize| match next_marker(bytes, at)? {
            (marker, after) if usize::from(marker) == 0xD0 + k => Ok(after),
            _ => Err(Refusal::Corrupt(
                "a restart marker is missing or out of order",
            )),
        };
        scan::decode(
            &mut reader,
            frame,
            &scan,
            store,
            (&self.dc, &self.ac),
            self.restart_interval,
            &mut next_restart,
        )?;
        Ok(reader.position())
    }

    fn finish(self) -> Result<Pixels, Refusal> {
        if let Some(frame) = &self.frame {
            // An Adobe segment may come after the frame header.
            self.refuse_rgb(frame)?;
        }
        let (Some(frame), Some(store)) = (self.frame, self.store) else {
            return Err(Refusal::Corrupt("no frame header"));
        };
        let quant: Vec<[u16; 64]> = self
            .latched
            .iter()
            .map(|t| t.ok_or(Refusal::Unsupported("a component with no scan")))
            .collect::<Result<_, _>>()?;
        let (width, height, rgb) = output::rgb(&frame, store, &quant)?;
        Ok(Pixels::new(width as u32, height as u32, 3, rgb))
    }
}

/// The next marker at or after `pos`, skipping stray bytes and fill `FF`s as libjpeg does (it warns
/// of "extraneous bytes", a cosmetic warning): (marker code, position after it).
fn next_marker(bytes: &[u8], mut pos: usize) -> Result<(u8, usize), Refusal> {
    loop {
        while bytes.get(pos).is_some_and(|&b| b != 0xFF) {
            pos += 1;
        }
        while bytes.get(pos) == Some(&0xFF) {
            pos += 1;
        }
        match bytes.get(pos) {
            None => {
                return Err(Refusal::Corrupt(
                    "the file ends before its end-of-image marker",
                ));
            }
            Some(0x00) => pos += 1, // a stuffed FF outside a scan: stray data
            Some(&marker) => return Ok((marker, pos + 1)),
        }
    }
}

#[cfg(test)]
mod tests;
