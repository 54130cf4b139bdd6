//! A hidden, test-only fault switch: `CLASSKEYS_FAULT=POINT:N` makes the process die
//! (abort, like `kill -9`: no cleanup, no flush) the N-th time it passes POINT.
//! Points: `create-answered` (a create's answer arrived, its secret not yet saved),
//! `create-saved` (a new key's secret was just committed), `change-answered` (a PATCH or
//! delete answered, not yet recorded), `guardrail-answered` (a guardrail change answered).

use std::sync::atomic::{AtomicU32, Ordering};

static HITS: AtomicU32 = AtomicU32::new(0);

pub fn point(name: &str) {
    let Ok(spec) = std::env::var("CLASSKEYS_FAULT") else {
        return;
    };
    let Some((want, n)) = spec.split_once(':') else {
        return;
    };
    if want != name {
        return;
    }
    let n: u32 = n.parse().unwrap_or(1);
    if HITS.fetch_add(1, Ordering::SeqCst) + 1 >= n {
        std::process::abort();
    }
}
