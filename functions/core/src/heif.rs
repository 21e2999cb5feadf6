//! HEIF container reader (ISO/IEC 23008-12), for AVIF and HEIC: the primary item with its properties
//! (`ispe`, `colr`, `irot`, `imir`, `clap`, `pixi`, `av1C`), its alpha auxiliary item, its grid tiles
//! and its `Exif` item, read from the boxes without touching coded pixels, so limits can be checked
//! from `ispe` before a decoder allocates anything.
//!
//! Every length and offset is bounds-checked and nothing is pre-allocated from a count in the file:
//! a malformed box is a `corrupt` error, never a panic or a huge allocation.

use std::collections::BTreeMap;

use crate::error::{PipelineError, Result};

/// Coding-independent colour description (`colr` type `nclx`, ITU-T H.273 code points).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cicp {
    /// Colour primaries (1 BT.709/sRGB, 9 BT.2020, 12 Display P3, 2 unspecified).
    pub primaries: u16,
    /// Transfer characteristics (13 sRGB, 1/6 BT.709, 16 PQ, 18 HLG, 2 unspecified).
    pub transfer: u16,
    /// Matrix coefficients (0 identity/GBR, 1 BT.709, 5/6 BT.601, 9 BT.2020 NCL, 2 unspecified).
    pub matrix: u16,
    /// Full-range samples (else limited/"video" range).
    pub full_range: bool,
}

/// How an item's colour is described.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Colour {
    /// An ICC profile (`prof` or `rICC`).
    Icc(Vec<u8>),
    /// Code points (`nclx`).
    Nclx(Cicp),
}

/// One display transform, in the order the item lists it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transform {
    /// `irot`: anticlockwise quarter turns (1–3).
    RotateCcw(u8),
    /// `imir` axis 0: top↔bottom.
    MirrorVertical,
    /// `imir` axis 1: left↔right.
    MirrorHorizontal,
    /// `clap`: a crop (applied by the decoder, which knows the coded size).
    CleanAperture,
}

/// The properties of one item that imgpipe uses.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Properties {
    /// `ispe`: the coded (pre-transform) size.
    pub size: Option<(u32, u32)>,
    /// `colr`: ICC profile or code points (when both exist, the ICC profile wins: it is exact).
    pub colour: Option<Colour>,
    /// `nclx` even when an ICC profile is present (the YCbCr matrix still comes from it).
    pub nclx: Option<Cicp>,
    /// `irot`/`imir`/`clap` in association order.
    pub transforms: Vec<Transform>,
    /// Bits per sample from `pixi` or `av1C`.
    pub bit_depth: Option<u8>,
    /// `auxC` type URN, for auxiliary images.
    pub aux_type: Option<String>,
    /// `av1C` monochrome flag.
    pub monochrome: bool,
}

/// One item: its id, type and (for coded images) data assembled from its `iloc` extents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    /// Item id.
    pub id: u32,
    /// Four-character item type (`av01`, `hvc1`, `grid`, `Exif`, …).
    pub kind: [u8; 4],
    /// Properties associated through `ipma`.
    pub properties: Properties,
}

/// A `grid` derivation: tiles in row-major order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grid {
    /// Rows of tiles.
    pub rows: u32,
    /// Columns of tiles.
    pub columns: u32,
    /// Size of the assembled canvas (tiles are cropped to it).
    pub width: u32,
    /// Size of the assembled canvas.
    pub height: u32,
    /// Tile item ids, row-major.
    pub tiles: Vec<u32>,
}

/// What a HEIF file holds, parsed from its `meta` box.
#[derive(Debug, Clone)]
pub struct Container<'a> {
    file: &'a [u8],
    idat: Option<&'a [u8]>,
    /// Major and compatible brands from `ftyp`.
    pub brands: Vec<[u8; 4]>,
    /// The primary item.
    pub primary: Item,
    /// The primary item's grid, when it is a `grid`.
    pub grid: Option<Grid>,
    /// The alpha auxiliary item (`auxl` → primary, `auxC` alpha URN).
    pub alpha: Option<Item>,
    /// The colour is premultiplied by alpha (`prem` reference).
    pub premultiplied: bool,
    items: BTreeMap<u32, Item>,
    locations: BTreeMap<u32, Location>,
    exif_id: Option<u32>,
}

