//! The entropy-coded segment: a bit reader over JPEG's byte-stuffed data (`FF 00` is a data byte,
//! any other `FF xx` a marker that ends the segment) and Huffman tables with a 9-bit lookahead.
//!
//! Reading past the segment's end feeds zero bits, as libjpeg does, but counts them: a scan that
//! consumed any is truncated or corrupt ([`BitReader::overran`]), and the caller gives up on it.

use super::Refusal;

/// Codes up to this long decode with one table lookup; longer ones walk the canonical code ranges.
const LOOKUP_BITS: u32 = 9;

/// One Huffman table (T.81 Annex C), canonical codes from the 16 length counts of a DHT segment.
pub struct Huffman {
    /// `length << 8 | symbol` for every `LOOKUP_BITS`-bit prefix that starts a short code; 0 otherwise.
    lookup: [u16; 1 << LOOKUP_BITS],
    /// Largest code of each length (-1 when there is none), indexed by length 1..=16.
    max_code: [i32; 17],
    /// Added to a code of that length to index `symbols`.
    offset: [i32; 17],
    symbols: Vec<u8>,
}

impl Huffman {
    /// Builds a table from a DHT segment's `counts` (codes per length 1..=16) and `symbols`.
    pub fn new(counts: &[u8; 16], symbols: &[u8]) -> Result<Self, Refusal> {
        let total: usize = counts.iter().map(|&c| usize::from(c)).sum();
        if total > 256 || total != symbols.len() {
            return Err(Refusal::Corrupt("a Huffman table has a bad symbol count"));
        }
        let mut table = Huffman {
            lookup: [0; 1 << LOOKUP_BITS],
            max_code: [-1; 17],
            offset: [0; 17],
            symbols: symbols.to_vec(),
        };
        let mut code: u32 = 0;
        let mut index: usize = 0;
        for length in 1..=16u32 {
            let count = u32::from(counts[length as usize - 1]);
            if count > 0 {
                table.offset[length as usize] = index as i32 - code as i32;
                for _ in 0..count {
                    // Codes of one length must fit in that many bits (an over-full table is corrupt).
                    if code >= 1 << length {
                        return Err(Refusal::Corrupt("a Huffman table has more codes than fit"));
                    }
                    if length <= LOOKUP_BITS {
                        let shift = LOOKUP_BITS - length;
                        let entry = (length as u16) << 8 | u16::from(symbols[index]);
                        let first = (code << shift) as usize;
                        table.lookup[first..first + (1 << shift)].fill(entry);
                    }
                    code += 1;
                    index += 1;
                }
                table.max_code[length as usize] = code as i32 - 1;
            }
            code <<= 1;
        }
        Ok(table)
    }
}

/// Reads bits MSB-first from an entropy-coded segment starting at `pos`.
pub struct BitReader<'a> {
    data: &'a [u8],
    pos: usize,
    /// Buffered bits, left-aligned: the next bit is bit 63.
    acc: u64,
    /// How many bits of `acc` are valid.
    count: u32,
    /// How many of those (the last ones) are zero bits fed after the segment ended.
    fed: u32,
}

impl<'a> BitReader<'a> {
    pub fn new(data: &'a [u8], pos: usize) -> Self {
        Self {
            data,
            pos,
            acc: 0,
            count: 0,
            fed: 0,
        }
    }

    /// Where the segment's unread bytes start (after [`BitReader::align`], the next marker).
    pub fn position(&self) -> usize {
        self.pos
    }

    /// True when more bits were consumed than the segment holds.
    pub fn overran(&self) -> bool {
        self.count < self.fed
    }

    /// Continues at byte `pos` (after a restart marker) with nothing buffered.
    pub fn seek(&mut self, pos: usize) {
        self.align();
        self.pos = pos;
    }

    /// Drops the buffered bits (the rest of a byte is padding), as at a restart marker or scan end.
    /// The reader stops at a marker, so [`BitReader::position`] is then at it, or before bytes that
    /// the marker search skips (libjpeg warns of "extraneous bytes" there and goes on).
    pub fn align(&mut self) {
        self.acc = 0;
        self.count = 0;
        self.fed = 0;
    }

