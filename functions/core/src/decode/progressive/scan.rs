//! Progressive scans (T.81 G.1.2) into a reduced coefficient store.
//!
//! A decode at N/8 scale reads only the top-left N×N coefficients of each 8×8 block, so only those
//! are kept, as `i16` like libjpeg's. A refinement scan must still know which of the other
//! coefficients are nonzero (it reads a correction bit for each one, and counts zero ones in its run
//! lengths), so each block also keeps a 64-bit mask of its nonzero coefficients in zigzag order.
//! At 1/2 scale that is 40 bytes a block instead of 128.

use super::Refusal;
use super::entropy::{BitReader, Huffman};
use super::segments::{Component, Frame, Scan, ZIGZAG};

/// No slot: the coefficient lies outside the kept N×N corner.
const NONE: u8 = u8::MAX;

/// The coefficients one component keeps.
pub struct Plane {
    /// This component's output block size: N, or 2N for chroma that libjpeg scales up through the
    /// IDCT instead of upsampling (see [`component_scale`]).
    pub n: usize,
    /// Zigzag index → position in a block's kept n×n corner, or [`NONE`].
    pub slot: [u8; 64],
    /// Blocks per row (whole MCUs, see [`super::segments::Component::padded_w`]).
    pub stride: usize,
    /// Nonzero AC coefficients of each block, bit k for zigzag index k (bit 0, the DC, unused).
    pub masks: Vec<u64>,
    /// Each block's DC coefficient, densely: a DC scan touches one per block, so here it reads 2
    /// bytes a block instead of a cache line.
    pub dc: Vec<i16>,
    /// n×n coefficients per block, row-major (the first, the DC's place, unused).
    pub coefs: Vec<i16>,
}

impl Plane {
    /// Block `index`'s slot table, nonzero mask and kept coefficients.
    #[inline(always)]
    fn block(&mut self, index: usize) -> (&[u8; 64], &mut u64, &mut [i16]) {
        let n2 = self.n * self.n;
        (
            &self.slot,
            &mut self.masks[index],
            &mut self.coefs[index * n2..(index + 1) * n2],
        )
    }

    /// The mask bits of the kept AC coefficients: a block with none of them set is flat.
    pub fn kept_ac(&self) -> u64 {
        (1..64)
            .filter(|&k| self.slot[k] != NONE)
            .fold(0, |m, k| m | 1 << k)
    }
}

/// Every component's kept coefficients for a decode at `n`/8 scale.
pub struct Store {
    pub n: usize,
    pub planes: Vec<Plane>,
}

/// The IDCT size of a component when the image is decoded at `n`/8: libjpeg-turbo's rule
/// (`jdmaster.c`), which doubles a subsampled component's size while that replaces upsampling in
/// both directions, so 4:2:0 chroma at 1/2 scale is an 8×8 IDCT at the luma's resolution rather than
/// a 4×4 one upsampled (sharper colour edges, as libjpeg-turbo and so sharp decode them).
pub fn component_scale(frame: &Frame, component: &Component, n: usize) -> usize {
    let mut size = n;
    while size < 8
        && (frame.h_max * n).is_multiple_of(component.h * size * 2)
        && (frame.v_max * n).is_multiple_of(component.v * size * 2)
    {
        size *= 2;
    }
    size
}

impl Store {
    /// Allocates the store for `frame`, failing (not aborting) when memory is short.
    pub fn new(frame: &Frame, n: usize) -> Result<Self, Refusal> {
        let mut planes = Vec::with_capacity(frame.components.len());
        for c in &frame.components {
            let size = component_scale(frame, c, n);
            let mut slot = [NONE; 64];
            for (k, &natural) in ZIGZAG.iter().enumerate() {
                let (row, col) = (usize::from(natural) / 8, usize::from(natural) % 8);
                if row < size && col < size {
                    slot[k] = (row * size + col) as u8;
                }
            }
            let blocks = c.padded_w * c.padded_h;
            planes.push(Plane {
                n: size,
                slot,
                stride: c.padded_w,
                masks: zeroed(blocks)?,
                dc: zeroed(blocks)?,
                coefs: zeroed(blocks * size * size)?,
            });
        }
        Ok(Self { n, planes })
    }
}

