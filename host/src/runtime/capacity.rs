//! How many mapper calls run at once, and the bounded queue in front of them.
//!
//! Every call into a mapper (mapping, page queries, `describe` at load,
//! fixture checks) holds a [`Permit`] while it runs, so the instances that
//! exist at once are the running calls plus the warm ones, and the engine's
//! instance pool is sized from that (see `engine::PoolSize`). A call that
//! finds every permit taken waits, at most `wait`, in a queue of at most
//! `queued` callers; past either bound it is refused as busy (nothing ran,
//! the sender may retry), never failed as if the mapper had trapped.

use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

/// Bounds on concurrent mapper calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capacity {
    /// Calls that run at once; each holds one mapper instance.
    pub calls: usize,
    /// Callers that may wait for a free call; more are refused at once.
    pub queued: usize,
    /// How long a caller waits before it is refused.
    pub wait: Duration,
}

impl Default for Capacity {
    fn default() -> Self {
        let cores = std::thread::available_parallelism().map_or(2, usize::from);
        Capacity {
            // Calls are CPU-bound: more at once than cores only stretches
            // each one's wall-clock deadline.
            calls: (cores * 2).clamp(4, 64),
            queued: 1024,
            wait: Duration::from_secs(2),
        }
    }
}

/// No call was free within the queue's bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Busy {
    /// The queue already held its maximum of waiting callers.
    #[error("{0} mapper calls are already waiting for a free instance")]
    QueueFull(usize),
    /// The caller waited its maximum.
    #[error("no mapper instance was free within {0:?}")]
    Waited(Duration),
    /// The engine's instance pool had no free slot (it is sized so that
    /// this does not happen; if it does, it is as transient as the others).
    #[error("the mapper instance pool is exhausted")]
    Pool,
}

/// The running calls and the callers waiting for one.
pub(crate) struct Calls {
    limits: Capacity,
    state: Mutex<State>,
    freed: Condvar,
}

#[derive(Default)]
struct State {
    running: usize,
    waiting: usize,
    refused: u64,
}

/// One running call; the slot frees when this drops.
pub(crate) struct Permit<'a> {
    calls: &'a Calls,
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        self.calls.lock().running -= 1;
        self.calls.freed.notify_one();
    }
}

impl Calls {
    pub(crate) fn new(limits: Capacity) -> Calls {
        Calls {
            limits,
            state: Mutex::new(State::default()),
            freed: Condvar::new(),
        }
    }

    /// A slot for one call, waiting within the queue's bounds.
    pub(crate) fn acquire(&self) -> Result<Permit<'_>, Busy> {
        let mut state = self.lock();
        if state.running < self.limits.calls {
            state.running += 1;
            return Ok(Permit { calls: self });
        }
        if state.waiting >= self.limits.queued {
            state.refused += 1;
            return Err(Busy::QueueFull(state.waiting));
        }
        state.waiting += 1;
        let deadline = Instant::now() + self.limits.wait;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                state.waiting -= 1;
                state.refused += 1;
                return Err(Busy::Waited(self.limits.wait));
            }
            state = self
                .freed
                .wait_timeout(state, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
            if state.running < self.limits.calls {
                state.waiting -= 1;
                state.running += 1;
                return Ok(Permit { calls: self });
            }
        }
    }

    /// The bounds.
    pub(crate) fn limits(&self) -> Capacity {
        self.limits
    }

    /// `(running, waiting)` now, and how many were refused since start.
    pub(crate) fn load(&self) -> (usize, usize, u64) {
        let state = self.lock();
        (state.running, state.waiting, state.refused)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn calls(calls: usize, queued: usize, wait_ms: u64) -> Calls {
        Calls::new(Capacity {
            calls,
            queued,
            wait: Duration::from_millis(wait_ms),
        })
    }

    #[test]
    fn a_full_queue_refuses_at_once_and_a_waiter_gives_up_after_its_wait() {
        let c = calls(1, 1, 100);
        let held = c.acquire().unwrap();
        std::thread::scope(|s| {
            let waiter = s.spawn(|| c.acquire().map(|_| ()));
            while c.load().1 == 0 {
                std::thread::yield_now();
            }
            assert_eq!(c.acquire().err(), Some(Busy::QueueFull(1)));
            assert_eq!(waiter.join().unwrap(), Err(Busy::Waited(Duration::from_millis(100))));
        });
        drop(held);
        assert_eq!(c.load(), (0, 0, 2), "both refusals are counted");
    }

    #[test]
    fn a_waiter_gets_the_slot_a_finished_call_frees() {
        let c = calls(1, 4, 10_000);
        let held = c.acquire().unwrap();
        std::thread::scope(|s| {
            let waiter = s.spawn(|| c.acquire().map(|_| ()));
            while c.load().1 == 0 {
                std::thread::yield_now();
            }
            drop(held);
            assert_eq!(waiter.join().unwrap(), Ok(()));
        });
        assert_eq!(c.load(), (0, 0, 0));
    }
}
