//! Source limits, checked from the header before any pixel buffer is allocated.

use crate::error::{PipelineError, Result};

/// Limits on a source image. Over-limit input is a permanent error naming the limit and the value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Largest accepted source object in bytes. Default: 50 MB (50 000 000).
    pub max_source_bytes: u64,
    /// Largest accepted width × height in pixels. Default: 100 MP (100 000 000).
    pub max_pixels: u64,
    /// Largest accepted width in pixels. Default: 30 000.
    pub max_width: u32,
    /// Largest accepted height in pixels. Default: 30 000.
    pub max_height: u32,
    /// Most frames an animated GIF/WebP may have. Default: 1 000.
    pub max_frames: u32,
    /// Most memory one decode may need, estimated from the header (pixel buffers, plus the
    /// coefficient buffers of a progressive JPEG). Default: 1 GiB.
    pub max_decode_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_source_bytes: 50_000_000,
            max_pixels: 100_000_000,
            max_width: 30_000,
            max_height: 30_000,
            max_frames: 1_000,
            max_decode_bytes: 1 << 30,
        }
    }
}

impl Limits {
    /// Checks the size of the source object; call before download when the size is known.
    pub fn check_bytes(&self, bytes: u64) -> Result<()> {
        if bytes > self.max_source_bytes {
            return Err(PipelineError::over_limit(format!(
                "source is {bytes} bytes, over the limit of {} bytes (max_source_bytes); \
                 upload a smaller file or raise the limit",
                self.max_source_bytes
            )));
        }
        Ok(())
    }

    /// Checks header dimensions; call before decoding.
    pub fn check_dimensions(&self, width: u32, height: u32) -> Result<()> {
        let pixels = u64::from(width) * u64::from(height);
        if width == 0 || height == 0 {
            return Err(PipelineError::corrupt(format!(
                "header declares an empty image ({width}x{height})"
            )));
        }
        if width > self.max_width {
            return Err(PipelineError::over_limit(format!(
                "image is {width} px wide, over the limit of {} px (max_width)",
                self.max_width
            )));
        }
        if height > self.max_height {
            return Err(PipelineError::over_limit(format!(
                "image is {height} px high, over the limit of {} px (max_height)",
                self.max_height
            )));
        }
        if pixels > self.max_pixels {
            return Err(PipelineError::over_limit(format!(
                "image is {width}x{height} = {:.1} MP, over the limit of {:.1} MP (max_pixels)",
                pixels as f64 / 1e6,
                self.max_pixels as f64 / 1e6
            )));
        }
        Ok(())
    }

    /// Checks the frame count of an animation; call before decoding.
    pub fn check_frames(&self, frames: u32) -> Result<()> {
        if frames > self.max_frames {
            return Err(PipelineError::over_limit(format!(
                "animation has {frames} frames, over the limit of {} frames (max_frames); \
                 upload a shorter animation or raise the limit",
                self.max_frames
            )));
        }
        Ok(())
    }

    /// Checks the memory a decode needs (from [`crate::plan::Plan::decode_bytes`]); call before decoding.
    pub fn check_decode_bytes(&self, bytes: u64) -> Result<()> {
        if bytes > self.max_decode_bytes {
            return Err(PipelineError::over_limit(format!(
                "decoding needs about {} MiB, over the budget of {} MiB (max_decode_bytes); \
                 progressive and 16-bit images need the most; re-save the image smaller \
                 or as a baseline JPEG, or raise the budget",
                bytes >> 20,
                self.max_decode_bytes >> 20
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;

    #[test]
    fn rejects_each_limit_with_value_and_limit() {
        let limits = Limits {
            max_source_bytes: 10,
            max_pixels: 100,
            max_width: 20,
            max_height: 30,
            max_frames: 3,
            max_decode_bytes: 1 << 20,
        };
        assert!(
            limits
                .check_frames(4)
                .unwrap_err()
                .message
                .contains("max_frames")
        );
        assert!(limits.check_frames(3).is_ok());
        let e = limits.check_decode_bytes(3 << 20).unwrap_err();
        assert!(
            e.message.contains("3 MiB") && e.message.contains("max_decode_bytes"),
            "{}",
            e.message
        );
        let e = limits.check_bytes(11).unwrap_err();
        assert_eq!(e.kind, ErrorKind::OverLimit);
        assert!(
            e.message.contains("11 bytes") && e.message.contains("10 bytes"),
            "{}",
            e.message
        );
        assert!(limits.check_bytes(10).is_ok());
        assert!(
            limits
                .check_dimensions(21, 1)
                .unwrap_err()
                .message
                .contains("max_width")
        );
        assert!(
            limits
                .check_dimensions(1, 31)
                .unwrap_err()
                .message
                .contains("max_height")
        );
        assert!(
            limits
                .check_dimensions(20, 6)
                .unwrap_err()
                .message
                .contains("max_pixels")
        );
        assert!(limits.check_dimensions(10, 10).is_ok());
        assert_eq!(
            limits.check_dimensions(0, 10).unwrap_err().kind,
            ErrorKind::Corrupt
        );
    }

    #[test]
    fn default_allows_a_24_megapixel_photo_but_not_a_bomb() {
        let limits = Limits::default();
        assert!(limits.check_dimensions(4000, 6000).is_ok());
        assert!(limits.check_dimensions(65_500, 65_500).is_err());
        assert!(limits.check_dimensions(20_000, 14_000).is_err());
    }
}