fn zeroed<T: Default + Clone>(len: usize) -> Result<Vec<T>, Refusal> {
    let mut v = Vec::new();
    v.try_reserve_exact(len)
        .map_err(|_| Refusal::Unsupported("no memory for the coefficient store"))?;
    v.resize(len, T::default());
    Ok(v)
}

/// What a scan reads: its tables and the state it carries from block to block.
struct ScanState<'t> {
    dc: [Option<&'t Huffman>; 4],
    ac: Option<&'t Huffman>,
    predictions: [i32; 4],
    eob_run: u32,
}

/// Decodes one scan from `reader` into `store`. `restart_interval` is in MCUs (0: none);
/// `next_restart` finds the RSTn marker at a byte position and returns the position after it.
pub fn decode(
    reader: &mut BitReader,
    frame: &Frame,
    scan: &Scan,
    store: &mut Store,
    tables: (&[Option<Huffman>; 4], &[Option<Huffman>; 4]),
    restart_interval: usize,
    next_restart: &mut dyn FnMut(usize, usize) -> Result<usize, Refusal>,
) -> Result<(), Refusal> {
    let missing = Refusal::Corrupt("a scan uses a Huffman table that was never defined");
    let mut state = ScanState {
        dc: [None; 4],
        ac: None,
        predictions: [0; 4],
        eob_run: 0,
    };
    for &(component, td, ta) in &scan.components {
        if scan.ss == 0 && scan.ah == 0 {
            state.dc[component] = Some(tables.0[td].as_ref().ok_or(missing)?);
        } else if scan.ss > 0 {
            state.ac = Some(tables.1[ta].as_ref().ok_or(missing)?);
        }
    }
    let walk = Walk {
        frame,
        scan,
        restart_interval,
    };
    // One loop per kind of scan, each with its block decoder inlined.
    match (scan.ss, scan.ah) {
        (0, 0) => walk.run::<DC_FIRST>(reader, store, &mut state, next_restart),
        (0, _) => walk.run::<DC_REFINE>(reader, store, &mut state, next_restart),
        (_, 0) => walk.run::<AC_FIRST>(reader, store, &mut state, next_restart),
        _ => walk.run::<AC_REFINE>(reader, store, &mut state, next_restart),
    }?;
    if reader.overran() {
        return Err(Refusal::Corrupt("premature end of data segment"));
    }
    reader.align();
    Ok(())
}

/// The four kinds of scan (T.81 G.1.2.1–2).
const DC_FIRST: u8 = 0;
const DC_REFINE: u8 = 1;
const AC_FIRST: u8 = 2;
const AC_REFINE: u8 = 3;

/// The order a scan visits blocks in, and its restart intervals.
struct Walk<'a> {
    frame: &'a Frame,
    scan: &'a Scan,
    restart_interval: usize,
}

