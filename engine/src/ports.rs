//! Ports: the engine's only ways to reach the outside world (STYLE 3).
//!
//! The server implements them with files, TCP and the system clock; the simulator with an
//! in-memory fault-injecting disk, madsim's network and simulated time. Nothing in the engine
//! opens a file or a socket itself.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use crate::error::Fatal;
use crate::wire::{PeerRequest, PeerResponse};

/// The files of one member's Raft storage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum DiskFile {
    /// The append-only journal of log entries, votes, commits, truncations and purges.
    Journal,
    /// The latest state-machine snapshot.
    Snapshot,
}

impl DiskFile {
    /// The file name in the data directory.
    pub fn name(self) -> &'static str {
        match self {
            DiskFile::Journal => "raft-journal.bin",
            DiskFile::Snapshot => "raft-snapshot.bin",
        }
    }
}

/// Durable storage of one member. Calls block briefly; the server backs them with files.
pub trait Disk: Send + Sync + 'static {
    /// Appends bytes at the end of `file`; they are durable only after `sync`.
    fn append(&self, file: DiskFile, bytes: &[u8]) -> Result<(), Fatal>;
    /// Makes everything appended to `file` so far durable (fsync).
    fn sync(&self, file: DiskFile) -> Result<(), Fatal>;
    /// Reads the whole file, `None` if it does not exist.
    fn read(&self, file: DiskFile) -> Result<Option<Vec<u8>>, Fatal>;
    /// Replaces the file's content atomically and durably (write, fsync, rename).
    fn replace(&self, file: DiskFile, bytes: &[u8]) -> Result<(), Fatal>;
    /// Cuts the file to `len` bytes durably (torn-tail recovery).
    fn truncate(&self, file: DiskFile, len: u64) -> Result<(), Fatal>;
}

/// Why a peer call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransportError {
    /// The request was certainly not delivered (no connection could be made).
    #[error("unreachable: {0}")]
    Unreachable(String),
    /// The request may or may not have been delivered and executed.
    #[error("no answer within the deadline")]
    Timeout,
    /// The peer answered with something that is not a valid response.
    #[error("bad response: {0}")]
    BadResponse(String),
}

/// A boxed future returned by ports.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// Request/response calls to other members.
pub trait PeerTransport: Send + Sync + 'static {
    /// Sends `request` to member `target` at `addr` and waits at most `timeout` for its answer.
    fn call(
        &self,
        target: u64,
        addr: &str,
        request: PeerRequest,
        timeout: Duration,
    ) -> BoxFuture<Result<PeerResponse, TransportError>>;
}

/// The wall clock, for the timestamps users see (config created/modified times).
pub trait Clock: Send + Sync + 'static {
    /// Milliseconds since the Unix epoch.
    fn now_ms(&self) -> u64;
}

/// Hooks through which the simulator's checkers observe a member's Raft storage. Production
/// passes none; the engine calls them synchronously at the moment the event becomes durable or
/// is applied.
pub trait RaftObserver: Send + Sync + 'static {
    /// Entries were durably appended (index, term, leader node, payload digest).
    fn on_append(&self, node: u64, entries: &[EntryDigest]);
    /// An entry whose payload digest is `payload` carries several writes (group commit);
    /// `parts` are the payload digests each would have had as an entry of its own.
    fn on_batch(&self, payload: u64, parts: &[u64]);
    /// Entries from `since_index` on were truncated (conflict with a new leader).
    fn on_truncate(&self, node: u64, since_index: u64);
    /// Entries up to and including `upto_index` were purged (behind a snapshot).
    fn on_purge(&self, node: u64, upto_index: u64);
    /// An entry was applied to the state machine.
    fn on_apply(&self, node: u64, entry: &EntryDigest);
    /// A snapshot was installed (state machine replaced up to `index`).
    fn on_snapshot_installed(&self, node: u64, index: u64, state_digest: u64);
}

/// Identity and content digest of one log entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EntryDigest {
    pub index: u64,
    pub term: u64,
    pub leader: u64,
    pub payload: u64,
}