/// One `iref` entry: reference type, from item, to items.
type Reference = ([u8; 4], u32, Vec<u32>);

#[derive(Debug, Clone, Default)]
struct Location {
    construction_method: u8,
    base_offset: u64,
    extents: Vec<(u64, u64)>,
}

/// Alpha auxiliary type URNs (MPEG-B CICP for AV1/any codec, HEVC's own for HEIC).
const ALPHA_URNS: [&str; 2] = [
    "urn:mpeg:mpegB:cicp:systems:auxiliary:alpha",
    "urn:mpeg:hevc:2015:auxid:1",
];

/// Largest number of items, properties or extents a file may declare (real files have tens; an
/// iPhone grid has about 50). Bounds the parse time of hostile headers.
const MAX_ENTRIES: usize = 4096;

fn corrupt(what: &str) -> PipelineError {
    PipelineError::corrupt(format!(
        "HEIF container is malformed ({what}); the file is truncated or corrupt, upload it again"
    ))
}

/// A byte reader over one box body; every read is bounds-checked.
struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn new(data: &'a [u8]) -> Self {
        Self { data, pos: 0 }
    }
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.data.len())
            .ok_or_else(|| corrupt("a box ends early"))?;
        let bytes = &self.data[self.pos..end];
        self.pos = end;
        Ok(bytes)
    }
    fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }
    fn u32(&mut self) -> Result<u32> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    /// An unsigned integer of 0, 4 or 8 bytes (iloc's field sizes); 2 is accepted too.
    fn sized(&mut self, size: u8) -> Result<u64> {
        match size {
            0 => Ok(0),
            2 => Ok(u64::from(self.u16()?)),
            4 => Ok(u64::from(self.u32()?)),
            8 => {
                let b = self.take(8)?;
                Ok(u64::from_be_bytes(b.try_into().expect("8 bytes")))
            }
            _ => Err(corrupt("iloc field size")),
        }
    }
    fn id(&mut self, wide: bool) -> Result<u32> {
        if wide {
            self.u32()
        } else {
            self.u16().map(u32::from)
        }
    }
    fn fourcc(&mut self) -> Result<[u8; 4]> {
        Ok(self.take(4)?.try_into().expect("4 bytes"))
    }
    /// Version and flags of a full box.
    fn full(&mut self) -> Result<(u8, u32)> {
        let v = self.u32()?;
        Ok(((v >> 24) as u8, v & 0x00FF_FFFF))
    }
    fn rest(&mut self) -> &'a [u8] {
        let rest = &self.data[self.pos..];
        self.pos = self.data.len();
        rest
    }
}

/// Iterates the boxes in `data`: (type, body).
fn boxes(data: &[u8]) -> impl Iterator<Item = Result<([u8; 4], &[u8])>> {
    let mut pos = 0usize;
    let mut failed = false;
    std::iter::from_fn(move || {
        if failed || pos + 8 > data.len() {
            return None;
        }
        let mut r = Reader::new(&data[pos..]);
        let parsed = (|| {
            let size = u64::from(r.u32()?);
            let kind = r.fourcc()?;
            let (header, size) = match size {
                0 => (8, (data.len() - pos) as u64),
                1 => {
                    let large = r.sized(8)?;
                    (16, large)
                }
                s => (8, s),
            };
            let size = usize::try_from(size).map_err(|_| corrupt("box size"))?;
            if size < header || pos.checked_add(size).is_none_or(|end| end > data.len()) {
                return Err(corrupt("a box is larger than the file"));
            }
            Ok((kind, &data[pos + header..pos + size], size))
        })();
        match parsed {
            Ok((kind, body, size)) => {
                pos += size;
                Some(Ok((kind, body)))
            }
            Err(e) => {
                failed = true;
                Some(Err(e))
            }
        }
    })
}