impl Walk<'_> {
    /// Decodes every block of the scan with the `KIND` decoder: a single-component scan visits the
    /// component's blocks row by row; an interleaved one, whole MCUs (each component's h×v blocks
    /// in turn).
    fn run<const KIND: u8>(
        &self,
        reader: &mut BitReader,
        store: &mut Store,
        state: &mut ScanState,
        next_restart: &mut dyn FnMut(usize, usize) -> Result<usize, Refusal>,
    ) -> Result<(), Refusal> {
        let block = |reader: &mut BitReader,
                     scan: &Scan,
                     state: &mut ScanState,
                     plane: &mut Plane,
                     component: usize,
                     index: usize| match KIND {
            DC_FIRST => dc_first(reader, scan, state, plane, component, index),
            DC_REFINE => dc_refine(reader, scan, state, plane, component, index),
            AC_FIRST => ac_first(reader, scan, state, plane, component, index),
            _ => ac_refine(reader, scan, state, plane, component, index),
        };
        let (frame, scan) = (self.frame, self.scan);
        let single = scan.components.len() == 1;
        let (mcus_x, mcus_y) = if single {
            let c = &frame.components[scan.components[0].0];
            (c.blocks_w, c.blocks_h)
        } else {
            (frame.mcus_x, frame.mcus_y)
        };
        let mut left = self.restart_interval;
        let mut restarts = 0;
        for my in 0..mcus_y {
            for mx in 0..mcus_x {
                if self.restart_interval > 0 {
                    if left == 0 {
                        if reader.overran() {
                            return Err(Refusal::Corrupt("premature end of data segment"));
                        }
                        reader.align();
                        let at = next_restart(reader.position(), restarts % 8)?;
                        reader.seek(at);
                        restarts += 1;
                        left = self.restart_interval;
                        state.predictions = [0; 4];
                        state.eob_run = 0;
                    }
                    left -= 1;
                }
                if single {
                    let component = scan.components[0].0;
                    let plane = &mut store.planes[component];
                    block(
                        reader,
                        scan,
                        state,
                        plane,
                        component,
                        my * plane.stride + mx,
                    )?;
                } else {
                    for &(component, _, _) in &scan.components {
                        let c = &frame.components[component];
                        let plane = &mut store.planes[component];
                        for v in 0..c.v {
                            for h in 0..c.h {
                                let index = (my * c.v + v) * plane.stride + mx * c.h + h;
                                block(reader, scan, state, plane, component, index)?;
                            }
                        }
                    }
                }
            }
        }
        Ok(())
    }
}

/// A DC coefficient's first bits: a Huffman-coded difference from the component's previous block.
#[inline(always)]
fn dc_first(
    reader: &mut BitReader,
    scan: &Scan,
    state: &mut ScanState,
    plane: &mut Plane,
    component: usize,
    index: usize,
) -> Result<(), Refusal> {
    let table = state.dc[component].expect("set for every DC-first component");
    let size = u32::from(reader.symbol(table)?);
    if size > 11 {
        return Err(Refusal::Corrupt("a DC difference is out of range"));
    }
    let diff = if size == 0 { 0 } else { reader.extend(size) };
    let prediction = &mut state.predictions[component];
    *prediction = prediction.wrapping_add(diff);
    plane.dc[index] = prediction.wrapping_shl(scan.al) as i16;
    Ok(())
}

/// One more bit of a DC coefficient.
#[inline(always)]
fn dc_refine(
    reader: &mut BitReader,
    scan: &Scan,
    _: &mut ScanState,
    plane: &mut Plane,
    _: usize,
    index: usize,
) -> Result<(), Refusal> {
    if reader.bit() {
        plane.dc[index] |= 1 << scan.al;
    }
    Ok(())
}

/// The first scan of a spectral band: run-length coded values, or an end-of-band run.
#[inline(always)]
fn ac_first(
    reader: &mut BitReader,
    scan: &Scan,
    state: &mut ScanState,
    plane: &mut Plane,
    _: usize,
    index: usize,
) -> Result<(), Refusal> {
    if state.eob_run > 0 {
        state.eob_run -= 1;
        return Ok(());
    }
    let (slot, mask, coefs) = plane.block(index);
    let table = state.ac.expect("set for an AC scan");
    let mut k = scan.ss;
    while k <= scan.se {
        let rs = reader.symbol(table)?;
        let (run, size) = (u32::from(rs >> 4), u32::from(rs & 15));
        if size != 0 {
            k += run as usize;
            if k > scan.se {
                return Err(Refusal::Corrupt("a run of zeros passes the band's end"));
            }
            let value = reader.extend(size).wrapping_shl(scan.al);
            *mask |= 1 << k;
            if slot[k] != NONE {
                coefs[usize::from(slot[k])] = value as i16;
            }
            k += 1;
        } else if run < 15 {
            state.eob_run = (1 << run) - 1;
            if run > 0 {
                state.eob_run += reader.bits(run);
            }
            break;
        } else {
            k += 16;
        }
    }
    Ok(())
}

