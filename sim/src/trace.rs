//! The run's trace: every event with its simulated time, folded into one hash.
//!
//! Two runs of one seed must print the same trace hash (STYLE 14's determinism check). With
//! `--trace` the events are printed as they happen.

use std::sync::{Arc, Mutex};

use nacre_engine::digest::Fnv64;

struct TraceInner {
    hash: Fnv64,
    events: u64,
    print: bool,
    start: Option<std::time::Instant>,
}

/// A shared trace.
#[derive(Clone)]
pub struct Trace {
    inner: Arc<Mutex<TraceInner>>,
}

impl Trace {
    /// A new trace; `print` echoes events to stdout.
    pub fn new(print: bool) -> Trace {
        Trace {
            inner: Arc::new(Mutex::new(TraceInner {
                hash: Fnv64::default(),
                events: 0,
                print,
                start: None,
            })),
        }
    }

    /// Marks time zero. Runs inside madsim, which makes `Instant::now` simulated time.
    #[allow(clippy::disallowed_methods)]
    pub fn start_clock(&self) {
        self.inner.lock().expect("trace lock").start = Some(std::time::Instant::now());
    }

    /// Simulated milliseconds since time zero.
    pub fn now_ms(&self) -> u64 {
        let t = self.inner.lock().expect("trace lock");
        t.start.map(|s| s.elapsed().as_millis() as u64).unwrap_or(0)
    }

    /// Records one event.
    pub fn event(&self, what: String) {
        let mut t = self.inner.lock().expect("trace lock");
        let at_us = t.start.map(|s| s.elapsed().as_micros() as u64).unwrap_or(0);
        t.hash.write_u64(at_us);
        t.hash.write(what.as_bytes());
        t.events += 1;
        if t.print {
            println!("[{:>10.3}s] {what}", at_us as f64 / 1e6);
        }
    }

    /// The hash of all events so far and their count.
    pub fn hash(&self) -> (u64, u64) {
        let t = self.inner.lock().expect("trace lock");
        (t.hash.finish(), t.events)
    }
}