fn find_box<'a>(data: &'a [u8], kind: &[u8; 4]) -> Result<Option<&'a [u8]>> {
    for entry in boxes(data) {
        let (k, body) = entry?;
        if &k == kind {
            return Ok(Some(body));
        }
    }
    Ok(None)
}

/// The body of the first top-level box of `kind` (JPEG XL containers use the same box syntax).
pub fn top_level_box<'a>(file: &'a [u8], kind: &[u8; 4]) -> Option<&'a [u8]> {
    boxes(file)
        .map_while(|entry| entry.ok())
        .find(|(k, _)| k == kind)
        .map(|(_, body)| body)
}

/// The brands in `ftyp` (major first), or none when the file does not start with one.
pub fn brands(file: &[u8]) -> Vec<[u8; 4]> {
    let Some(Ok((kind, body))) = boxes(file).next() else {
        return Vec::new();
    };
    if &kind != b"ftyp" || body.len() < 8 {
        return Vec::new();
    }
    let mut out = vec![body[0..4].try_into().expect("4 bytes")];
    out.extend(
        body[8..]
            .chunks_exact(4)
            .map(|c| <[u8; 4]>::try_from(c).expect("4 bytes")),
    );
    out
}

/// Parses the container's `meta` box.
pub fn parse(file: &[u8]) -> Result<Container<'_>> {
    let brands = brands(file);
    if brands.is_empty() {
        return Err(corrupt("no ftyp box"));
    }
    let meta = find_box(file, b"meta")?.ok_or_else(|| corrupt("no meta box"))?;
    let mut r = Reader::new(meta);
    r.full()?;
    let children = r.rest();
    let mut primary_id = None;
    let mut locations = BTreeMap::new();
    let mut kinds: BTreeMap<u32, [u8; 4]> = BTreeMap::new();
    let mut references: Vec<Reference> = Vec::new();
    let mut properties: Vec<([u8; 4], &[u8])> = Vec::new();
    let mut associations: BTreeMap<u32, Vec<usize>> = BTreeMap::new();
    let mut idat = None;
    for entry in boxes(children) {
        let (kind, body) = entry?;
        match &kind {
            b"pitm" => {
                let mut r = Reader::new(body);
                let (version, _) = r.full()?;
                primary_id = Some(r.id(version != 0)?);
            }
            b"iloc" => locations = parse_iloc(body)?,
            b"iinf" => kinds = parse_iinf(body)?,
            b"iref" => references = parse_iref(body)?,
            b"iprp" => {
                let ipco = find_box(body, b"ipco")?.ok_or_else(|| corrupt("no ipco box"))?;
                for entry in boxes(ipco) {
                    properties.push(entry?);
                    if properties.len() > MAX_ENTRIES {
                        return Err(corrupt("too many properties"));
                    }
                }
                for entry in boxes(body) {
                    let (kind, body) = entry?;
                    if &kind == b"ipma" {
                        parse_ipma(body, &mut associations)?;
                    }
                }
            }
            b"idat" => idat = Some(body),
            _ => {}
        }
    }
    let primary_id = primary_id.ok_or_else(|| corrupt("no pitm box"))?;
    let mut items = BTreeMap::new();
    for (&id, &kind) in &kinds {
        let mut props = Properties::default();
        for &index in associations.get(&id).map(Vec::as_slice).unwrap_or(&[]) {
            let Some(&(kind, body)) = index.checked_sub(1).and_then(|i| properties.get(i)) else {
                continue; // index 0 means "no property"; out of range is ignored like libheif
            };
            read_property(&kind, body, &mut props)?;
        }
        items.insert(
            id,
            Item {
                id,
                kind,
                properties: props,
            },
        );
    }
    let primary = items
        .get(&primary_id)
        .cloned()
        .ok_or_else(|| corrupt("the primary item has no infe entry"))?;
    let refs_from = |kind: [u8; 4], from: u32| {
        references
            .iter()
            .filter(move |(k, f, _)| *k == kind && *f == from)
            .flat_map(|(_, _, to)| to.iter().copied())
    };
    let alpha = references
        .iter()
        .filter(|(k, _, to)| k == b"auxl" && to.contains(&primary_id))
        .filter_map(|(_, from, _)| items.get(from))
        .find(|item| {
            item.properties
                .aux_type
                .as_deref()
                .is_some_and(|t| ALPHA_URNS.contains(&t))
        })
        .cloned();
    let premultiplied = alpha
        .as_ref()
        .is_some_and(|a| refs_from(*b"prem", primary_id).any(|to| to == a.id));
    let exif_id = references
        .iter()
        .filter(|(k, _, to)| k == b"cdsc" && to.contains(&primary_id))
        .map(|(_, from, _)| *from)
        .find(|from| items.get(from).is_some_and(|i| &i.kind == b"Exif"));
    let mut container = Container {
        file,
        idat,
        brands,
        primary,
        grid: None,
        alpha,
        premultiplied,
        items,
        locations,
        exif_id,
    };
    if &container.primary.kind == b"grid" {
        let tiles: Vec<u32> = refs_from(*b"dimg", primary_id).collect();
        container.grid = Some(container.parse_grid(tiles)?);
    }
    Ok(container)
}

