//! How many requests may be in flight, shared by every thread that uses the client.
//!
//! Additive increase, multiplicative decrease: a 429 halves the window and pauses
//! everyone until the server's reset time; a run of successes widens it again, up
//! to `--jobs`. No fixed sleeps.

use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

pub struct Pace {
    max: usize,
    state: Mutex<State>,
    cv: Condvar,
}

struct State {
    limit: usize,
    in_flight: usize,
    paused_until: Option<Instant>,
    streak: usize,
}

/// A slot for one request; dropping it frees the slot.
pub struct Permit<'a>(&'a Pace);

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        self.0.lock().in_flight -= 1;
        self.0.cv.notify_all();
    }
}

impl Pace {
    pub fn new(max: usize) -> Self {
        let max = max.max(1);
        Pace {
            max,
            state: Mutex::new(State {
                limit: max,
                in_flight: 0,
                paused_until: None,
                streak: 0,
            }),
            cv: Condvar::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic elsewhere cannot leave the counters inconsistent: recover the guard.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Wait for a slot (and for any 429 pause to end).
    pub fn acquire(&self) -> Permit<'_> {
        let mut st = self.lock();
        loop {
            let now = Instant::now();
            if let Some(until) = st.paused_until.filter(|u| *u > now) {
                st = self
                    .cv
                    .wait_timeout(st, until - now)
                    .unwrap_or_else(|e| e.into_inner())
                    .0;
                continue;
            }
            if st.in_flight < st.limit {
                st.in_flight += 1;
                return Permit(self);
            }
            st = self.cv.wait(st).unwrap_or_else(|e| e.into_inner());
        }
    }

    /// The server said 429: fewer in flight, and nobody starts before `wait` has passed.
    pub fn throttled(&self, wait: Duration) {
        let mut st = self.lock();
        st.limit = (st.limit / 2).max(1);
        st.streak = 0;
        let until = Instant::now() + wait;
        st.paused_until = Some(st.paused_until.map_or(until, |u| u.max(until)));
    }

    /// A request went through: after a run of them, allow one more in flight.
    pub fn succeeded(&self) {
        let mut st = self.lock();
        st.streak += 1;
        if st.limit < self.max && st.streak >= 2 * st.limit {
            st.limit += 1;
            st.streak = 0;
            self.cv.notify_all();
        }
    }

    #[cfg(test)]
    fn limit(&self) -> usize {
        self.lock().limit
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn halves_on_429_and_recovers_after_successes() {
        let pace = Pace::new(8);
        pace.throttled(Duration::ZERO);
        assert_eq!(pace.limit(), 4);
        pace.throttled(Duration::ZERO);
        pace.throttled(Duration::ZERO);
        pace.throttled(Duration::ZERO);
        assert_eq!(pace.limit(), 1);
        for _ in 0..200 {
            pace.succeeded();
        }
        assert_eq!(pace.limit(), 8);
    }

    #[test]
    fn pause_holds_new_requests() {
        let pace = Pace::new(2);
        pace.throttled(Duration::from_millis(150));
        let start = Instant::now();
        drop(pace.acquire());
        assert!(start.elapsed() >= Duration::from_millis(140));
    }
}
