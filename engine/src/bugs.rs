//! Deliberately injected bugs for the simulator's negative tier: each negative scenario names
//! one (`expect_bug`), the simulator switches it on for that run, and the checkers must catch it.
//!
//! The switch exists only in the simulator build (`--cfg madsim`, which the server is never
//! built with): there `active` reads one process-global atomic (the simulator runs one seed per
//! process); everywhere else it is the constant `false` and every injected branch compiles away.
//! One simulator binary serves the positive and the negative tiers, so the negative tier costs
//! no extra build.

/// The bugs the negative tier injects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bug {
    /// Journal appends acknowledged without fsync.
    AckBeforeSync,
    /// "Linearizable" config reads served from the local replica.
    StaleRead,
    /// A failed Distro verify does not make the owner resend the client.
    DistroSkipResend,
    /// A loaded Distro snapshot replaces the member's data instead of merging into it.
    DistroSnapshotReplaces,
    /// The leader acknowledges the last write of every group-commit batch without proposing it.
    BatchDropsWrite,
}

/// Every bug, for name lookup.
pub const ALL: [Bug; 5] = [
    Bug::AckBeforeSync,
    Bug::StaleRead,
    Bug::DistroSkipResend,
    Bug::DistroSnapshotReplaces,
    Bug::BatchDropsWrite,
];

impl Bug {
    /// The name a scenario's `expect_bug` uses.
    pub fn name(self) -> &'static str {
        match self {
            Bug::AckBeforeSync => "ack-before-sync",
            Bug::StaleRead => "stale-read",
            Bug::DistroSkipResend => "distro-skip-resend",
            Bug::DistroSnapshotReplaces => "distro-snapshot-replaces",
            Bug::BatchDropsWrite => "batch-drops-write",
        }
    }

    /// The bug with this name.
    pub fn from_name(name: &str) -> Option<Bug> {
        ALL.into_iter().find(|b| b.name() == name)
    }
}

#[cfg(madsim)]
mod switch {
    use super::{Bug, ALL};
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// 0: no bug; i + 1: `ALL[i]`.
    static ACTIVE: AtomicUsize = AtomicUsize::new(0);

    /// Switches `bug` on (or every bug off) for the rest of this process.
    pub fn inject(bug: Option<Bug>) {
        let v = bug.map_or(0, |b| {
            ALL.iter().position(|x| *x == b).expect("listed in ALL") + 1
        });
        ACTIVE.store(v, Ordering::Relaxed);
    }

    /// Whether `bug` is switched on.
    pub fn active(bug: Bug) -> bool {
        let v = ACTIVE.load(Ordering::Relaxed);
        v != 0 && ALL[v - 1] == bug
    }
}

#[cfg(madsim)]
pub use switch::{active, inject};

/// Whether `bug` is switched on: never, outside the simulator build.
#[cfg(not(madsim))]
#[inline(always)]
pub fn active(_bug: Bug) -> bool {
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_nothing_is_active_outside_the_simulator() {
        for b in ALL {
            assert_eq!(Bug::from_name(b.name()), Some(b));
            assert!(!active(b));
        }
        assert_eq!(Bug::from_name("sim-bug-stale-read"), None);
    }
}
