//! Group commit of client writes at the leader.
//!
//! openraft 0.9 makes each proposed entry durable before it appends the next one, so writes
//! proposed one by one cost one fsync and one replication round each, however many clients
//! wait. The batcher sits in front of `Raft::client_write`: it keeps at most
//! `PROPOSALS_IN_FLIGHT` proposals outstanding, and the config writes that arrive meanwhile are
//! proposed together as one `Op::Batch` entry. A lone write is proposed at once, as before, so
//! an idle cluster pays no extra latency.
//!
//! A batch holds config commands of distinct keys only: two writes of one key stay in arrival
//! order in separate entries, so each key's revision (the entry index) still grows with every
//! change. Other operations (naming, namespaces, history purge) are proposed alone. Writes that
//! are pending together come from different clients, so any order among them is one a client
//! could have seen anyway.

use std::collections::{BTreeSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use openraft::error::{ClientWriteError, RaftError};
use tokio::sync::{mpsc, oneshot, Semaphore};

use crate::config::{ConfigCommand, ConfigKey};
use crate::constants::{
    BATCH_BYTES_MAX, BATCH_COMMANDS_MAX, PROPOSALS_IN_FLIGHT, PROPOSALS_QUEUED_MAX,
    WRITE_TIMEOUT_MS,
};
use crate::raft::command::{BatchedConfig, Command, CommandResult, Op};
use crate::raft::type_config::{Raft, TypeConfig};
use crate::wire::Written;

/// Why a proposal was not committed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProposeError {
    /// This member is not (or no longer) the leader: route the write again.
    NotLeader,
    /// Anything else (shutting down, storage failure).
    Failed(String),
}

type ClientWriteResponse = openraft::raft::ClientWriteResponse<TypeConfig>;

/// A write waiting for the batcher.
struct Proposal {
    cmd: Command,
    reply: oneshot::Sender<Result<Written, ProposeError>>,
}

/// The handle proposers use; the batcher task ends when every handle is gone.
#[derive(Clone)]
pub struct Batcher {
    tx: mpsc::Sender<Proposal>,
}

impl Batcher {
    /// Starts the batcher task for `raft`.
    pub fn start(raft: Raft) -> Batcher {
        let (tx, rx) = mpsc::channel(PROPOSALS_QUEUED_MAX);
        tokio::spawn(run(raft, rx));
        Batcher { tx }
    }

    /// Proposes `cmd` and waits until it is committed and applied (its result) or refused.
    pub async fn propose(&self, cmd: Command) -> Result<Written, ProposeError> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .send(Proposal { cmd, reply })
            .await
            .map_err(|_| ProposeError::Failed("the batcher stopped".into()))?;
        answer
            .await
            .unwrap_or_else(|_| Err(ProposeError::Failed("the proposal was dropped".into())))
    }
}

/// What one proposal to Raft carries. Units are moved, never stored in bulk: boxing the
/// single proposal would only add an allocation per write.
#[allow(clippy::large_enum_variant)]
enum Unit {
    Single(Proposal),
    Configs(
        Vec<(
            BatchedConfig,
            oneshot::Sender<Result<Written, ProposeError>>,
        )>,
    ),
}

async fn run(raft: Raft, mut rx: mpsc::Receiver<Proposal>) {
    let slots = Arc::new(Semaphore::new(PROPOSALS_IN_FLIGHT));
    let mut waiting: VecDeque<Proposal> = VecDeque::new();
    loop {
        if waiting.is_empty() {
            match rx.recv().await {
                Some(p) => waiting.push_back(p),
                None => return,
            }
        }
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        // Everything that arrived while the slots were busy joins this round.
        while waiting.len() < BATCH_COMMANDS_MAX * 2 {
            match rx.try_recv() {
                Ok(p) => waiting.push_back(p),
                Err(_) => break,
            }
        }
        let unit = take_unit(&mut waiting);
        let raft = raft.clone();
        tokio::spawn(async move {
            propose_unit(&raft, unit).await;
            drop(slot);
        });
    }
}

fn config_key(c: &ConfigCommand) -> &ConfigKey {
    match c {
        ConfigCommand::Publish(p) => &p.key,
        ConfigCommand::PublishGray { publish, .. } => &publish.key,
        ConfigCommand::Remove { key, .. } | ConfigCommand::RemoveGray { key, .. } => key,
    }
}

