//! Micro-batching of device calls made by many worker threads: each thread processes its own image,
//! but the device is fed batches (nvJPEG's batched decode drives all of a GPU's hardware JPEG engines
//! at once). The first caller of a batch waits up to `window` for others (or until `max` are queued),
//! then runs the batch function once for all of them and hands each caller its own result; callers
//! arriving meanwhile start the next batch.

use std::collections::HashMap;
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

struct Queue<I, O> {
    /// Items waiting for the next batch, with their ticket.
    pending: Vec<(u64, I)>,
    /// Results not yet collected, by ticket.
    done: HashMap<u64, O>,
    next_ticket: u64,
    /// Whether a caller is gathering the pending batch (it will run it).
    gathering: bool,
}

/// Gathers calls into batches of at most `max`, waiting at most `window` for a batch to fill.
pub struct Batcher<I, O> {
    queue: Mutex<Queue<I, O>>,
    changed: Condvar,
    max: usize,
    window: Duration,
}

impl<I, O> Batcher<I, O> {
    /// A batcher of up to `max` items (at least 1), each batch gathered for up to `window`.
    pub fn new(max: usize, window: Duration) -> Self {
        Self {
            queue: Mutex::new(Queue {
                pending: Vec::new(),
                done: HashMap::new(),
                next_ticket: 0,
                gathering: false,
            }),
            changed: Condvar::new(),
            max: max.max(1),
            window,
        }
    }

    /// Submits `item` and blocks until its batch has run; `run` gets the batch's items in arrival
    /// order and must return one output per item, in the same order.
    pub fn submit(&self, item: I, run: impl FnOnce(Vec<I>) -> Vec<O>) -> O {
        let mut queue = self.queue.lock().expect("batcher lock");
        let ticket = queue.next_ticket;
        queue.next_ticket += 1;
        queue.pending.push((ticket, item));
        if queue.pending.len() >= self.max {
            self.changed.notify_all();
        }
        if !queue.gathering {
            // This caller leads the batch: wait for it to fill or for the window to pass.
            queue.gathering = true;
            let deadline = Instant::now() + self.window;
            while queue.pending.len() < self.max {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    break;
                }
                queue = self
                    .changed
                    .wait_timeout(queue, left)
                    .expect("batcher lock")
                    .0;
            }
            // The leader's own item, then the oldest others, up to `max`.
            let own = queue
                .pending
                .iter()
                .position(|(t, _)| *t == ticket)
                .expect("the leader's item is pending");
            let mut batch = vec![queue.pending.remove(own)];
            let others = queue.pending.len().min(self.max - 1);
            batch.extend(queue.pending.drain(..others));
            // Whatever is left over (or arrives from now on) is gathered by its own leader.
            queue.gathering = false;
            if !queue.pending.is_empty() {
                self.changed.notify_all();
            }
            drop(queue);
            let (tickets, items): (Vec<u64>, Vec<I>) = batch.into_iter().unzip();
            let outputs = run(items);
            assert_eq!(outputs.len(), tickets.len(), "one output per batched item");
            let mut queue = self.queue.lock().expect("batcher lock");
            queue.done.extend(tickets.into_iter().zip(outputs));
            self.changed.notify_all();
            return queue.done.remove(&ticket).expect("the leader's own result");
        }
        loop {
            if let Some(output) = queue.done.remove(&ticket) {
                return output;
            }
            // Left over from a full batch, with no one gathering: submit again, which leads the
            // next batch (or joins one a newcomer started meanwhile).
            if !queue.gathering && queue.pending.first().is_some_and(|(t, _)| *t == ticket) {
                let (_, item) = queue.pending.remove(0);
                drop(queue);
                return self.submit(item, run);
            }
            queue = self.changed.wait(queue).expect("batcher lock");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    /// Sixteen threads at once, batches of at most four: every caller gets its own result, no
    /// batch is larger than four, and at least one batch holds more than one item.
    #[test]
    fn callers_share_batches_and_get_their_own_results() {
        let batcher = Arc::new(Batcher::<u32, u32>::new(4, Duration::from_millis(200)));
        let sizes = Arc::new(Mutex::new(Vec::new()));
        let start = Arc::new(std::sync::Barrier::new(16));
        let threads: Vec<_> = (0..16u32)
            .map(|n| {
                let (batcher, sizes, start) =
                    (Arc::clone(&batcher), Arc::clone(&sizes), Arc::clone(&start));
                std::thread::spawn(move || {
                    start.wait();
                    let out = batcher.submit(n, |items| {
                        sizes.lock().unwrap().push(items.len());
                        items.iter().map(|i| i * 10).collect()
                    });
                    assert_eq!(out, n * 10, "caller {n} got someone else's result");
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        let sizes = sizes.lock().unwrap();
        assert_eq!(sizes.iter().sum::<usize>(), 16, "{sizes:?}");
        assert!(sizes.iter().all(|&n| (1..=4).contains(&n)), "{sizes:?}");
        assert!(sizes.iter().any(|&n| n > 1), "never batched: {sizes:?}");
    }

    /// A lone caller is not held for ever: its batch of one runs when the window ends.
    #[test]
    fn a_lone_caller_runs_alone_after_the_window() {
        let batcher = Batcher::<&str, usize>::new(8, Duration::from_millis(5));
        assert_eq!(batcher.submit("one", |items| vec![items.len()]), 1);
        assert_eq!(batcher.submit("two", |items| vec![items.len()]), 1);
    }
}