fn parse_iloc(body: &[u8]) -> Result<BTreeMap<u32, Location>> {
    let mut r = Reader::new(body);
    let (version, _) = r.full()?;
    if version > 2 {
        return Err(corrupt("iloc version"));
    }
    let sizes = r.u8()?;
    let (offset_size, length_size) = (sizes >> 4, sizes & 0x0F);
    let sizes = r.u8()?;
    let base_offset_size = sizes >> 4;
    let index_size = if version >= 1 { sizes & 0x0F } else { 0 };
    let count = if version < 2 {
        u32::from(r.u16()?)
    } else {
        r.u32()?
    };
    let mut out = BTreeMap::new();
    for _ in 0..count {
        if out.len() >= MAX_ENTRIES {
            return Err(corrupt("too many iloc entries"));
        }
        let id = r.id(version == 2)?;
        let construction_method = if version >= 1 {
            (r.u16()? & 0x0F) as u8
        } else {
            0
        };
        let _data_reference_index = r.u16()?;
        let base_offset = r.sized(base_offset_size)?;
        let extent_count = r.u16()?;
        let mut extents = Vec::new();
        for _ in 0..extent_count {
            r.sized(index_size)?;
            let offset = r.sized(offset_size)?;
            let length = r.sized(length_size)?;
            extents.push((offset, length));
        }
        out.insert(
            id,
            Location {
                construction_method,
                base_offset,
                extents,
            },
        );
    }
    Ok(out)
}

fn parse_iinf(body: &[u8]) -> Result<BTreeMap<u32, [u8; 4]>> {
    let mut r = Reader::new(body);
    let (version, _) = r.full()?;
    if version == 0 {
        r.u16()?;
    } else {
        r.u32()?;
    }
    let mut out = BTreeMap::new();
    for entry in boxes(r.rest()) {
        let (kind, body) = entry?;
        if &kind != b"infe" {
            continue;
        }
        let mut r = Reader::new(body);
        let (version, _) = r.full()?;
        if version < 2 {
            continue; // v0/v1 entries describe files, not images
        }
        let id = r.id(version >= 3)?;
        let _protection = r.u16()?;
        let kind = r.fourcc()?;
        out.insert(id, kind);
        if out.len() > MAX_ENTRIES {
            return Err(corrupt("too many items"));
        }
    }
    Ok(out)
}

fn parse_iref(body: &[u8]) -> Result<Vec<Reference>> {
    let mut r = Reader::new(body);
    let (version, _) = r.full()?;
    let wide = version != 0;
    let mut out = Vec::new();
    for entry in boxes(r.rest()) {
        let (kind, body) = entry?;
        let mut r = Reader::new(body);
        let from = r.id(wide)?;
        let count = r.u16()?;
        let mut to = Vec::new();
        for _ in 0..count {
            to.push(r.id(wide)?);
        }
        out.push((kind, from, to));
        if out.len() > MAX_ENTRIES {
            return Err(corrupt("too many references"));
        }
    }
    Ok(out)
}