/// Takes the next unit from the front of `waiting`: a lone non-config write, or as many config
/// writes of distinct keys as fit. A write of a key that is already in the unit, or that was
/// left for later, is left for later too, so each key's writes keep their order.
fn take_unit(waiting: &mut VecDeque<Proposal>) -> Unit {
    let first = waiting.pop_front().expect("take_unit on an empty queue");
    let Op::Config(_) = &first.cmd.op else {
        return Unit::Single(first);
    };
    let mut touched: BTreeSet<ConfigKey> = BTreeSet::new();
    let mut bytes = 0usize;
    let mut unit: Vec<Proposal> = Vec::new();
    let mut later: VecDeque<Proposal> = VecDeque::new();
    let mut next = Some(first);
    while let Some(p) = next.take().or_else(|| waiting.pop_front()) {
        if unit.len() >= BATCH_COMMANDS_MAX {
            waiting.push_front(p);
            break;
        }
        match &p.cmd.op {
            Op::Config(c) => {
                let size = c.approx_bytes();
                let fits = unit.is_empty() || bytes + size <= BATCH_BYTES_MAX;
                let fresh = touched.insert(config_key(c).clone());
                if fresh && fits {
                    bytes += size;
                    unit.push(p);
                } else {
                    later.push_back(p);
                }
            }
            _ => later.push_back(p),
        }
    }
    later.append(waiting);
    *waiting = later;
    if unit.len() == 1 {
        return Unit::Single(unit.pop().expect("one"));
    }
    Unit::Configs(
        unit.into_iter()
            .map(|p| {
                let Op::Config(command) = p.cmd.op else {
                    unreachable!("only config writes are batched")
                };
                let b = BatchedConfig {
                    now_ms: p.cmd.now_ms,
                    command,
                };
                (b, p.reply)
            })
            .collect(),
    )
}

fn propose_error(e: RaftError<u64, ClientWriteError<u64, openraft::BasicNode>>) -> ProposeError {
    match e {
        RaftError::APIError(ClientWriteError::ForwardToLeader(_)) => ProposeError::NotLeader,
        e => ProposeError::Failed(e.to_string()),
    }
}

/// `Raft::client_write`, except that it stops waiting when the term it was proposed in ends, or
/// after `WRITE_TIMEOUT_MS`.
///
/// openraft answers a proposal when its entry is applied or truncated, but not when a snapshot
/// installed on a deposed leader covers the entry: that proposal would wait forever and hold its
/// slot, and once every slot is held the leader takes no write at all, though Raft itself is
/// healthy (found by the simulator: a leader isolated, deposed, sent a snapshot, elected again).
/// A proposal given up on has an unknown outcome (it may still commit under the new leader), so
/// it fails as `Failed`, never as `NotLeader`, which would route it again.
async fn client_write(raft: &Raft, cmd: Command) -> Result<ClientWriteResponse, ProposeError> {
    let term = raft.metrics().borrow().current_term;
    tokio::select! {
        biased;
        answer = raft.client_write(cmd) => answer.map_err(propose_error),
        why = give_up(raft, term) => {
            crate::coverage::hit(crate::coverage::Mark::ProposalAbandoned);
            let m = raft.metrics().borrow().clone();
            tracing::warn!(
                node = m.id,
                leader = ?m.current_leader,
                term = m.current_term,
                last_log = ?m.last_log_index,
                applied = ?m.last_applied,
                snapshot = ?m.snapshot,
                "gave up waiting for a proposal: {why}"
            );
            Err(ProposeError::Failed(why))
        }
    }
}

/// Resolves when a proposal made in `term` should no longer be waited for, with the reason.
async fn give_up(raft: &Raft, term: u64) -> String {
    let mut metrics = raft.metrics();
    let deadline = tokio::time::sleep(Duration::from_millis(WRITE_TIMEOUT_MS));
    tokio::pin!(deadline);
    loop {
        if metrics.borrow_and_update().current_term != term {
            return format!(
                "the term changed from {term} before the write committed: its outcome is unknown"
            );
        }
        tokio::select! {
            changed = metrics.changed() => {
                if changed.is_err() {
                    return "raft stopped before the write committed".into();
                }
            }
            () = &mut deadline => {
                return format!("the write did not commit within {WRITE_TIMEOUT_MS} ms: its outcome is unknown");
            }
        }
    }
}