/// A refinement scan of a band: one more bit of precision for the coefficients already nonzero, and
/// new ±1 coefficients (at this bit) placed by run lengths that count only the still-zero ones.
/// libjpeg walks the band one coefficient at a time; here the mask finds the run's end (clear the
/// lowest `run` zero-history bits, take the next) and the correction bits before it are read at once.
#[inline(always)]
fn ac_refine(
    reader: &mut BitReader,
    scan: &Scan,
    state: &mut ScanState,
    plane: &mut Plane,
    _: usize,
    index: usize,
) -> Result<(), Refusal> {
    let (slot, mask, coefs) = plane.block(index);
    let p1: i16 = 1 << scan.al;
    let band = if scan.se == 63 {
        u64::MAX
    } else {
        (1u64 << (scan.se + 1)) - 1
    };
    let mut k = scan.ss;
    if state.eob_run == 0 {
        let table = state.ac.expect("set for an AC scan");
        while k <= scan.se {
            let rs = reader.symbol(table)?;
            let (run, size) = (rs >> 4, rs & 15);
            let mut new = 0i16;
            if size != 0 {
                if size != 1 {
                    return Err(Refusal::Corrupt("a refinement coefficient is not ±1"));
                }
                new = if reader.bit() { p1 } else { -p1 };
            } else if run != 15 {
                state.eob_run = 1 << run;
                if run > 0 {
                    state.eob_run += reader.bits(u32::from(run));
                }
                break;
            }
            // The (run+1)-th still-zero coefficient from k on; past the band if there is none.
            let ahead = band & (u64::MAX << k);
            let mut zeros = !*mask & ahead;
            for _ in 0..run {
                zeros &= zeros.wrapping_sub(1);
            }
            let target = if zeros == 0 {
                scan.se + 1
            } else {
                zeros.trailing_zeros() as usize
            };
            let before = if target >= 64 {
                u64::MAX
            } else {
                (1u64 << target) - 1
            };
            correct(reader, *mask & ahead & before, slot, coefs, p1);
            k = target;
            if new != 0 {
                if k > scan.se {
                    return Err(Refusal::Corrupt(
                        "a new coefficient falls past the band's end",
                    ));
                }
                *mask |= 1 << k;
                if slot[k] != NONE {
                    coefs[usize::from(slot[k])] = new;
                }
            }
            k += 1;
        }
    }
    if state.eob_run > 0 {
        // Inside an end-of-band run: only the corrections of coefficients already nonzero.
        let ahead = band & u64::MAX.checked_shl(k as u32).unwrap_or(0);
        correct(reader, *mask & ahead, slot, coefs, p1);
        state.eob_run -= 1;
    }
    Ok(())
}

/// Reads one correction bit per coefficient in `nonzero` (zigzag bits, in order) and adds `p1` to
/// the magnitude of each kept one whose bit is 1 (T.81 G.1.2.3).
#[inline(always)]
fn correct(reader: &mut BitReader, mut nonzero: u64, slot: &[u8; 64], coefs: &mut [i16], p1: i16) {
    while nonzero != 0 {
        let count = nonzero.count_ones().min(16);
        let bits = reader.bits(count);
        for i in (0..count).rev() {
            let k = nonzero.trailing_zeros() as usize;
            nonzero &= nonzero - 1;
            if bits >> i & 1 != 0 && slot[k] != NONE {
                let c = &mut coefs[usize::from(slot[k])];
                if *c & p1 == 0 {
                    *c = if *c >= 0 {
                        c.wrapping_add(p1)
                    } else {
                        c.wrapping_sub(p1)
                    };
                }
            }
        }
    }
}