fn parse_ipma(body: &[u8], out: &mut BTreeMap<u32, Vec<usize>>) -> Result<()> {
    let mut r = Reader::new(body);
    let (version, flags) = r.full()?;
    let count = r.u32()?;
    for _ in 0..count {
        if out.len() >= MAX_ENTRIES {
            return Err(corrupt("too many ipma entries"));
        }
        let id = r.id(version >= 1)?;
        let n = r.u8()?;
        let list = out.entry(id).or_default();
        for _ in 0..n {
            let index = if flags & 1 != 0 {
                usize::from(r.u16()? & 0x7FFF)
            } else {
                usize::from(r.u8()? & 0x7F)
            };
            list.push(index);
        }
    }
    Ok(())
}

fn read_property(kind: &[u8; 4], body: &[u8], props: &mut Properties) -> Result<()> {
    let mut r = Reader::new(body);
    match kind {
        b"ispe" => {
            r.full()?;
            props.size = Some((r.u32()?, r.u32()?));
        }
        b"colr" => match &r.fourcc()? {
            b"nclx" => {
                let cicp = Cicp {
                    primaries: r.u16()?,
                    transfer: r.u16()?,
                    matrix: r.u16()?,
                    full_range: r.u8()? & 0x80 != 0,
                };
                props.nclx = Some(cicp);
                if !matches!(props.colour, Some(Colour::Icc(_))) {
                    props.colour = Some(Colour::Nclx(cicp));
                }
            }
            b"prof" | b"rICC" => props.colour = Some(Colour::Icc(r.rest().to_vec())),
            _ => {}
        },
        b"irot" => {
            let turns = r.u8()? & 3;
            if turns != 0 {
                props.transforms.push(Transform::RotateCcw(turns));
            }
        }
        b"imir" => props.transforms.push(if r.u8()? & 1 == 0 {
            Transform::MirrorVertical
        } else {
            Transform::MirrorHorizontal
        }),
        b"clap" => props.transforms.push(Transform::CleanAperture),
        b"pixi" => {
            r.full()?;
            if r.u8()? > 0 {
                props.bit_depth = Some(r.u8()?);
            }
        }
        b"av1C" => {
            let _marker = r.u8()?;
            let _profile = r.u8()?;
            let flags = r.u8()?;
            let depth = match (flags & 0x40 != 0, flags & 0x20 != 0) {
                (true, true) => 12,
                (true, false) => 10,
                _ => 8,
            };
            props.bit_depth.get_or_insert(depth);
            props.monochrome = flags & 0x10 != 0;
        }
        b"auxC" => {
            r.full()?;
            let rest = r.rest();
            let end = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
            props.aux_type = Some(String::from_utf8_lossy(&rest[..end]).into_owned());
        }
        _ => {}
    }
    Ok(())
}

impl<'a> Container<'a> {
    /// Whether the file declares an AVIF brand (else it is HEIC/HEIF).
    pub fn is_avif(&self) -> bool {
        self.brands.iter().any(|b| b == b"avif" || b == b"avis")
    }

    /// An item by id.
    pub fn item(&self, id: u32) -> Option<&Item> {
        self.items.get(&id)
    }

    /// The coded bytes of an item, its `iloc` extents joined.
    pub fn data(&self, id: u32) -> Result<Vec<u8>> {
        let location = self
            .locations
            .get(&id)
            .ok_or_else(|| corrupt("an item has no location"))?;
        let source = match location.construction_method {
            0 => self.file,
            1 => self
                .idat
                .ok_or_else(|| corrupt("an item is in a missing idat box"))?,
            _ => {
                return Err(PipelineError::unsupported(
                    "HEIF item constructed from other items (iloc construction method 2) is not supported",
                ));
            }
        };
        let mut out = Vec::new();
        for &(offset, length) in &location.extents {
            let start = location
                .base_offset
                .checked_add(offset)
                .and_then(|s| usize::try_from(s).ok())
                .filter(|&s| s <= source.len())
                .ok_or_else(|| corrupt("item data lies outside the file"))?;
            let end = if length == 0 {
                source.len()
            } else {
                usize::try_from(length)
                    .ok()
                    .and_then(|l| start.checked_add(l))
                    .filter(|&e| e <= source.len())
                    .ok_or_else(|| corrupt("item data lies outside the file (truncated?)"))?
            };
            out.extend_from_slice(&source[start..end]);
        }
        Ok(out)
    }

