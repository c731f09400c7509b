//! Every time constant and bound of the engine, in one place (STYLE 6).
//!
//! Raft timing is tuned for fast failover (DESIGN §3): heartbeats every 100 ms and a randomized
//! election timeout of 1.0–1.5 s, so a leader crash stops writes for well under 3 s. Nacos
//! enforces a 5 s minimum election timeout; Nacre deliberately does not.

/// Raft heartbeat interval.
pub const RAFT_HEARTBEAT_MS: u64 = 100;
/// Lower bound of the randomized election timeout.
pub const RAFT_ELECTION_TIMEOUT_MIN_MS: u64 = 600;
/// Upper bound of the randomized election timeout.
pub const RAFT_ELECTION_TIMEOUT_MAX_MS: u64 = 900;
/// Deadline of one Raft RPC (append, vote, snapshot chunk).
pub const RAFT_RPC_TIMEOUT_MS: u64 = 500;
/// A snapshot is built after this many log entries since the last one.
pub const SNAPSHOT_LOGS_SINCE_LAST: u64 = 5_000;
/// A snapshot is also built when the last one is older than this and entries were added since:
/// the time-based bound on disk use for low-write clusters (field lessons §4.7).
pub const SNAPSHOT_MAX_AGE_MS: u64 = 30 * 60 * 1_000;
/// Entries kept in the log behind a snapshot, so slightly lagging followers need no snapshot.
pub const LOGS_KEPT_AFTER_SNAPSHOT: u64 = 1_000;
/// Size of one snapshot chunk sent over the peer transport.
pub const SNAPSHOT_CHUNK_BYTES: u64 = 1024 * 1024;
/// Entries sent in one append RPC.
pub const APPEND_ENTRIES_MAX: u64 = 1_024;

/// Group commit (`raft::batcher`): batches the leader has proposed and not yet seen answered.
/// Raft makes one entry durable before it appends the next, so writes arriving while these
/// are in flight gather into the next batch; two keep the disk busy back to back.
pub const PROPOSALS_IN_FLIGHT: usize = 2;
/// Config commands in one batched entry, at most.
pub const BATCH_COMMANDS_MAX: usize = 512;
/// Estimated bytes of one batched entry, at most (a larger single command goes alone).
pub const BATCH_BYTES_MAX: usize = 1024 * 1024;
/// Writes queued for the batcher before proposers wait for room.
pub const PROPOSALS_QUEUED_MAX: usize = 8_192;

/// How long a write waits for a leader to be known before it is rejected with `NoLeader`.
pub const WRITE_LEADER_WAIT_MS: u64 = 5_000;
/// Deadline of a write once a leader is known (forward + commit + local apply).
pub const WRITE_TIMEOUT_MS: u64 = 5_000;
/// Deadline of a linearizable read.
pub const READ_TIMEOUT_MS: u64 = 5_000;
/// Polling interval while waiting for a leader or for the local replica to apply an index.
pub const WAIT_POLL_MS: u64 = 20;
/// A forwarded request is forwarded at most this many times (a stale leader hint may bounce it).
pub const FORWARD_HOPS_MAX: u8 = 3;

/// Largest peer frame accepted by the decoder.
pub const FRAME_BYTES_MAX: usize = 16 * 1024 * 1024;
/// Largest journal record accepted on recovery.
pub const JOURNAL_RECORD_BYTES_MAX: usize = FRAME_BYTES_MAX;
/// The journal is rewritten (compacted) when its size exceeds this many bytes and is more than
/// twice the size of its live records.
pub const JOURNAL_COMPACT_BYTES_MIN: u64 = 4 * 1024 * 1024;

/// Simulated duration of one fsync of the journal (simulator only): the window in which a
/// crash tears or loses a batch that was written but not yet synced.
pub const FSYNC_SIM_US: u64 = 2_000;

/// Bootstrap: how often a fresh node probes the expected members before the first election.
pub const BOOTSTRAP_PROBE_MS: u64 = 200;

/// Distro (wire reference §5.4): merge delay of a sync task. Nacos waits 1 s; Nacre 50 ms, so
/// a registration reaches subscribers on other members within about 50 ms instead of a second.
/// The delay merges repeated changes of one client; distinct clients never merge, so a shorter
/// one sends no more syncs under a registration flood. `nacos.core.protocol.distro.data.sync.delayMs`
/// restores Nacos's value.
pub const DISTRO_SYNC_DELAY_MS: u64 = 50;
/// Distro: retry delay of a failed sync, and the deadline of one Distro call.
pub const DISTRO_SYNC_RETRY_MS: u64 = 3_000;
/// Distro: deadline of one Distro call (sync, verify, report).
pub const DISTRO_CALL_TIMEOUT_MS: u64 = 3_000;
/// Distro: deadline of a snapshot query (Nacos raised its own to 30 s for large snapshots).
pub const DISTRO_LOAD_TIMEOUT_MS: u64 = 30_000;
/// Distro: period of the verify manifests.
pub const DISTRO_VERIFY_INTERVAL_MS: u64 = 5_000;
/// Distro: wait before another round of snapshot load after every peer failed (Nacos 30 s).
pub const DISTRO_LOAD_RETRY_MS: u64 = 5_000;
/// Member reports: period, and consecutive failures that make a member DOWN.
pub const MEMBER_REPORT_INTERVAL_MS: u64 = 2_000;
pub const MEMBER_FAIL_MAX: u32 = 3;
/// HTTP (1.x) clients: beat period, unhealthy and delete timeouts (Nacos defaults).
pub const CLIENT_BEAT_INTERVAL_MS: u64 = 5_000;
pub const CLIENT_BEAT_UNHEALTHY_MS: u64 = 15_000;
pub const CLIENT_BEAT_DELETE_MS: u64 = 30_000;
/// A synced copy of a client is dropped this long after its last renewal.
pub const SYNCED_CLIENT_EXPIRE_MS: u64 = 180_000;
/// A connection without a keepalive for this long is closed.
pub const CONNECTION_IDLE_MS: u64 = 20_000;
/// Distro's timer period (expiry, verify, reports, loads).
pub const DISTRO_TICK_MS: u64 = 100;
/// Between ticks, sync tasks that fell due are sent every this many ms, so a change reaches
/// the other members about `DISTRO_SYNC_DELAY_MS` after it was made, not up to a tick later.
pub const DISTRO_DISPATCH_MS: u64 = 10;
/// An HTTP client write is forwarded at most this many times; the member it reaches then
/// applies it whatever its view of ownership (as Nacos does with forwarded requests).
pub const DISTRO_FORWARD_HOPS_MAX: u8 = 1;

const _: () = assert!(DISTRO_TICK_MS.is_multiple_of(DISTRO_DISPATCH_MS));
const _: () = assert!(CLIENT_BEAT_INTERVAL_MS < CLIENT_BEAT_UNHEALTHY_MS);
const _: () = assert!(CLIENT_BEAT_UNHEALTHY_MS < CLIENT_BEAT_DELETE_MS);
const _: () = assert!(RAFT_HEARTBEAT_MS * 3 < RAFT_ELECTION_TIMEOUT_MIN_MS);
const _: () = assert!(RAFT_ELECTION_TIMEOUT_MIN_MS < RAFT_ELECTION_TIMEOUT_MAX_MS);
const _: () = assert!(RAFT_RPC_TIMEOUT_MS < RAFT_ELECTION_TIMEOUT_MIN_MS);
const _: () = assert!(LOGS_KEPT_AFTER_SNAPSHOT < SNAPSHOT_LOGS_SINCE_LAST);
