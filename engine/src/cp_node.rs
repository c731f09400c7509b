//! The CP side of a member: one Raft group, its storage, forward routing and the two read paths.
//!
//! - Writes go to the leader. A follower forwards them (at most `FORWARD_HOPS_MAX` hops), waits
//!   a bounded time for a leader to be known, then rejects with `Reject::NoLeader` (DESIGN §2).
//!   A forward whose fate is unknown (deadline passed after sending) is reported as
//!   `Reject::Timeout`, never retried: a retried publish could apply twice.
//! - Local reads come from this replica's state machine (Nacos semantics). After a write it
//!   forwarded, a follower waits (bounded) until it has applied that write, so a client reading
//!   through the node it wrote through sees its write.
//! - Linearizable reads use ReadIndex at the leader (`ensure_linearizable`).
//! - A fresh cluster does not elect until `bootstrap_expect` initial members answer a probe
//!   (like Consul's `-bootstrap-expect`), so nodes started one by one never split.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use openraft::error::{InitializeError, RaftError};
use openraft::{BasicNode, ChangeMembers, ServerState, SnapshotPolicy};

use crate::config::listen::ConfigChange;
use crate::config::{
    ConfigItem, ConfigKey, Effective, EffectiveConfig, GrayItem, GrayName, TagQuery,
};
use crate::constants::*;
use crate::error::{Fatal, Reject};
use crate::naming::distro::{DistroReply, NamingError};
use crate::ports::{Clock, Disk, PeerTransport, TransportError};
use crate::raft::batcher::{Batcher, ProposeError};
use crate::raft::command::{Command, Op};
use crate::raft::log_store::{LogStore, LogStoreOptions};
use crate::raft::network::NetworkFactory;
use crate::raft::state_machine::{CpState, StateMachineStore};
use crate::raft::type_config::Raft;
use crate::wire::{ClientRequest, ClientResponse, PeerRequest, PeerResponse, Written};

/// Tunables of a member's CP side; `Default` gives production values.
#[derive(Clone)]
pub struct CpOptions {
    pub id: u64,
    pub addr: String,
    /// The initial members (cluster.conf); empty for a node that joins an existing cluster.
    pub initial_members: BTreeMap<u64, String>,
    /// Initial members that must answer before the first election.
    pub bootstrap_expect: usize,
    pub snapshot_logs_since_last: u64,
    pub logs_kept_after_snapshot: u64,
    pub snapshot_max_age_ms: u64,
    pub log: LogStoreOptions,
}

impl CpOptions {
    /// Production defaults for member `id` at `addr`.
    pub fn new(id: u64, addr: impl Into<String>, initial_members: BTreeMap<u64, String>) -> Self {
        let expect = initial_members.len();
        CpOptions {
            id,
            addr: addr.into(),
            initial_members,
            bootstrap_expect: expect,
            snapshot_logs_since_last: SNAPSHOT_LOGS_SINCE_LAST,
            logs_kept_after_snapshot: LOGS_KEPT_AFTER_SNAPSHOT,
            snapshot_max_age_ms: SNAPSHOT_MAX_AGE_MS,
            log: LogStoreOptions::default(),
        }
    }
}

/// A point-in-time view of a member's Raft status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CpStatus {
    pub id: u64,
    pub leader: Option<u64>,
    pub term: u64,
    pub is_leader: bool,
    pub last_log_index: Option<u64>,
    pub last_applied: Option<u64>,
    pub snapshot_index: Option<u64>,
    pub purged_index: Option<u64>,
    pub voters: BTreeSet<u64>,
    pub learners: BTreeSet<u64>,
}

/// The CP side of one member.
pub struct CpNode {
    id: u64,
    raft: Raft,
    state: Arc<RwLock<CpState>>,
    transport: Arc<dyn PeerTransport>,
    clock: Arc<dyn Clock>,
    log: LogStore,
    config_changes: tokio::sync::broadcast::Sender<ConfigChange>,
    /// Group commit of the writes this member proposes as leader.
    batcher: Batcher,
}