    /// The EXIF of the primary item from its `Exif` item, starting at the TIFF header (the item's
    /// 4-byte `exif_tiff_header_offset` is honoured; writers that get it wrong are found by a search).
    pub fn exif(&self) -> Option<Vec<u8>> {
        let data = self.data(self.exif_id?).ok()?;
        let offset = u32::from_be_bytes(data.get(0..4)?.try_into().ok()?) as usize;
        let tiff = |at: usize| {
            data.get(at..at + 4)
                .is_some_and(|h| h == b"II*\0" || h == b"MM\0*")
        };
        let start = if tiff(4 + offset) {
            4 + offset
        } else {
            (0..data.len()).find(|&at| tiff(at))?
        };
        Some(data[start..].to_vec())
    }

    /// The displayed size: `ispe` of the primary item (the grid's canvas for a grid), before
    /// rotation.
    pub fn coded_size(&self) -> Option<(u32, u32)> {
        match &self.grid {
            Some(grid) => Some((grid.width, grid.height)),
            None => self.primary.properties.size,
        }
    }

    fn parse_grid(&self, tiles: Vec<u32>) -> Result<Grid> {
        let data = self.data(self.primary.id)?;
        let mut r = Reader::new(&data);
        let _version = r.u8()?;
        let flags = r.u8()?;
        let rows = u32::from(r.u8()?) + 1;
        let columns = u32::from(r.u8()?) + 1;
        let (width, height) = if flags & 1 != 0 {
            (r.u32()?, r.u32()?)
        } else {
            (u32::from(r.u16()?), u32::from(r.u16()?))
        };
        if tiles.len() as u64 != u64::from(rows) * u64::from(columns) {
            return Err(corrupt("grid tile count does not match rows × columns"));
        }
        Ok(Grid {
            rows,
            columns,
            width,
            height,
            tiles,
        })
    }
}

