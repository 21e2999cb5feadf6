//! Memory admission: a process runs several images at once, and a few large ones arriving together
//! must not take it past its memory (a Lambda killed for memory redelivers its whole batch; a worker
//! killed by the kernel loses every image in flight). Before decoding, each image's peak is predicted
//! from its header ([`imgpipe_core::memory`]) and the image waits until the predictions already
//! admitted leave room for it. One that does not fit beside anything runs alone; one predicted over
//! the whole process budget fails as `over_limit`, a permanent failure with what to change.
//!
//! The budget for images is the process's memory (`IMGPIPE_MEMORY_MIB`, `--memory-mib`, or the Lambda
//! function's memory) less what the process already holds when it starts (its resident set: code,
//! clients, the runtime) and [`HEADROOM_MIB`] for sockets, logs and allocator slack.

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::failure::Failure;

/// Kept free besides the images: SDK buffers, log lines, allocator fragmentation.
pub const HEADROOM_MIB: u64 = 24;

/// The memory budget of one process, in MiB permits.
#[derive(Debug, Clone)]
pub struct MemoryBudget {
    permits: Arc<Semaphore>,
    /// MiB images may use together.
    images_mib: u64,
    /// The process's whole budget.
    process_mib: u64,
}

/// An image admitted: its share of the budget is held until this is dropped.
#[derive(Debug)]
pub struct Admitted {
    _permit: Option<OwnedSemaphorePermit>,
    /// MiB held.
    pub mib: u64,
    /// True when the image was too large to share the budget and runs alone.
    pub alone: bool,
}

impl MemoryBudget {
    /// A budget of `process_mib`, of which `resident_bytes` (the process's resident set now) is
    /// already in use. At least 1 MiB is left for images whatever the numbers.
    pub fn new(process_mib: u64, resident_bytes: u64) -> Self {
        let held = resident_bytes.div_ceil(1024 * 1024) + HEADROOM_MIB;
        let images_mib = process_mib.saturating_sub(held).max(1);
        Self {
            permits: Arc::new(Semaphore::new(images_mib as usize)),
            images_mib,
            process_mib,
        }
    }

    /// MiB images may use together.
    pub fn images_mib(&self) -> u64 {
        self.images_mib
    }

    /// Waits until an image predicted to peak at `predicted_bytes` fits beside those admitted.
    /// Over the process budget it fails as `over_limit`; over the images' share (but within the
    /// process budget) it waits for the whole share and runs alone. Waiters are served in arrival
    /// order, so a large image is not starved by small ones.
    pub async fn admit(&self, predicted_bytes: u64) -> Result<Admitted, Failure> {
        let mib = predicted_bytes.div_ceil(1024 * 1024).max(1);
        if mib > self.process_mib {
            return Err(Failure::permanent(
                "over_limit",
                format!(
                    "decoding this image is predicted to need {mib} MiB, more than this process's whole memory budget of {} MiB; raise the function's memory (FunctionMemoryMB) or the worker's --memory-mib, or lower IMGPIPE_MAX_PIXELS to refuse such images up front",
                    self.process_mib
                ),
            ));
        }
        let alone = mib > self.images_mib;
        let take = mib.min(self.images_mib);
        let permit = Arc::clone(&self.permits)
            .acquire_many_owned(take as u32)
            .await
            .expect("the admission semaphore is never closed");
        Ok(Admitted {
            _permit: Some(permit),
            mib: take,
            alone,
        })
    }
}

/// This process's resident set in bytes (Linux `/proc/self/statm`; 0 elsewhere).
pub fn resident_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |pages| pages * 4096)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const MIB: u64 = 1024 * 1024;

    #[tokio::test]
    async fn admits_while_predictions_fit_and_waits_otherwise() {
        // 400 MiB process, 100 MiB resident: 276 MiB for images.
        let budget = MemoryBudget::new(400, 100 * MIB);
        assert_eq!(budget.images_mib(), 400 - 100 - HEADROOM_MIB);
        let first = budget.admit(120 * MIB).await.unwrap();
        let second = budget.admit(120 * MIB).await.unwrap();
        assert!(!first.alone && !second.alone);
        // A third 120 MiB does not fit until one of the two ends.
        let third = tokio::time::timeout(Duration::from_millis(50), budget.admit(120 * MIB)).await;
        assert!(third.is_err(), "a third image was admitted over the budget");
        drop(first);
        let third = tokio::time::timeout(Duration::from_millis(50), budget.admit(120 * MIB))
            .await
            .expect("admitted once the first ended")
            .unwrap();
        assert_eq!(third.mib, 120);
        drop((second, third));
    }

    #[tokio::test]
    async fn runs_alone_what_only_fits_alone_and_refuses_what_never_fits() {
        let budget = MemoryBudget::new(400, 100 * MIB);
        let small = budget.admit(10 * MIB).await.unwrap();
        // 350 MiB: over the images' share, within the process budget → waits for everything.
        let waiting =
            tokio::time::timeout(Duration::from_millis(50), budget.admit(350 * MIB)).await;
        assert!(waiting.is_err(), "ran beside another image");
        drop(small);
        let big = budget.admit(350 * MIB).await.unwrap();
        assert!(big.alone);
        assert_eq!(big.mib, budget.images_mib());
        drop(big);

        let error = budget.admit(401 * MIB).await.unwrap_err();
        assert_eq!(error.kind, "over_limit");
        assert!(!error.retryable);
        assert!(error.message.contains("401 MiB"), "{}", error.message);
    }

    #[test]
    fn resident_set_is_read_on_linux() {
        if cfg!(target_os = "linux") {
            assert!(resident_bytes() > MIB, "{}", resident_bytes());
        }
    }
}
