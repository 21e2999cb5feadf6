//! The in-memory image passed between steps: 8-bit interleaved RGB or RGBA, sRGB-encoded.

/// An 8-bit interleaved image with 3 (RGB) or 4 (RGBA, straight alpha) channels.
#[derive(Clone, PartialEq, Eq)]
pub struct Pixels {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// 3 for RGB, 4 for RGBA.
    pub channels: u8,
    /// `width * height * channels` bytes, rows top to bottom, no padding.
    pub data: Vec<u8>,
}

impl std::fmt::Debug for Pixels {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Pixels({}x{}x{})",
            self.width, self.height, self.channels
        )
    }
}

impl Pixels {
    /// Wraps a buffer; panics if its length does not match (a bug, never input-dependent).
    pub fn new(width: u32, height: u32, channels: u8, data: Vec<u8>) -> Self {
        assert!(channels == 3 || channels == 4, "channels must be 3 or 4");
        assert_eq!(
            data.len(),
            width as usize * height as usize * channels as usize,
            "pixel buffer size"
        );
        Self {
            width,
            height,
            channels,
            data,
        }
    }

    /// True when the image has an alpha channel.
    pub fn has_alpha(&self) -> bool {
        self.channels == 4
    }

    /// Bytes per row.
    pub fn stride(&self) -> usize {
        self.width as usize * self.channels as usize
    }

    /// Width × height.
    pub fn pixel_count(&self) -> u64 {
        u64::from(self.width) * u64::from(self.height)
    }

    /// Drops the alpha channel by compositing onto `background` (RGB); RGB input is returned as is.
    pub fn flatten(self, background: [u8; 3]) -> Pixels {
        if !self.has_alpha() {
            return self;
        }
        let mut rgb = Vec::with_capacity(self.pixel_count() as usize * 3);
        for px in self.data.chunks_exact(4) {
            let a = u32::from(px[3]);
            for c in 0..3 {
                let blended =
                    (u32::from(px[c]) * a + u32::from(background[c]) * (255 - a) + 127) / 255;
                rgb.push(blended as u8);
            }
        }
        Pixels::new(self.width, self.height, 3, rgb)
    }

    /// Turns premultiplied RGBA (colour already multiplied by alpha) into straight alpha.
    pub fn unpremultiply(mut self) -> Pixels {
        if self.has_alpha() {
            for px in self.data.chunks_exact_mut(4) {
                let a = u32::from(px[3]);
                if a > 0 && a < 255 {
                    for c in &mut px[..3] {
                        *c = ((u32::from(*c) * 255 + a / 2) / a).min(255) as u8;
                    }
                }
            }
        }
        self
    }

    /// Drops a fully opaque alpha channel (saves work downstream); keeps real transparency.
    pub fn drop_opaque_alpha(self) -> Pixels {
        if self.has_alpha() && self.data.chunks_exact(4).all(|px| px[3] == 255) {
            return self.flatten([0, 0, 0]);
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flatten_blends_onto_background() {
        let px = Pixels::new(2, 1, 4, vec![0, 0, 0, 0, 0, 0, 0, 255]);
        let flat = px.flatten([255, 255, 255]);
        assert_eq!(flat.channels, 3);
        assert_eq!(flat.data, vec![255, 255, 255, 0, 0, 0]);
    }

    #[test]
    fn unpremultiply_restores_straight_colour() {
        let px = Pixels::new(2, 1, 4, vec![64, 32, 0, 128, 9, 9, 9, 0]).unpremultiply();
        assert_eq!(px.data, vec![128, 64, 0, 128, 9, 9, 9, 0]);
    }

    #[test]
    fn opaque_alpha_is_dropped_but_transparency_is_kept() {
        let opaque = Pixels::new(1, 1, 4, vec![1, 2, 3, 255]).drop_opaque_alpha();
        assert_eq!(opaque.data, vec![1, 2, 3]);
        let transparent = Pixels::new(1, 1, 4, vec![1, 2, 3, 7]).drop_opaque_alpha();
        assert_eq!(transparent.channels, 4);
    }
}
