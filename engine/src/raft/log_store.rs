//! The Raft log store: an in-memory index of the log over the durable journal.
//!
//! Every mutation is first written to the journal through the `Disk` port; appends are fsync'd
//! before openraft is told they are flushed, and one append call carries a whole batch of
//! entries, so one fsync covers many writes (group commit). After a purge the journal is
//! rewritten without purged entries once it is large and mostly dead, which bounds disk use
//! (DESIGN §4 "purge after snapshot").

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::ops::RangeBounds;
use std::sync::{Arc, Mutex, MutexGuard};

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{AnyError, EntryPayload, RaftLogReader, StorageIOError};

use super::command::{Command, Op};
use super::journal::{replay, JournalRecord};
use super::type_config::{Entry, LogId, StorageError, TypeConfig, Vote};
#[cfg(madsim)]
use crate::constants::FSYNC_SIM_US;
use crate::constants::JOURNAL_COMPACT_BYTES_MIN;
use crate::digest::fnv64;
use crate::error::Fatal;
use crate::ports::{Disk, DiskFile, EntryDigest, RaftObserver};
use crate::wire::frame::encode_msg;

/// Options of the log store.
#[derive(Clone)]
pub struct LogStoreOptions {
    /// Journal size below which no compaction happens.
    pub compact_bytes_min: u64,
    /// Checkers' hooks (simulator only).
    pub observer: Option<Arc<dyn RaftObserver>>,
}

impl Default for LogStoreOptions {
    fn default() -> Self {
        LogStoreOptions {
            compact_bytes_min: JOURNAL_COMPACT_BYTES_MIN,
            observer: None,
        }
    }
}

/// The log store handle; clones share one log.
#[derive(Clone)]
pub struct LogStore {
    inner: Arc<Mutex<LogInner>>,
    flush_tx: tokio::sync::mpsc::Sender<PendingFlush>,
}

/// An append waiting for its fsync.
struct PendingFlush {
    callback: LogFlushed<TypeConfig>,
    entries: Vec<EntryDigest>,
}

struct LogInner {
    node: u64,
    disk: Arc<dyn Disk>,
    options: LogStoreOptions,
    entries: BTreeMap<u64, Entry>,
    vote: Option<Vote>,
    committed: Option<LogId>,
    last_purged: Option<LogId>,
    journal_bytes: u64,
}

/// The vote a member restarts with. A member that was leader (its own committed vote) comes
/// back with the same vote uncommitted, so it must win a new election — which appends a fresh
/// noop entry — before it leads again. Otherwise openraft would resume leadership from the
/// persisted vote and serve ReadIndex from its recovered commit point, which can be older than
/// writes it acknowledged before the crash (found by sim seed 1502). The term and the member
/// voted for are unchanged, so no vote this member granted is forgotten.
fn restart_vote(node: u64, vote: Vote) -> Vote {
    if vote.is_committed() && vote.leader_id().voted_for() == Some(node) {
        Vote::new(vote.leader_id().term, node)
    } else {
        vote
    }
}

/// Appends waiting for one fsync, at most.
const FLUSH_QUEUE_MAX: usize = 4_096;

fn sync_journal(disk: &dyn Disk) -> Result<(), Fatal> {
    if crate::bugs::active(crate::bugs::Bug::AckBeforeSync) {
        // Deliberate bug for the negative tier: acknowledge without making it durable.
        return Ok(());
    }
    disk.sync(DiskFile::Journal)
}

/// Runs the journal's fsync. In production it runs on tokio's blocking pool: an fsync takes
/// hundreds of microseconds, and on a worker thread it would stall every task scheduled there,
/// Raft's core among them, which then could not append the next writes while this batch
/// syncs. The simulator has no blocking pool and syncs inline (its disk is memory).
async fn sync_off_runtime(disk: Arc<dyn Disk>) -> Result<(), Fatal> {
    #[cfg(not(madsim))]
    {
        tokio::task::spawn_blocking(move || sync_journal(disk.as_ref()))
            .await
            .unwrap_or_else(|e| Err(Fatal::Io(format!("journal sync task failed: {e}"))))
    }
    #[cfg(madsim)]
    {
        sync_journal(disk.as_ref())
    }
}