fn raft_config(opts: &CpOptions) -> Result<Arc<openraft::Config>, Fatal> {
    let config = openraft::Config {
        cluster_name: "nacre".into(),
        heartbeat_interval: RAFT_HEARTBEAT_MS,
        election_timeout_min: RAFT_ELECTION_TIMEOUT_MIN_MS,
        election_timeout_max: RAFT_ELECTION_TIMEOUT_MAX_MS,
        install_snapshot_timeout: RAFT_RPC_TIMEOUT_MS * 4,
        max_payload_entries: APPEND_ENTRIES_MAX,
        snapshot_policy: SnapshotPolicy::LogsSinceLast(opts.snapshot_logs_since_last),
        max_in_snapshot_log_to_keep: opts.logs_kept_after_snapshot,
        snapshot_max_chunk_size: SNAPSHOT_CHUNK_BYTES,
        purge_batch_size: 1,
        ..Default::default()
    };
    config
        .validate()
        .map(Arc::new)
        .map_err(|e| Fatal::Io(format!("invalid raft config: {e}")))
}

impl CpNode {
    /// Opens storage, starts Raft and, for a fresh initial member, the bootstrap probe.
    pub async fn start(
        opts: CpOptions,
        disk: Arc<dyn Disk>,
        transport: Arc<dyn PeerTransport>,
        clock: Arc<dyn Clock>,
    ) -> Result<Arc<CpNode>, Fatal> {
        let config = raft_config(&opts)?;
        let log = LogStore::open(opts.id, disk.clone(), opts.log.clone())?;
        let sm = StateMachineStore::open(opts.id, disk, opts.log.observer.clone())?;
        let state = sm.state();
        let config_changes = sm.config_changes();
        let network = NetworkFactory {
            transport: transport.clone(),
        };
        let raft = Raft::new(opts.id, config, network, log.clone(), sm)
            .await
            .map_err(|e| Fatal::Io(format!("raft start: {e}")))?;
        let batcher = Batcher::start(raft.clone());
        let node = Arc::new(CpNode {
            id: opts.id,
            batcher,
            raft,
            state,
            transport,
            clock,
            log,
            config_changes,
        });
        if opts.initial_members.contains_key(&opts.id) {
            tokio::spawn(
                node.clone()
                    .bootstrap(opts.initial_members.clone(), opts.bootstrap_expect),
            );
        }
        tokio::spawn(node.clone().snapshot_age_ticker(opts.snapshot_max_age_ms));
        Ok(node)
    }

    /// This member's id.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The Raft handle (membership administration, metrics).
    pub fn raft(&self) -> &Raft {
        &self.raft
    }

    /// The replicated state, for local reads and digests.
    pub fn state(&self) -> Arc<RwLock<CpState>> {
        self.state.clone()
    }

    /// The log store (the simulator's log-matching checker reads it).
    pub fn log(&self) -> &LogStore {
        &self.log
    }

    /// Current Raft status.
    pub fn status(&self) -> CpStatus {
        let m = self.raft.metrics().borrow().clone();
        let membership = m.membership_config.membership();
        CpStatus {
            id: self.id,
            leader: m.current_leader,
            term: m.current_term,
            is_leader: m.state == ServerState::Leader,
            last_log_index: m.last_log_index,
            last_applied: m.last_applied.map(|l| l.index),
            snapshot_index: m.snapshot.map(|l| l.index),
            purged_index: m.purged.map(|l| l.index),
            voters: membership.voter_ids().collect(),
            learners: membership.learner_ids().collect(),
        }
    }

    /// Stops Raft.
    pub async fn shutdown(&self) {
        if let Err(e) = self.raft.shutdown().await {
            tracing::warn!(node = self.id, "raft shutdown: {e}");
        }
    }

    /// Hears every config change this replica applies, in apply order (config listeners, wire
    /// reference §2.4). Subscribe before reading the state so no change falls in between; on
    /// `Lagged`, re-check every watched key against the state.
    pub fn subscribe_config_changes(&self) -> tokio::sync::broadcast::Receiver<ConfigChange> {
        self.config_changes.subscribe()
    }

    /// Reads one config from the local replica.
    pub fn get_local(&self, key: &ConfigKey) -> Option<ConfigItem> {
        self.state
            .read()
            .expect("state lock poisoned")
            .configs
            .get(key)
            .cloned()
    }