    #[inline]
    fn fill(&mut self) {
        // Fast path: the next 8 bytes hold no FF (no stuffing, no marker): take whole bytes at once.
        if self.fed == 0
            && let Some(chunk) = self.data.get(self.pos..self.pos + 8)
        {
            let word = u64::from_be_bytes(chunk.try_into().expect("8 bytes"));
            let inverted = !word;
            let has_ff =
                inverted.wrapping_sub(0x0101_0101_0101_0101) & !inverted & 0x8080_8080_8080_8080;
            let take = (63 - self.count.min(63)) / 8;
            if has_ff == 0 && take > 0 {
                self.acc |= (word >> (64 - 8 * take)) << (64 - self.count - 8 * take);
                self.count += 8 * take;
                self.pos += take as usize;
                return;
            }
        }
        while self.count <= 56 {
            let byte = match self.data.get(self.pos) {
                Some(&0xFF) if self.data.get(self.pos + 1) == Some(&0x00) => {
                    self.pos += 2;
                    0xFF
                }
                Some(&0xFF) | None => {
                    // A marker (or the end of the file): feed zeros and stay put.
                    self.fed += 8;
                    0
                }
                Some(&byte) => {
                    self.pos += 1;
                    byte
                }
            };
            self.acc |= u64::from(byte) << (56 - self.count);
            self.count += 8;
        }
    }

    #[inline]
    fn consume(&mut self, bits: u32) {
        self.acc <<= bits;
        self.count -= bits;
    }

    /// One bit.
    #[inline]
    pub fn bit(&mut self) -> bool {
        if self.count < 1 {
            self.fill();
        }
        let bit = self.acc >> 63 != 0;
        self.consume(1);
        bit
    }

    /// `bits` (1..=16) as an unsigned number.
    #[inline]
    pub fn bits(&mut self, bits: u32) -> u32 {
        if self.count < bits {
            self.fill();
        }
        let value = (self.acc >> (64 - bits)) as u32;
        self.consume(bits);
        value
    }

    /// A `size`-bit magnitude category value, sign-extended (T.81 F.2.2.1, EXTEND).
    #[inline]
    pub fn extend(&mut self, size: u32) -> i32 {
        let value = self.bits(size) as i32;
        if value < 1 << (size - 1) {
            value - (1 << size) + 1
        } else {
            value
        }
    }

    /// The next Huffman-coded symbol.
    #[inline(always)]
    pub fn symbol(&mut self, table: &Huffman) -> Result<u8, Refusal> {
        if self.count < 16 {
            self.fill();
        }
        let entry = table.lookup[(self.acc >> (64 - LOOKUP_BITS)) as usize];
        if entry != 0 {
            self.consume(u32::from(entry >> 8));
            return Ok(entry as u8);
        }
        self.long_symbol(table)
    }