/// Makes queued appends durable with one fsync per round, then completes them in order.
/// Each completed entry that is still in the log (not truncated meanwhile) is reported to the
/// observer as durably appended.
async fn flusher(inner: Arc<Mutex<LogInner>>, mut rx: tokio::sync::mpsc::Receiver<PendingFlush>) {
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while let Ok(more) = rx.try_recv() {
            batch.push(more);
        }
        // Under the simulator an fsync takes simulated time, so a crash can land between a
        // batch's write and its sync and leave it lost or torn on disk.
        #[cfg(madsim)]
        tokio::time::sleep(std::time::Duration::from_micros(FSYNC_SIM_US)).await;
        let disk = inner.lock().expect("log store lock poisoned").disk.clone();
        // The fsync runs without the log lock, so new appends can be written meanwhile; they
        // are not in this batch and wait for the next round.
        let result = sync_off_runtime(disk).await;
        let guard = inner.lock().expect("log store lock poisoned");
        for p in batch {
            match &result {
                Ok(()) => {
                    if let Some(obs) = &guard.options.observer {
                        let present: Vec<EntryDigest> = p
                            .entries
                            .iter()
                            .filter(|d| {
                                guard
                                    .entries
                                    .get(&d.index)
                                    .is_some_and(|e| entry_digest(e) == **d)
                            })
                            .copied()
                            .collect();
                        obs.on_append(guard.node, &present);
                    }
                    p.callback.log_io_completed(Ok(()));
                }
                Err(e) => p
                    .callback
                    .log_io_completed(Err(std::io::Error::other(e.to_string()))),
            }
        }
    }
}

/// The digest of an entry as the checkers see it.
pub fn entry_digest(e: &Entry) -> EntryDigest {
    let payload = postcard::to_allocvec(&e.payload).expect("encoding owned data cannot fail");
    EntryDigest {
        index: e.log_id.index,
        term: e.log_id.leader_id.term,
        leader: e.log_id.leader_id.node_id,
        payload: fnv64(&payload),
    }
}

/// For a batched entry, the payload digest each of its writes would have had alone.
fn batch_parts(e: &Entry) -> Option<Vec<u64>> {
    let EntryPayload::Normal(Command {
        op: Op::Batch(batch),
        ..
    }) = &e.payload
    else {
        return None;
    };
    Some(
        batch
            .iter()
            .map(|b| {
                let alone = EntryPayload::<TypeConfig>::Normal(b.to_command());
                fnv64(&postcard::to_allocvec(&alone).expect("encoding owned data cannot fail"))
            })
            .collect(),
    )
}

fn io_err(e: Fatal) -> StorageError {
    StorageError::from(StorageIOError::write_logs(AnyError::error(e)))
}

impl LogStore {
    /// Opens the store: replays the journal and cuts off a torn tail.
    pub fn open(node: u64, disk: Arc<dyn Disk>, options: LogStoreOptions) -> Result<Self, Fatal> {
        let bytes = disk.read(DiskFile::Journal)?.unwrap_or_default();
        let rec = replay(&bytes)?;
        if rec.torn_tail {
            tracing::warn!(
                node,
                cut_at = rec.valid_len,
                len = bytes.len(),
                "journal torn tail cut"
            );
            disk.truncate(DiskFile::Journal, rec.valid_len)?;
        }
        let inner = LogInner {
            node,
            disk,
            options,
            entries: rec.entries,
            vote: rec.vote.map(|v| restart_vote(node, v)),
            committed: rec.committed,
            last_purged: rec.last_purged,
            journal_bytes: rec.valid_len,
        };
        inner.check_invariants();
        let inner = Arc::new(Mutex::new(inner));
        let (flush_tx, flush_rx) = tokio::sync::mpsc::channel(FLUSH_QUEUE_MAX);
        tokio::spawn(flusher(inner.clone(), flush_rx));
        Ok(LogStore { inner, flush_tx })
    }

    fn lock(&self) -> MutexGuard<'_, LogInner> {
        self.inner
            .lock()
            .expect("log store lock poisoned: a panic already stopped the node")
    }

    /// Every entry currently in the log, for the simulator's log-matching checker.
    pub fn digests(&self) -> Vec<EntryDigest> {
        self.lock().entries.values().map(entry_digest).collect()
    }

    /// The last log index present (or purged).
    pub fn last_index(&self) -> Option<u64> {
        let inner = self.lock();
        inner
            .entries
            .keys()
            .next_back()
            .copied()
            .or(inner.last_purged.map(|l| l.index))
    }
}

impl LogInner {
    fn write(&mut self, record: &JournalRecord, sync: bool) -> Result<(), Fatal> {
        let bytes = encode_msg(record);
        self.disk.append(DiskFile::Journal, &bytes)?;
        self.journal_bytes += bytes.len() as u64;
        if sync {
            self.sync()?;
        }
        Ok(())
    }