    /// What the client at `client_ip` asking with `tag` is served for `key` (main, beta or tag
    /// item), from the local replica; `None` is "config data not exist".
    pub fn get_effective_local(
        &self,
        key: &ConfigKey,
        client_ip: &str,
        tag: TagQuery<'_>,
    ) -> Option<EffectiveConfig> {
        self.state
            .read()
            .expect("state lock poisoned")
            .configs
            .effective(key, client_ip, tag)
            .map(|e| e.to_config())
    }

    /// Runs `f` on what a client at `client_ip` with `tag` is served, from the local replica,
    /// under the state's read lock: the hot read path renders its answer without copying the
    /// whole item first. `f` must be short.
    pub fn with_effective_local<R>(
        &self,
        key: &ConfigKey,
        client_ip: &str,
        tag: TagQuery<'_>,
        f: impl FnOnce(Option<Effective<'_>>) -> R,
    ) -> R {
        let state = self.state.read().expect("state lock poisoned");
        f(state.configs.effective(key, client_ip, tag))
    }

    /// The md5 a listening client at `client_ip` with `vipserver_tag` is compared with, from
    /// the local replica (`""` when it is served nothing).
    pub fn effective_md5_local(
        &self,
        key: &ConfigKey,
        client_ip: &str,
        vipserver_tag: Option<&str>,
    ) -> String {
        self.state
            .read()
            .expect("state lock poisoned")
            .configs
            .effective_md5(key, client_ip, vipserver_tag)
    }

    /// One gray item of `key` from the local replica (the console's beta view).
    pub fn get_gray_local(&self, key: &ConfigKey, name: &GrayName) -> Option<GrayItem> {
        self.state
            .read()
            .expect("state lock poisoned")
            .configs
            .gray(key, name)
            .cloned()
    }

    /// Replicates `op`, stamped with this member's clock.
    pub async fn write(&self, op: Op) -> Result<Written, Reject> {
        let cmd = Command {
            now_ms: self.clock.now_ms(),
            op,
        };
        self.write_command(cmd, 0).await
    }

    /// Handles a client request arriving at this member (directly or forwarded `hops` times).
    pub async fn handle_client(
        &self,
        request: ClientRequest,
        hops: u8,
    ) -> Result<ClientResponse, Reject> {
        match request {
            ClientRequest::Write(cmd) => self
                .write_command(cmd, hops)
                .await
                .map(ClientResponse::Written),
            ClientRequest::GetLocal(key) => Ok(ClientResponse::Config(self.get_local(&key))),
            ClientRequest::GetLinearizable(key) => self
                .get_linearizable_hops(key, hops)
                .await
                .map(ClientResponse::Config),
            ClientRequest::AddMember { id, addr } => self.add_member(id, addr, hops).await,
            ClientRequest::RemoveMember { id } => self.remove_member(id, hops).await,
        }
    }

    /// Handles a request from another member.
    pub async fn handle_peer(&self, request: PeerRequest) -> PeerResponse {
        match request {
            PeerRequest::RaftAppend(rpc) => {
                PeerResponse::RaftAppend(self.raft.append_entries(rpc).await)
            }
            PeerRequest::RaftVote(rpc) => PeerResponse::RaftVote(self.raft.vote(rpc).await),
            PeerRequest::RaftSnapshot(rpc) => {
                PeerResponse::RaftSnapshot(self.raft.install_snapshot(rpc).await)
            }
            PeerRequest::Forward { hops, request } => {
                PeerResponse::Forward(Box::pin(self.handle_client(request, hops)).await)
            }
            PeerRequest::Ping => PeerResponse::Pong {
                initialized: self.is_initialized(),
            },
            // Naming is served by `member::Member`; a bare CP node has none.
            PeerRequest::Distro { .. } => PeerResponse::Distro(DistroReply::Rejected),
            PeerRequest::Naming { .. } => PeerResponse::Naming(Err(NamingError::Invalid(
                "this member serves no naming requests".into(),
            ))),
        }
    }

    /// Reads one config linearizably.
    pub async fn get_linearizable(&self, key: &ConfigKey) -> Result<Option<ConfigItem>, Reject> {
        self.get_linearizable_hops(key.clone(), 0).await
    }

    fn is_initialized(&self) -> bool {
        let m = self.raft.metrics().borrow().clone();
        m.last_log_index.is_some()
            || m.membership_config
                .membership()
                .voter_ids()
                .next()
                .is_some()
    }

    /// Waits until a leader is known; its id and address.
    async fn wait_leader(&self, deadline: tokio::time::Instant) -> Result<(u64, String), Reject> {
        loop {
            let m = self.raft.metrics().borrow().clone();
            if let Some(leader) = m.current_leader {
                if let Some(node) = m.membership_config.membership().get_node(&leader) {
                    return Ok((leader, node.addr.clone()));
                }
            }
            if runtime_now() >= deadline {
                crate::coverage::hit(crate::coverage::Mark::NoLeaderRejected);
                return Err(Reject::NoLeader {
                    waited_ms: WRITE_LEADER_WAIT_MS,
                });
            }
            tokio::time::sleep(Duration::from_millis(WAIT_POLL_MS)).await;
        }
    }

    fn leader_deadline() -> tokio::time::Instant {
        runtime_now() + Duration::from_millis(WRITE_LEADER_WAIT_MS)
    }

    async fn write_command(&self, cmd: Command, hops: u8) -> Result<Written, Reject> {
        let deadline = Self::leader_deadline();
        loop {
            let (leader, addr) = self.wait_leader(deadline).await?;
            if leader == self.id {
                match self.batcher.propose(cmd.clone()).await {
                    Ok(written) => return Ok(written),
                    Err(ProposeError::NotLeader) => {
                        tokio::time::sleep(Duration::from_millis(WAIT_POLL_MS)).await;
                        continue;
                    }
                    Err(ProposeError::Failed(e)) => return Err(Reject::Unavailable(e)),
                }
            }
            let request = ClientRequest::Write(cmd.clone());
            match self
                .forward(leader, &addr, request, hops, WRITE_TIMEOUT_MS)
                .await
            {
                Ok(ClientResponse::Written(w)) => {
                    self.wait_applied(w.index).await;
                    return Ok(w);
                }
                Ok(other) => {
                    return Err(Reject::Unavailable(format!(
                        "unexpected forward answer {other:?}"
                    )))
                }
                Err(Retry::NotSent) if runtime_now() < deadline => {
                    crate::coverage::hit(crate::coverage::Mark::ForwardRetried);
                    tokio::time::sleep(Duration::from_millis(WAIT_POLL_MS)).await;
                }
                Err(Retry::NotSent) => {
                    return Err(Reject::NoLeader {
                        waited_ms: WRITE_LEADER_WAIT_MS,
                    })
                }
                Err(Retry::Final(r)) => return Err(r),
            }
        }
    }

    /// Sends a client request to the leader. `Retry::NotSent` means it certainly did not execute.
    async fn forward(
        &self,
        leader: u64,
        addr: &str,
        request: ClientRequest,
        hops: u8,
        timeout_ms: u64,
    ) -> Result<ClientResponse, Retry> {
        if hops >= FORWARD_HOPS_MAX {
            return Err(Retry::Final(Reject::NoLeader { waited_ms: 0 }));
        }
        let msg = PeerRequest::Forward {
            hops: hops + 1,
            request,
        };
        let call = self
            .transport
            .call(leader, addr, msg, Duration::from_millis(timeout_ms));
        // If this member sees another leader while waiting, the old one cannot commit any
        // more: stop waiting for it. The outcome is still unknown (it may have been committed
        // before the change), so the caller gets a timeout, not a retry.
        let answer = tokio::select! {
            biased;
            answer = call => answer,
            () = self.leader_changed_from(leader) => {
                crate::coverage::hit(crate::coverage::Mark::ForwardAbandonedOnLeaderChange);
                Err(TransportError::Timeout)
            }
        };
        match answer {
            Ok(PeerResponse::Forward(Ok(resp))) => Ok(resp),
            // The leader moved on before executing it: safe to route again.
            Ok(PeerResponse::Forward(Err(Reject::NoLeader { .. }))) => Err(Retry::NotSent),
            Ok(PeerResponse::Forward(Err(r))) => Err(Retry::Final(r)),
            Ok(_) => Err(Retry::Final(Reject::Unavailable(
                "bad forward answer".into(),
            ))),
            Err(TransportError::Unreachable(_)) => Err(Retry::NotSent),
            Err(TransportError::Timeout) | Err(TransportError::BadResponse(_)) => {
                Err(Retry::Final(Reject::Timeout(timeout_ms)))
            }
        }
    }

    /// Resolves once this member knows a leader other than `leader`.
    async fn leader_changed_from(&self, leader: u64) {
        loop {
            tokio::time::sleep(Duration::from_millis(WAIT_POLL_MS)).await;
            let current = self.raft.metrics().borrow().current_leader;
            if current.is_some_and(|l| l != leader) {
                return;
            }
        }
    }

    /// Waits (bounded) until this replica has applied `index`.
    async fn wait_applied(&self, index: u64) {
        let wait = self
            .raft
            .wait(Some(Duration::from_millis(WRITE_TIMEOUT_MS)));
        if let Err(e) = wait
            .applied_index_at_least(Some(index), "read-your-writes")
            .await
        {
            tracing::debug!(node = self.id, index, "local apply wait ended: {e}");
        }
    }

    async fn get_linearizable_hops(
        &self,
        key: ConfigKey,
        hops: u8,
    ) -> Result<Option<ConfigItem>, Reject> {
        let deadline = Self::leader_deadline();
        loop {
            let (leader, addr) = self.wait_leader(deadline).await?;
            if crate::bugs::active(crate::bugs::Bug::StaleRead) {
                // Deliberate bug for the negative tier: a "linearizable" read served locally.
                return Ok(self.get_local(&key));
            }
            if leader == self.id {
                match self.raft.ensure_linearizable().await {
                    Ok(_) => {
                        crate::coverage::hit(crate::coverage::Mark::ReadIndexServed);
                        return Ok(self.get_local(&key));
                    }
                    Err(RaftError::APIError(_)) if runtime_now() < deadline => {
                        tokio::time::sleep(Duration::from_millis(WAIT_POLL_MS)).await;
                        continue;
                    }
                    Err(e) => return Err(Reject::Unavailable(e.to_string())),
                }
            }
            let request = ClientRequest::GetLinearizable(key.clone());
            match self
                .forward(leader, &addr, request, hops, READ_TIMEOUT_MS)
                .await
            {
                Ok(ClientResponse::Config(item)) => return Ok(item),
                Ok(other) => {
                    return Err(Reject::Unavailable(format!(
                        "unexpected forward answer {other:?}"
                    )))
                }
                Err(Retry::NotSent) if runtime_now() < deadline => {
                    crate::coverage::hit(crate::coverage::Mark::ForwardRetried);
                    tokio::time::sleep(Duration::from_millis(WAIT_POLL_MS)).await;
                }
                Err(Retry::NotSent) => {
                    return Err(Reject::NoLeader {
                        waited_ms: WRITE_LEADER_WAIT_MS,
                    })
                }
                Err(Retry::Final(r)) => return Err(r),
            }
        }
    }

    async fn add_member(&self, id: u64, addr: String, hops: u8) -> Result<ClientResponse, Reject> {
        let (leader, leader_addr) = self.wait_leader(Self::leader_deadline()).await?;
        if leader != self.id {
            let request = ClientRequest::AddMember { id, addr };
            return self
                .forward(leader, &leader_addr, request, hops, WRITE_TIMEOUT_MS * 4)
                .await
                .map_err(Retry::into_reject);
        }
        let status = self.status();
        if status.voters.contains(&id) {
            return Ok(ClientResponse::MembershipChanged);
        }
        // Learner first: it catches up (by snapshot if the log was purged) before it can vote.
        self.raft
            .add_learner(id, BasicNode::new(addr), true)
            .await
            .map_err(|e| Reject::Unavailable(e.to_string()))?;
        let change = ChangeMembers::AddVoterIds(BTreeSet::from([id]));
        self.raft
            .change_membership(change, false)
            .await
            .map_err(|e| Reject::Unavailable(e.to_string()))?;
        crate::coverage::hit(crate::coverage::Mark::MemberAdded);
        Ok(ClientResponse::MembershipChanged)
    }

    async fn remove_member(&self, id: u64, hops: u8) -> Result<ClientResponse, Reject> {
        let (leader, leader_addr) = self.wait_leader(Self::leader_deadline()).await?;
        if leader != self.id {
            let request = ClientRequest::RemoveMember { id };
            return self
                .forward(leader, &leader_addr, request, hops, WRITE_TIMEOUT_MS)
                .await
                .map_err(Retry::into_reject);
        }
        let change = ChangeMembers::RemoveVoters(BTreeSet::from([id]));
        self.raft
            .change_membership(change, false)
            .await
            .map_err(|e| Reject::Unavailable(e.to_string()))?;
        crate::coverage::hit(crate::coverage::Mark::MemberRemoved);
        Ok(ClientResponse::MembershipChanged)
    }

    /// Probes the initial members until `expect` of them (this one included) answer, then
    /// initializes the group with all of them. Every initial member proposes the same
    /// membership at log index 0, so concurrent initialization is harmless. When any peer
    /// already belongs to a cluster, this member never initializes: it waits to be added.
    async fn bootstrap(self: Arc<Self>, members: BTreeMap<u64, String>, expect: usize) {
        let nodes: BTreeMap<u64, BasicNode> = members
            .iter()
            .map(|(id, a)| (*id, BasicNode::new(a.clone())))
            .collect();
        loop {
            if self.is_initialized() {
                return;
            }
            let mut up = 1usize;
            let mut joined_peer = false;
            for (id, addr) in members.iter().filter(|(id, _)| **id != self.id) {
                let probe = self.transport.call(
                    *id,
                    addr,
                    PeerRequest::Ping,
                    Duration::from_millis(BOOTSTRAP_PROBE_MS),
                );
                if let Ok(PeerResponse::Pong { initialized }) = probe.await {
                    up += 1;
                    joined_peer |= initialized;
                }
            }
            // A peer that already belongs to a cluster means this member joins it: the leader
            // adds it (as a learner first), and its own membership proposal would conflict.
            if up >= expect && !joined_peer {
                match self.raft.initialize(nodes.clone()).await {
                    Ok(()) => return,
                    Err(RaftError::APIError(InitializeError::NotAllowed(_))) => return,
                    Err(e) => tracing::warn!(node = self.id, "initialize: {e}"),
                }
            }
            tokio::time::sleep(Duration::from_millis(BOOTSTRAP_PROBE_MS)).await;
        }
    }

    /// Builds a snapshot when the last one is older than `max_age_ms` and entries were applied
    /// since: disk stays bounded on clusters that write too little to hit the count trigger.
    async fn snapshot_age_ticker(self: Arc<Self>, max_age_ms: u64) {
        let mut last_snapshot_applied = None;
        loop {
            tokio::time::sleep(Duration::from_millis(max_age_ms)).await;
            let status = self.status();
            if status.last_applied.is_some()
                && status.last_applied != status.snapshot_index
                && status.last_applied != last_snapshot_applied
            {
                last_snapshot_applied = status.last_applied;
                if self.raft.trigger().snapshot().await.is_err() {
                    return;
                }
            }
        }
    }
}

/// The async runtime's monotonic clock, for request deadlines only: real time in production,
/// simulated time under madsim. Protocol decisions never read it.
#[allow(clippy::disallowed_methods)]
fn runtime_now() -> tokio::time::Instant {
    tokio::time::Instant::now()
}

/// The outcome of a forward that did not produce an answer.
enum Retry {
    /// The request certainly did not execute; routing again is safe.
    NotSent,
    /// Report this to the caller.
    Final(Reject),
}

impl Retry {
    fn into_reject(self) -> Reject {
        match self {
            Retry::NotSent => Reject::NoLeader { waited_ms: 0 },
            Retry::Final(r) => r,
        }
    }
}
