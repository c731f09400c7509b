//! Nacre's deterministic simulator.
//!
//! The pure parts (scenario format, simulated disk, checkers) build and are unit-tested
//! everywhere; the cluster, workload, nemesis and runner exist only under `cfg(madsim)` and are
//! built by `cargo sim` into `target/sim`.

pub mod check;
pub mod cli;
pub mod disk;
pub mod observer;
pub mod scenario;
pub mod trace;

#[cfg(madsim)]
pub mod history;
#[cfg(madsim)]
pub mod naming;
#[cfg(madsim)]
pub mod nemesis;
#[cfg(madsim)]
pub mod net;
#[cfg(madsim)]
pub mod report;
#[cfg(madsim)]
pub mod run;
#[cfg(madsim)]
pub mod workload;
#[cfg(madsim)]
pub mod world;