    /// A code longer than the lookup's bits (rare: long codes are the rare symbols).
    #[cold]
    fn long_symbol(&mut self, table: &Huffman) -> Result<u8, Refusal> {
        for length in LOOKUP_BITS + 1..=16 {
            let code = (self.acc >> (64 - length)) as i32;
            if code <= table.max_code[length as usize] {
                self.consume(length);
                let index = code + table.offset[length as usize];
                return table
                    .symbols
                    .get(index as usize)
                    .copied()
                    .ok_or(Refusal::Corrupt("bad Huffman code"));
            }
        }
        Err(Refusal::Corrupt("bad Huffman code"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The standard luminance DC table (T.81 Table K.3).
    fn dc_table() -> Huffman {
        let counts = [0, 1, 5, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0];
        Huffman::new(&counts, &[0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]).unwrap()
    }

    #[test]
    fn decodes_canonical_codes_short_and_long() {
        // Codes: 0→00, 1→010, 2→011, 3→100, 4→101, 5→110, 6→1110, … 11→111111110 (9 bits).
        // Bits: 010 | 1110 | 111111110 | 00 then padding 1s.
        let data = [0b0101_1101, 0b1111_1110, 0b0011_1111];
        let mut reader = BitReader::new(&data, 0);
        let table = dc_table();
        assert_eq!(reader.symbol(&table).unwrap(), 1);
        assert_eq!(reader.symbol(&table).unwrap(), 6);
        assert_eq!(reader.symbol(&table).unwrap(), 11);
        assert_eq!(reader.symbol(&table).unwrap(), 0);
        assert!(!reader.overran());
    }

    #[test]
    fn codes_longer_than_the_lookup_take_the_slow_path() {
        // One code of each length 1..=12: the 12-bit one is 111111111110.
        let mut counts = [0u8; 16];
        counts[..12].fill(1);
        let symbols: Vec<u8> = (1..=12).collect();
        let table = Huffman::new(&counts, &symbols).unwrap();
        let data = [0b1111_1111, 0x00, 0b1110_0000]; // FF is stuffed as FF 00
        let mut reader = BitReader::new(&data, 0);
        assert_eq!(reader.symbol(&table).unwrap(), 12);
        assert_eq!(reader.symbol(&table).unwrap(), 1);
    }

    #[test]
    fn stuffed_bytes_are_data_and_markers_end_the_segment() {
        let data = [0xFF, 0x00, 0x81, 0xFF, 0xD9];
        let mut reader = BitReader::new(&data, 0);
        assert_eq!(reader.bits(8), 0xFF);
        assert_eq!(reader.bits(8), 0x81);
        assert!(!reader.overran());
        assert_eq!(reader.bits(1), 0, "zeros after the marker");
        assert!(reader.overran());
        reader.align();
        assert_eq!(reader.position(), 3, "stopped at the marker");
    }

    #[test]
    fn align_drops_the_buffered_padding() {
        let data = [0xA0, 0xFF, 0x00, 0x12, 0xFF, 0xD0];
        let mut reader = BitReader::new(&data, 0);
        assert_eq!(reader.bits(3), 0b101);
        reader.align();
        assert_eq!(reader.position(), 4, "stopped at the marker");
        assert!(!reader.overran());
    }

    #[test]
    fn the_word_at_a_time_refill_reads_what_the_byte_loop_reads() {
        // Long enough for the 8-byte fast path, with a stuffed FF in the middle and a marker at the end.
        let mut data: Vec<u8> = (1..=20).map(|i| i * 11).collect();
        data.splice(9..9, [0xFF, 0x00]);
        data.extend_from_slice(&[0xFF, 0xD9]);
        let expected: Vec<u8> = (1..=20u8)
            .map(|i| i * 11)
            .flat_map(|b| if b == 99 { vec![b, 0xFF] } else { vec![b] })
            .collect();
        let mut reader = BitReader::new(&data, 0);
        // Odd-sized reads, so refills happen at every alignment.
        let mut bits: Vec<bool> = Vec::new();
        for size in [3u32, 13, 1, 7, 16, 5, 11].iter().cycle().take(30) {
            let value = reader.bits(*size);
            bits.extend((0..*size).rev().map(|i| value >> i & 1 != 0));
        }
        let wanted: Vec<bool> = expected
            .iter()
            .flat_map(|b| (0..8).rev().map(move |i| b >> i & 1 != 0))
            .collect();
        assert_eq!(&bits[..wanted.len()], &wanted[..]);
        assert!(reader.overran(), "read past the marker");
    }

    #[test]
    fn extend_gives_negative_values_below_half_the_range() {
        let data = [0b0111_0000];
        let mut reader = BitReader::new(&data, 0);
        assert_eq!(reader.extend(3), -4, "011 in category 3 is -4");
        assert_eq!(reader.extend(1), 1);
    }

    #[test]
    fn an_over_full_table_is_refused() {
        let mut counts = [0u8; 16];
        counts[0] = 3; // three 1-bit codes
        assert!(Huffman::new(&counts, &[1, 2, 3]).is_err());
        assert!(Huffman::new(&[1; 16], &[0; 15]).is_err(), "count mismatch");
    }
}
