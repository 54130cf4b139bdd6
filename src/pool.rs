//! A bounded pool of workers for API requests. Results come back to the calling thread,
//! which alone writes to keys.db; once it says stop, no new request starts and those in
//! flight finish and are handed back.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;

/// Run `work` on every item with at most `jobs` at once; `done` sees each result on this
/// thread, in completion order, and returns false to stop starting new items. A result for
/// which `fatal` is true stops new items at once, in the worker, before `done` sees it.
pub fn run<J: Sync, R: Send>(
    jobs: usize,
    items: &[J],
    work: impl Fn(&J) -> R + Sync,
    fatal: impl Fn(&R) -> bool + Sync,
    mut done: impl FnMut(&J, R) -> bool,
) {
    if items.is_empty() {
        return;
    }
    let next = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    let (tx, rx) = mpsc::channel::<(usize, R)>();
    std::thread::scope(|scope| {
        for _ in 0..jobs.clamp(1, items.len()) {
            let tx = tx.clone();
            let (next, stop, work, fatal) = (&next, &stop, &work, &fatal);
            scope.spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    let Some(item) = items.get(i) else { break };
                    let result = work(item);
                    if fatal(&result) {
                        stop.store(true, Ordering::SeqCst);
                    }
                    if tx.send((i, result)).is_err() {
                        break;
                    }
                }
            });
        }
        drop(tx);
        for (i, result) in rx {
            if !done(&items[i], result) {
                stop.store(true, Ordering::SeqCst);
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[test]
    fn every_item_once() {
        let items: Vec<u32> = (0..100).collect();
        let mut seen = Vec::new();
        run(
            8,
            &items,
            |x| x * 2,
            |_| false,
            |x, r| {
                assert_eq!(r, x * 2);
                seen.push(*x);
                true
            },
        );
        seen.sort();
        assert_eq!(seen, items);
    }

    #[test]
    fn stop_starts_nothing_new() {
        let items: Vec<u32> = (0..1000).collect();
        let started = Mutex::new(0);
        let mut handed = 0;
        run(
            4,
            &items,
            |_| {
                *started.lock().unwrap() += 1;
                std::thread::sleep(std::time::Duration::from_millis(20));
            },
            |_| false,
            |_, _| {
                handed += 1;
                false
            },
        );
        let started = *started.lock().unwrap();
        // The first result stops the pool: only requests already in flight finish
        // (a handful, nowhere near the thousand queued).
        assert!(started < 100, "{started}");
        assert_eq!(handed, started);
    }
}
