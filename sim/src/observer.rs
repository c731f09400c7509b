//! The simulator's view into every member's Raft storage (the engine's `RaftObserver` port).
//!
//! Hooks are called at the moment an event becomes durable or is applied; the online checkers
//! (election safety, leader completeness, state-machine safety) run right there, and the
//! mirrored logs feed the log-matching check at the end of a run.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use nacre_engine::ports::{EntryDigest, RaftObserver};

use crate::check::election_safety::ElectionSafety;
use crate::check::state_machine_safety::StateMachineSafety;
use crate::check::{leader_completeness, log_matching, LogMirror, Violation};

/// Everything observed so far.
#[derive(Debug, Default)]
pub struct Observed {
    pub logs: BTreeMap<u64, LogMirror>,
    pub election: ElectionSafety,
    pub sm: StateMachineSafety,
    pub violations: Vec<Violation>,
    pub snapshot_installs: u64,
    pub truncations: u64,
    /// Batched entries (by payload digest): the payload digests of their writes.
    pub batches: BTreeMap<u64, Vec<u64>>,
}

/// The shared observer.
#[derive(Clone, Default)]
pub struct Observer {
    inner: Arc<Mutex<Observed>>,
}

impl Observer {
    /// Locks the observed state.
    pub fn lock(&self) -> MutexGuard<'_, Observed> {
        self.inner.lock().expect("observer lock poisoned")
    }

    /// After a restart: the member's log is what it recovered from disk.
    pub fn reset_log(&self, node: u64, entries: &[EntryDigest]) {
        self.lock()
            .logs
            .insert(node, entries.iter().map(|e| (e.index, *e)).collect());
    }

    /// Runs the end-of-run log-matching check.
    pub fn check_log_matching(&self) {
        let mut o = self.lock();
        let mut out = Vec::new();
        log_matching::check(&o.logs, &mut out);
        o.violations.extend(out);
    }
}

impl RaftObserver for Observer {
    fn on_append(&self, node: u64, entries: &[EntryDigest]) {
        let mut o = self.lock();
        let mut out = Vec::new();
        o.election.on_append(entries, &mut out);
        let log = o.logs.entry(node).or_default();
        for e in entries {
            log.insert(e.index, *e);
        }
        o.violations.extend(out);
    }

    fn on_batch(&self, payload: u64, parts: &[u64]) {
        self.lock().batches.insert(payload, parts.to_vec());
    }

    fn on_truncate(&self, node: u64, since_index: u64) {
        let mut o = self.lock();
        let mut out = Vec::new();
        let committed = o.sm.committed();
        if let Some(log) = o.logs.get(&node) {
            leader_completeness::on_truncate(node, since_index, log, &committed, &mut out);
        }
        if let Some(log) = o.logs.get_mut(&node) {
            log.split_off(&since_index);
        }
        o.truncations += 1;
        o.violations.extend(out);
    }

    fn on_purge(&self, node: u64, upto_index: u64) {
        // Purged entries are no longer part of the log; log matching compares present ones.
        if let Some(log) = self.lock().logs.get_mut(&node) {
            *log = log.split_off(&(upto_index + 1));
        }
    }

    fn on_apply(&self, node: u64, entry: &EntryDigest) {
        let mut o = self.lock();
        let mut out = Vec::new();
        o.sm.on_apply(node, entry, &mut out);
        o.violations.extend(out);
    }

    fn on_snapshot_installed(&self, _node: u64, _index: u64, _state_digest: u64) {
        self.lock().snapshot_installs += 1;
    }
}