/// The EXIF orientation (1–8) equivalent to HEIF's `irot`/`imir` transforms applied in order, or
/// `None` when the item has a `clap` crop (the decoder must then apply everything itself).
///
/// Derivation: with R = 90° clockwise and H = left↔right, EXIF 1…8 are I, H, R², V, H∘R, R, V∘R,
/// R³ (V = H∘R²). The running transform is kept as H^f∘R^k: a later R^j gives H^f∘R^(k±j) (R∘H =
/// H∘R³), a later H flips f, a later V flips f and adds two turns.
pub fn orientation(transforms: &[Transform]) -> Option<u8> {
    let (mut flip, mut turns) = (false, 0u8);
    for transform in transforms {
        match *transform {
            Transform::RotateCcw(ccw) => {
                let cw = (4 - ccw % 4) % 4;
                turns = if flip {
                    (turns + 4 - cw) % 4
                } else {
                    (turns + cw) % 4
                };
            }
            Transform::MirrorHorizontal => flip = !flip,
            Transform::MirrorVertical => {
                flip = !flip;
                turns = (turns + 2) % 4;
            }
            Transform::CleanAperture => return None,
        }
    }
    Some(match (flip, turns) {
        (false, 0) => 1,
        (false, 1) => 6,
        (false, 2) => 3,
        (false, _) => 8,
        (true, 0) => 2,
        (true, 1) => 5,
        (true, 2) => 4,
        (true, _) => 7,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::orient::orient;
    use crate::pixels::Pixels;

    /// A 3×2 image whose pixels are all different.
    fn pattern() -> Pixels {
        Pixels::new(3, 2, 3, (0..18).collect())
    }

    fn rotate_ccw(p: &Pixels) -> Pixels {
        orient(p.clone(), 8)
    }
    fn mirror_h(p: &Pixels) -> Pixels {
        orient(p.clone(), 2)
    }
    fn mirror_v(p: &Pixels) -> Pixels {
        orient(p.clone(), 4)
    }

    /// Applies the transforms one by one (with the orient step's basic operations) and checks the
    /// single EXIF orientation gives the same pixels, for every sequence of up to three transforms.
    #[test]
    fn composed_transforms_equal_one_exif_orientation() {
        let ops = [
            Transform::RotateCcw(1),
            Transform::RotateCcw(2),
            Transform::RotateCcw(3),
            Transform::MirrorHorizontal,
            Transform::MirrorVertical,
        ];
        let mut sequences: Vec<Vec<Transform>> = vec![vec![]];
        for _ in 0..3 {
            let longer: Vec<Vec<Transform>> = sequences
                .iter()
                .flat_map(|s| {
                    ops.iter().map(move |op| {
                        let mut s = s.clone();
                        s.push(*op);
                        s
                    })
                })
                .collect();
            sequences.extend(longer);
        }
        for sequence in sequences {
            let mut step = pattern();
            for t in &sequence {
                step = match t {
                    Transform::RotateCcw(n) => (0..*n).fold(step, |p, _| rotate_ccw(&p)),
                    Transform::MirrorHorizontal => mirror_h(&step),
                    Transform::MirrorVertical => mirror_v(&step),
                    Transform::CleanAperture => unreachable!(),
                };
            }
            let o = orientation(&sequence).unwrap();
            let once = orient(pattern(), o);
            assert_eq!(
                (once.width, once.height, &once.data),
                (step.width, step.height, &step.data),
                "{sequence:?} → {o}"
            );
        }
        assert_eq!(orientation(&[Transform::RotateCcw(3)]), Some(6));
        assert_eq!(orientation(&[Transform::CleanAperture]), None);
    }

    fn boxed(kind: &[u8; 4], body: &[u8]) -> Vec<u8> {
        let mut out = ((body.len() + 8) as u32).to_be_bytes().to_vec();
        out.extend_from_slice(kind);
        out.extend_from_slice(body);
        out
    }

    fn full(kind: &[u8; 4], version: u8, body: &[u8]) -> Vec<u8> {
        let mut b = vec![version, 0, 0, 0];
        b.extend_from_slice(body);
        boxed(kind, &b)
    }

    /// A minimal AVIF header declaring `width`×`height` with no image data.
    pub(crate) fn avif_header(width: u32, height: u32) -> Vec<u8> {
        let mut ispe = width.to_be_bytes().to_vec();
        ispe.extend(height.to_be_bytes());
        let ipco = boxed(b"ipco", &full(b"ispe", 0, &ispe));
        let ipma = full(b"ipma", 0, &[0, 0, 0, 1, 0, 1, 1, 0x81]);
        let mut iprp = ipco;
        iprp.extend(ipma);
        let mut infe = vec![0, 1, 0, 0];
        infe.extend(b"av01\0");
        let mut iinf = vec![0, 1];
        iinf.extend(full(b"infe", 2, &infe));
        let iloc = full(
            b"iloc",
            0,
            &[0x44, 0x00, 0, 1, 0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1],
        );
        let mut meta = full(b"pitm", 0, &[0, 1]);
        meta.extend(full(b"iinf", 0, &iinf));
        meta.extend(iloc);
        meta.extend(boxed(b"iprp", &iprp));
        let mut file = boxed(b"ftyp", b"avif\0\0\0\0avifmif1");
        file.extend(full(b"meta", 0, &meta));
        file
    }

    #[test]
    fn reads_ispe_without_image_data_and_survives_every_truncation() {
        let file = avif_header(17_000, 17_000);
        let c = parse(&file).unwrap();
        assert!(c.is_avif());
        assert_eq!(c.coded_size(), Some((17_000, 17_000)));
        assert_eq!(&c.primary.kind, b"av01");
        for cut in 0..file.len() {
            let _ = parse(&file[..cut]); // an error or a partial parse, never a panic
        }
    }
}
