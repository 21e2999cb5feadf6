//! Deadline admission under Lambda. A message is started only while the invocation has time left for
//! it; one not started is returned as a batch item failure, visible again at once, so another
//! invocation takes it. Without this the runtime kills the invocation at its timeout and SQS
//! redelivers the whole batch, finished images included, after the queue's visibility timeout (6× the
//! function timeout), with a receive counted against every message in it.
//!
//! The need of a message is predicted from its source size: a fixed part (fetch, puts, metadata,
//! the response) plus a time per MiB learned from the images this process finished.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

tokio::task_local! {
    /// The deadline of the invocation a message is being settled in (under Lambda), for work that
    /// must stop before it, such as a manifest's fan-out.
    static CURRENT: Option<Deadline>;
}

/// Runs `work` with `deadline` as the [`current`] one.
pub async fn scope<F: std::future::Future>(deadline: Option<Deadline>, work: F) -> F::Output {
    CURRENT.scope(deadline, work).await
}

/// The deadline of the invocation this task runs in; `None` outside Lambda.
pub fn current() -> Option<Deadline> {
    CURRENT.try_with(|d| *d).ok().flatten()
}

/// When the invocation ends (Lambda's `deadline`), as an [`Instant`] of this process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deadline {
    at: Instant,
}

impl Deadline {
    /// The deadline `ms` milliseconds after the Unix epoch (the Runtime API's `Lambda-Runtime-Deadline-Ms`).
    pub fn from_epoch_ms(ms: u64) -> Self {
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let left = Duration::from_millis(ms.saturating_sub(now_ms));
        Self {
            at: Instant::now() + left,
        }
    }

    /// The deadline `left` from now.
    pub fn after(left: Duration) -> Self {
        Self {
            at: Instant::now() + left,
        }
    }

    /// Time left now.
    pub fn left(&self) -> Duration {
        self.at.saturating_duration_since(Instant::now())
    }
}

/// Predicted processing time of a source, learned as the process runs.
#[derive(Debug)]
pub struct ServiceTime {
    /// Milliseconds per MiB of source (an f64's bits): an exponentially weighted mean.
    ms_per_mib: AtomicU64,
}

impl ServiceTime {
    /// Time every message needs besides its pixels: the fetch, the puts, the metadata document,
    /// the event and the invocation's response.
    pub const FIXED: Duration = Duration::from_secs(1);
    /// Milliseconds per MiB of source before any image has finished: a 12 MP JPEG (~3 MiB) on one
    /// Lambda vCPU takes about 1–2 s with the default presets; this starts on the safe side.
    pub const INITIAL_MS_PER_MIB: f64 = 1500.0;
    /// Sources smaller than this teach nothing about the per-MiB time (the fixed part dominates).
    pub const MIN_LEARN_BYTES: u64 = 256 * 1024;
    /// Predictions are this many times the learned mean (the spread between photos of one size).
    pub const SAFETY: f64 = 1.5;
    /// Weight of the newest observation in the mean.
    const ALPHA: f64 = 0.2;

    /// Starts at [`Self::INITIAL_MS_PER_MIB`].
    pub fn new() -> Self {
        Self {
            ms_per_mib: AtomicU64::new(Self::INITIAL_MS_PER_MIB.to_bits()),
        }
    }

    fn rate(&self) -> f64 {
        f64::from_bits(self.ms_per_mib.load(Ordering::Relaxed))
    }

    /// The time a source of `bytes` is predicted to need.
    pub fn predict(&self, bytes: u64) -> Duration {
        let mib = bytes as f64 / (1024.0 * 1024.0);
        Self::FIXED + Duration::from_secs_f64(self.rate() * mib * Self::SAFETY / 1000.0)
    }

    /// Learns from a source of `bytes` that took `took` from fetch to metadata.
    pub fn observe(&self, bytes: u64, took: Duration) {
        if bytes < Self::MIN_LEARN_BYTES {
            return;
        }
        let mib = bytes as f64 / (1024.0 * 1024.0);
        let seen = took.saturating_sub(Self::FIXED).as_secs_f64() * 1000.0 / mib;
        // Racing updates may drop one observation; the mean does not need every one.
        let mean = self.rate() * (1.0 - Self::ALPHA) + seen * Self::ALPHA;
        self.ms_per_mib.store(mean.to_bits(), Ordering::Relaxed);
    }
}

impl Default for ServiceTime {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prediction_grows_with_size_and_learns_from_large_sources_only() {
        let times = ServiceTime::new();
        let small = times.predict(100 * 1024);
        let large = times.predict(3 * 1024 * 1024);
        assert!(
            small >= ServiceTime::FIXED && small < large,
            "{small:?} {large:?}"
        );
        // 3 MiB at the initial rate, with the safety factor: 1 s + 3 × 1.5 s × 1.5.
        assert_eq!(large.as_millis(), 1000 + 6750);

        times.observe(100 * 1024, Duration::from_secs(60));
        assert_eq!(
            times.predict(3 * 1024 * 1024),
            large,
            "a small source taught it"
        );

        // Many fast large images: the prediction comes down towards 1 s + 3 × 0.1 s × 1.5.
        for _ in 0..50 {
            times.observe(3 * 1024 * 1024, Duration::from_millis(1300));
        }
        let learned = times.predict(3 * 1024 * 1024).as_millis();
        assert!((1400..1500).contains(&learned), "{learned}");
    }

    #[test]
    fn deadline_from_epoch_ms_counts_down() {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
        let deadline = Deadline::from_epoch_ms((now + Duration::from_secs(5)).as_millis() as u64);
        let left = deadline.left();
        assert!(
            left > Duration::from_millis(4800) && left <= Duration::from_secs(5),
            "{left:?}"
        );
        assert_eq!(Deadline::from_epoch_ms(0).left(), Duration::ZERO);
    }
}