async fn propose_unit(raft: &Raft, unit: Unit) {
    match unit {
        Unit::Single(p) => {
            let answer = client_write(raft, p.cmd).await.map(|resp| Written {
                index: resp.log_id.index,
                result: resp.data,
            });
            let _ = p.reply.send(answer);
        }
        Unit::Configs(items) => {
            crate::coverage::hit(crate::coverage::Mark::WritesBatched);
            let (mut batch, replies): (Vec<_>, Vec<_>) = items.into_iter().unzip();
            if crate::bugs::active(crate::bugs::Bug::BatchDropsWrite) {
                // Deliberate bug for the negative tier: the last write is acknowledged but
                // never proposed.
                batch.pop();
            }
            let batch_len = batch.len();
            let cmd = Command {
                now_ms: batch.iter().map(|b| b.now_ms).max().unwrap_or_default(),
                op: Op::Batch(batch),
            };
            match client_write(raft, cmd).await {
                Ok(resp) => {
                    let index = resp.log_id.index;
                    let mut results = match resp.data {
                        CommandResult::Batch(r) if r.len() == batch_len => r,
                        other => {
                            let e = format!("a batch applied as {other:?}");
                            for reply in replies {
                                let _ = reply.send(Err(ProposeError::Failed(e.clone())));
                            }
                            return;
                        }
                    };
                    if crate::bugs::active(crate::bugs::Bug::BatchDropsWrite) {
                        results
                            .push(crate::config::ConfigApplied::Published { md5: String::new() });
                    }
                    for (reply, result) in replies.into_iter().zip(results) {
                        let _ = reply.send(Ok(Written {
                            index,
                            result: CommandResult::Config(result),
                        }));
                    }
                }
                Err(e) => {
                    for reply in replies {
                        let _ = reply.send(Err(e.clone()));
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::PublishConfig;

    fn proposal(
        key: &str,
        op: Option<Op>,
    ) -> (Proposal, oneshot::Receiver<Result<Written, ProposeError>>) {
        let (reply, rx) = oneshot::channel();
        let op = op.unwrap_or_else(|| {
            Op::Config(ConfigCommand::Publish(PublishConfig::new(
                ConfigKey::new("", "G", key),
                "x",
            )))
        });
        (
            Proposal {
                cmd: Command { now_ms: 1, op },
                reply,
            },
            rx,
        )
    }

    fn keys(unit: &Unit) -> Vec<String> {
        match unit {
            Unit::Single(p) => match &p.cmd.op {
                Op::Config(c) => vec![config_key(c).data_id.clone()],
                _ => vec!["other".into()],
            },
            Unit::Configs(items) => items
                .iter()
                .map(|(b, _)| config_key(&b.command).data_id.clone())
                .collect(),
        }
    }

    #[test]
    fn a_unit_holds_distinct_keys_and_each_key_keeps_its_order() {
        let mut q: VecDeque<Proposal> = ["a", "b", "a", "c", "b", "d"]
            .into_iter()
            .map(|k| proposal(k, None).0)
            .collect();
        let first = take_unit(&mut q);
        assert_eq!(keys(&first), ["a", "b", "c", "d"]);
        let second = take_unit(&mut q);
        assert_eq!(keys(&second), ["a", "b"]);
        assert!(q.is_empty());
    }

    #[test]
    fn other_writes_go_alone_and_keep_their_place() {
        let purge = Some(Op::PurgeHistory { retention_ms: 1 });
        let mut q: VecDeque<Proposal> = vec![
            proposal("a", None).0,
            proposal("", purge.clone()).0,
            proposal("b", None).0,
        ]
        .into();
        assert_eq!(keys(&take_unit(&mut q)), ["a", "b"]);
        assert_eq!(keys(&take_unit(&mut q)), ["other"]);
        assert!(q.is_empty());
        let mut q: VecDeque<Proposal> = vec![proposal("", purge).0, proposal("a", None).0].into();
        assert_eq!(keys(&take_unit(&mut q)), ["other"]);
        assert!(matches!(take_unit(&mut q), Unit::Single(_)));
    }

    #[test]
    fn a_unit_stops_at_its_size_bound_and_a_big_write_goes_alone() {
        let big = |key: &str| {
            let content = "x".repeat(BATCH_BYTES_MAX / 2);
            Some(Op::Config(ConfigCommand::Publish(PublishConfig::new(
                ConfigKey::new("", "G", key),
                content,
            ))))
        };
        let mut q: VecDeque<Proposal> = vec![
            proposal("a", big("a")).0,
            proposal("b", big("b")).0,
            proposal("c", None).0,
            proposal("b", None).0,
        ]
        .into();
        // a and c fit; b does not, and b's second write waits behind it.
        assert_eq!(keys(&take_unit(&mut q)), ["a", "c"]);
        assert_eq!(keys(&take_unit(&mut q)), ["b"]);
        assert_eq!(keys(&take_unit(&mut q)), ["b"]);
        assert!(q.is_empty());
        let mut q: VecDeque<Proposal> = (0..BATCH_COMMANDS_MAX + 3)
            .map(|i| proposal(&format!("k{i}"), None).0)
            .collect();
        assert_eq!(keys(&take_unit(&mut q)).len(), BATCH_COMMANDS_MAX);
        assert_eq!(keys(&take_unit(&mut q)).len(), 3);
    }
}