    fn sync(&mut self) -> Result<(), Fatal> {
        sync_journal(self.disk.as_ref())
    }

    fn compact_if_needed(&mut self) -> Result<(), Fatal> {
        if self.journal_bytes < self.options.compact_bytes_min {
            return Ok(());
        }
        let mut records = Vec::new();
        if let Some(v) = self.vote {
            records.push(JournalRecord::Vote(v));
        }
        records.push(JournalRecord::Committed(self.committed));
        if let Some(p) = self.last_purged {
            records.push(JournalRecord::Purge(p));
        }
        records.push(JournalRecord::Entries(
            self.entries.values().cloned().collect(),
        ));
        let bytes: Vec<u8> = records.iter().flat_map(encode_msg).collect();
        if (bytes.len() as u64) * 2 > self.journal_bytes {
            return Ok(());
        }
        self.disk.replace(DiskFile::Journal, &bytes)?;
        tracing::debug!(
            node = self.node,
            from = self.journal_bytes,
            to = bytes.len(),
            "journal compacted"
        );
        self.journal_bytes = bytes.len() as u64;
        crate::coverage::hit(crate::coverage::Mark::JournalCompacted);
        Ok(())
    }

    fn check_invariants(&self) {
        if let (Some(p), Some(first)) = (self.last_purged, self.entries.keys().next()) {
            assert!(
                *first > p.index,
                "an entry at or below the purge point survived"
            );
        }
        debug_assert!(self.entries.iter().all(|(i, e)| *i == e.log_id.index));
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        Ok(self
            .lock()
            .entries
            .range(range)
            .map(|(_, e)| e.clone())
            .collect())
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let inner = self.lock();
        let last = inner
            .entries
            .values()
            .next_back()
            .map(|e| e.log_id)
            .or(inner.last_purged);
        Ok(LogState {
            last_purged_log_id: inner.last_purged,
            last_log_id: last,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), StorageError> {
        let mut inner = self.lock();
        inner
            .write(&JournalRecord::Vote(*vote), true)
            .map_err(io_err)?;
        inner.vote = Some(*vote);
        Ok(())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, StorageError> {
        Ok(self.lock().vote)
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        let mut inner = self.lock();
        // Not synced: a lost commit point is learned again from the leader. (A restarted
        // leader never serves ReadIndex from it: see `open`, which re-runs its election.)
        inner
            .write(&JournalRecord::Committed(committed), false)
            .map_err(io_err)?;
        inner.committed = committed;
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        Ok(self.lock().committed)
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        let entries: Vec<Entry> = entries.into_iter().collect();
        let mut digests: Vec<EntryDigest> = Vec::new();
        {
            let mut inner = self.lock();
            // Digests are for the checkers only; production has no observer.
            if let Some(obs) = &inner.options.observer {
                digests = entries.iter().map(entry_digest).collect();
                for (e, d) in entries.iter().zip(&digests) {
                    if let Some(parts) = batch_parts(e) {
                        obs.on_batch(d.payload, &parts);
                    }
                }
            }
            if let Err(e) = inner.write(&JournalRecord::Entries(entries.clone()), false) {
                callback.log_io_completed(Err(std::io::Error::other(e.to_string())));
                return Err(io_err(e));
            }
            for e in entries {
                inner.entries.insert(e.log_id.index, e);
            }
        }
        // Durability is the flusher's job: it fsyncs once for every append queued meanwhile
        // and only then tells openraft (group commit across concurrent proposals).
        let pending = PendingFlush {
            callback,
            entries: digests,
        };
        if let Err(e) = self.flush_tx.send(pending).await {
            e.0.callback
                .log_io_completed(Err(std::io::Error::other("log flusher stopped")));
            return Err(io_err(Fatal::Io("log flusher stopped".into())));
        }
        Ok(())
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let mut inner = self.lock();
        inner
            .write(&JournalRecord::Truncate(log_id.index), true)
            .map_err(io_err)?;
        inner.entries.split_off(&log_id.index);
        if let Some(obs) = &inner.options.observer {
            obs.on_truncate(inner.node, log_id.index);
        }
        Ok(())
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let mut inner = self.lock();
        inner
            .write(&JournalRecord::Purge(log_id), false)
            .map_err(io_err)?;
        let kept = inner.entries.split_off(&(log_id.index + 1));
        inner.entries = kept;
        inner.last_purged = Some(log_id);
        if let Some(obs) = &inner.options.observer {
            obs.on_purge(inner.node, log_id.index);
        }
        inner.compact_if_needed().map_err(io_err)?;
        inner.check_invariants();
        Ok(())
    }
}
