//! Distro: AP replication of ephemeral naming data between members, as a sans-IO state
//! machine (DESIGN §2, wire reference §5.4).
//!
//! Inputs are method calls carrying `now` (monotonic milliseconds); outputs are `Effect`s the
//! driver drains: messages to send (whose outcome comes back through `on_reply`) and pushes to
//! local subscribers. Nothing here touches a clock, a socket or a random source.
//!
//! Ownership. A connection client belongs to the member holding its connection. An HTTP
//! (`ip:port`) client belongs to the member responsible for its tag over the sorted healthy
//! members (`java_hash`); writes elsewhere are routed there. Only the owner changes a client,
//! and a member accepts a remote change only from the member it believes owns the client.
//!
//! Replication. A change queues a sync task per other member, merged per key (newest action
//! wins, the first due time stays) and sent after `sync_delay_ms`, the tasks due for one member
//! together in one message (`DistroMsg::Batch`); a failed send is retried after
//! `sync_retry_ms`, one send per key and target at a time so a target never sees two versions
//! out of order. Every `verify_interval_ms` an owner sends each member the manifest of
//! the clients it owns (revision and digest per client); the receiver renews matching copies,
//! reports the rest as failed — the owner resends them at once — and drops copies attributed to
//! that owner which the manifest no longer lists. A starting member loads a snapshot from its
//! peers, one after another, before it sends manifests; a loaded snapshot only adds clients the
//! member does not have, so it never deletes what clients registered meanwhile.
//!
//! Expiry. The owner of an HTTP client marks an instance unhealthy after `beat_unhealthy_ms`
//! without a beat and deletes it after `beat_delete_ms` (or the instance's own
//! `preserved.heart.beat.timeout` / `preserved.ip.delete.timeout` metadata); a connection idle for `conn_idle_ms`
//! is closed; a synced copy not renewed for `synced_expire_ms` is dropped. The pass at every tick
//! looks only at the clients whose time came (`Client::look_at_ms`), and at all of them when the
//! healthy members changed.
//!
//! Member health. Every `report_interval_ms` each member reports to every other member; an
//! answer or an incoming report marks the peer UP, a failure SUSPICIOUS, `member_fail_max`
//! consecutive failures DOWN. The healthy list (UP and SUSPICIOUS, plus self) decides HTTP
//! client ownership.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::constants as c;
use crate::coverage::{hit, Mark};
use crate::digest::fnv64;
use crate::naming::java_hash::responsible;
use crate::naming::{Instance, ServiceKey, META_BEAT_TIMEOUT, META_DELETE_TIMEOUT};
use crate::vec_map::VecMap;

/// Timing of Distro; the defaults are in `constants` (Nacos defaults unless noted there).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DistroTimings {
    /// Merge delay of a sync task.
    pub sync_delay_ms: u64,
    /// Retry delay of a failed sync.
    pub sync_retry_ms: u64,
    /// Period of the verify manifests.
    pub verify_interval_ms: u64,
    /// Wait before a new round of snapshot load after every peer failed (Nacos: 30 s; Nacre
    /// retries sooner so a member restarted during a partition converges soon after the heal).
    pub load_retry_ms: u64,
    /// Period of member reports (Nacos reports round robin every 2 s; Nacre reports to every
    /// member each period, so a dead member is DOWN after `member_fail_max` periods).
    pub report_interval_ms: u64,
    /// Consecutive failed reports that make a member DOWN.
    pub member_fail_max: u32,
    /// An HTTP client's instance is unhealthy after this long without a beat.
    pub beat_unhealthy_ms: u64,
    /// An HTTP client's instance is deleted after this long without a beat.
    pub beat_delete_ms: u64,
    /// A synced (non-owned) client is dropped this long after its last renewal.
    pub synced_expire_ms: u64,
    /// A connection without a keepalive for this long is closed.
    pub conn_idle_ms: u64,
}

impl Default for DistroTimings {
    fn default() -> Self {
        DistroTimings {
            sync_delay_ms: c::DISTRO_SYNC_DELAY_MS,
            sync_retry_ms: c::DISTRO_SYNC_RETRY_MS,
            verify_interval_ms: c::DISTRO_VERIFY_INTERVAL_MS,
            load_retry_ms: c::DISTRO_LOAD_RETRY_MS,
            report_interval_ms: c::MEMBER_REPORT_INTERVAL_MS,
            member_fail_max: c::MEMBER_FAIL_MAX,
            beat_unhealthy_ms: c::CLIENT_BEAT_UNHEALTHY_MS,
            beat_delete_ms: c::CLIENT_BEAT_DELETE_MS,
            synced_expire_ms: c::SYNCED_CLIENT_EXPIRE_MS,
            conn_idle_ms: c::CONNECTION_IDLE_MS,
        }
    }
}

/// How a client reached the cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum ClientKind {
    /// A gRPC connection (2.x SDKs), owned by the member holding it.
    Connection,
    /// An HTTP `ip:port` client (1.x style), owned by the responsible member.
    IpPort,
}

/// The replicated data of one client: what it publishes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClientData {
    pub id: String,
    pub kind: ClientKind,
    /// Incremented by the owner on every change.
    pub revision: u64,
    /// One instance per service (`InstanceRequest`, HTTP clients).
    pub instances: VecMap<ServiceKey, Instance>,
    /// Lists of instances per service (`BatchInstanceRequest`; connection clients only). A
    /// service is in at most one of the two maps.
    pub batches: BTreeMap<ServiceKey, Vec<Instance>>,
}

impl ClientData {
    /// A client without instances.
    pub fn empty(id: &str, kind: ClientKind) -> ClientData {
        ClientData {
            id: id.to_string(),
            kind,
            revision: 0,
            instances: VecMap::new(),
            batches: BTreeMap::new(),
        }
    }

    /// The services the client publishes instances of.
    pub fn services(&self) -> impl Iterator<Item = &ServiceKey> {
        self.instances.keys().chain(self.batches.keys())
    }

    /// The services whose instances from this client differ between `self` and `other`
    /// (published in one only included), in order, each once. One merge pass over the sorted
    /// maps: a connection may publish in hundreds of services.
    pub fn changed_services<'a>(&'a self, other: &'a ClientData) -> Vec<&'a ServiceKey> {
        let mut out = Vec::new();
        diff_keys(self.instances.iter(), other.instances.iter(), &mut out);
        diff_keys(self.batches.iter(), other.batches.iter(), &mut out);
        out.sort();
        out.dedup();
        out
    }

    /// True when the client publishes an instance of `service`.
    pub fn publishes(&self, service: &ServiceKey) -> bool {
        self.instances.contains_key(service) || self.batches.contains_key(service)
    }

    /// The instances the client publishes for `service`.
    pub fn instances_of<'a>(&'a self, service: &ServiceKey) -> impl Iterator<Item = &'a Instance> {
        self.instances
            .get(service)
            .into_iter()
            .chain(self.batches.get(service).into_iter().flatten())
    }

    /// True when the client publishes nothing.
    pub fn is_empty(&self) -> bool {
        self.instances.is_empty() && self.batches.is_empty()
    }

    /// A digest of the whole client data, compared by verify.
    pub fn digest(&self) -> u64 {
        fnv64(&postcard::to_allocvec(self).unwrap_or_default())
    }
}

/// Whether member `me` owns client `c`, with `healthy` the sorted healthy members (see
/// `Distro::responsible_for`, without building the answer).
fn owns(me: &str, healthy: &[String], c: &Client) -> bool {
    match c.data.kind {
        ClientKind::Connection => c.origin == Origin::Local,
        ClientKind::IpPort => {
            // With no healthy list at all this member is responsible for every tag.
            responsible(tag_of(&c.data.id), healthy).is_none_or(|r| r == me)
        }
    }
}

/// What expiry does to one client.
enum Expiry {
    Nothing,
    /// An owned connection without a keepalive for too long.
    IdleConn {
        last_keepalive: u64,
    },
    /// A copy not renewed for too long.
    Dropped,
    /// An owned HTTP client some of whose instances became unhealthy or timed out (`data` is
    /// its new version), the deletions resting on a beat seen at `evidence`.
    Changed {
        data: ClientData,
        evidence: u64,
    },
}

/// Applies the passage of time to client `c` (owned here or not) at `now`: updates what it
/// keeps for that (`owned_since_ms`, `quiet_until_ms`) and says what must happen to it, and
/// the earliest time anything can happen to it next, as long as it does not change.
fn check_expiry(c: &mut Client, owned: bool, now: u64, t: &DistroTimings) -> (Expiry, u64) {
    let owned_since_ms = match (owned, c.owned_since_ms) {
        (true, since) => Some(since.unwrap_or(now)),
        (false, _) => None,
    };
    if owned_since_ms != c.owned_since_ms {
        c.owned_since_ms = owned_since_ms;
        c.quiet_until_ms = None;
    }
    if !owned {
        let next = c.last_renew_ms.saturating_add(t.synced_expire_ms + 1);
        return match now.saturating_sub(c.last_renew_ms) > t.synced_expire_ms {
            true => (Expiry::Dropped, next),
            false => (Expiry::Nothing, next),
        };
    }
    if c.data.kind == ClientKind::Connection {
        let next = c.last_renew_ms.saturating_add(t.conn_idle_ms + 1);
        return match now.saturating_sub(c.last_renew_ms) > t.conn_idle_ms {
            true => (
                Expiry::IdleConn {
                    last_keepalive: c.last_renew_ms,
                },
                next,
            ),
            false => (Expiry::Nothing, next),
        };
    }
    if let Some(q) = c.quiet_until_ms.filter(|q| now <= *q) {
        return (Expiry::Nothing, q.saturating_add(1));
    }
    let mut data: Option<ClientData> = None;
    let mut evidence = 0;
    let mut quiet_until = u64::MAX;
    for (s, inst) in c.data.instances.iter() {
        let last_beat = c.beats.get(s).copied().unwrap_or(0);
        let beat = last_beat.max(c.owned_since_ms.unwrap_or(now));
        let silent = now.saturating_sub(beat);
        // The instance's own timeouts (preserved metadata) win.
        let delete_ms = inst.meta_ms(META_DELETE_TIMEOUT, t.beat_delete_ms);
        let unhealthy_ms = inst.meta_ms(META_BEAT_TIMEOUT, t.beat_unhealthy_ms);
        // Nothing happens to this instance while `now` is at most `beat` plus the timeout
        // that applies to it.
        let timeout = if inst.healthy {
            delete_ms.min(unhealthy_ms)
        } else {
            delete_ms
        };
        quiet_until = quiet_until.min(beat.saturating_add(timeout));
        if silent > delete_ms {
            data.get_or_insert_with(|| c.data.clone())
                .instances
                .remove(s);
            evidence = evidence.max(last_beat);
        } else if silent > unhealthy_ms && inst.healthy {
            let d = data.get_or_insert_with(|| c.data.clone());
            if let Some(i) = d.instances.get_mut(s) {
                i.healthy = false;
            }
        }
    }
    match data {
        // The new version is filed again when it is stored.
        Some(data) => (Expiry::Changed { data, evidence }, now.saturating_add(1)),
        None => {
            c.quiet_until_ms = Some(quiet_until);
            (Expiry::Nothing, quiet_until.saturating_add(1))
        }
    }
}

/// Appends to `out` the keys whose values differ between two maps given in key order (a key
/// present in one only included).
fn diff_keys<'a, K: Ord + 'a, V: PartialEq + 'a>(
    a: impl Iterator<Item = (&'a K, &'a V)>,
    b: impl Iterator<Item = (&'a K, &'a V)>,
    out: &mut Vec<&'a K>,
) {
    let (mut a, mut b) = (a.peekable(), b.peekable());
    loop {
        match (a.peek(), b.peek()) {
            (None, None) => return,
            (Some(&(k, _)), None) => {
                out.push(k);
                a.next();
            }
            (None, Some(&(k, _))) => {
                out.push(k);
                b.next();
            }
            (Some(&(ka, va)), Some(&(kb, vb))) => match ka.cmp(kb) {
                std::cmp::Ordering::Less => {
                    out.push(ka);
                    a.next();
                }
                std::cmp::Ordering::Greater => {
                    out.push(kb);
                    b.next();
                }
                std::cmp::Ordering::Equal => {
                    if va != vb {
                        out.push(ka);
                    }
                    a.next();
                    b.next();
                }
            },
        }
    }
}

/// The client id of an HTTP client: `ip:port#true`.
pub fn ip_port_client_id(ip: &str, port: u16) -> String {
    format!("{ip}:{port}#true")
}

/// The ownership tag of a client id (`ip:port` for HTTP clients).
fn tag_of(client: &str) -> &str {
    client.strip_suffix("#true").unwrap_or(client)
}

/// One entry of a verify manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerifyEntry {
    pub client: String,
    pub revision: u64,
    pub digest: u64,
}

/// A Distro message from one member to another.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum DistroMsg {
    /// The full data of a client (ADD/CHANGE).
    Sync(ClientData),
    /// The client is gone; the deletion rests on evidence `age_ms` old when this was sent (the
    /// deregistration itself, or the last beat or keepalive before a timeout). A copy renewed
    /// or beaten after that is newer than the deletion and is kept (a timeout on one side of a
    /// partition must not remove a client the other side kept alive).
    Delete { client: String, age_ms: u64 },
    /// The manifest of every client the sender owns, and a digest of the sender's healthy
    /// member list (HTTP client ownership depends on it: omissions count only when the
    /// receiver's list is the same).
    Verify {
        clients: Vec<VerifyEntry>,
        members_digest: u64,
    },
    /// A copy of an HTTP client the receiver owns but did not list in its manifest, handed
    /// to it by a member that saw the client alive `age_ms` ago (ownership moved to a member
    /// without a copy, e.g. after a partition).
    Handoff { data: ClientData, age_ms: u64 },
    /// Asks for every client the receiver knows.
    SnapshotQuery,
    /// The sender is alive.
    Report,
    /// Several changes for the receiver, each taken as the `Sync` or `Delete` it stands for,
    /// in order; answered `Ok` (the sender acts on no item's own answer). A member sends the
    /// changes due for a peer in one message instead of a call per client.
    Batch(Vec<SyncItem>),
}

/// One change of a `DistroMsg::Batch`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum SyncItem {
    /// As `DistroMsg::Sync`.
    Sync(ClientData),
    /// As `DistroMsg::Delete`.
    Delete { client: String, age_ms: u64 },
}

/// Most changes in one `DistroMsg::Batch`.
pub const BATCH_ITEMS_MAX: usize = 512;
/// A batch stops growing once its changes encode to this many bytes (far below the peer frame
/// limit, so one large client never pushes a batch over it).
pub const BATCH_BYTES_MAX: usize = 1024 * 1024;

/// The answer to a `DistroMsg`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum DistroReply {
    Ok,
    /// The receiver does not take this change from the sender (it owns the client, or believes
    /// another member does); the sender drops it.
    Rejected,
    /// Clients of the manifest whose copy is missing or differs.
    Verified {
        failed: Vec<String>,
    },
    /// Every client the receiver knows, with the member that owns it.
    Snapshot(Vec<(ClientData, String)>),
}

/// What the driver must do.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// Send `msg` to member `to`; report the outcome with `on_reply(id, ..)`.
    Send { id: u64, to: String, msg: DistroMsg },
    /// Tell a local subscriber the new instance list of a service.
    Push {
        subscriber: String,
        service: ServiceKey,
        hosts: Vec<Instance>,
    },
}

/// Health of a peer member.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum MemberState {
    Up,
    Suspicious,
    Down,
}

/// Why a client operation was refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum NamingError {
    #[error("connection {0} is not known to this server")]
    UnknownConnection(String),
    #[error("{0}")]
    Invalid(String),
    #[error("forward to the responsible server failed: {0}")]
    ForwardFailed(String),
}

/// A write of an HTTP (`ip:port`) client, routed to the responsible member.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum IpPortWrite {
    Register {
        service: ServiceKey,
        instance: Instance,
    },
    Deregister {
        service: ServiceKey,
        ip: String,
        port: u16,
    },
    Beat {
        service: ServiceKey,
        ip: String,
        port: u16,
    },
}

impl IpPortWrite {
    /// The ownership tag (`ip:port`) of the write's client.
    pub fn tag(&self) -> String {
        match self {
            IpPortWrite::Register { instance, .. } => instance.address(),
            IpPortWrite::Deregister { ip, port, .. } | IpPortWrite::Beat { ip, port, .. } => {
                format!("{ip}:{port}")
            }
        }
    }
}

/// The outcome of an HTTP client write, with the member that applied it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum IpPortOutcome {
    Done {
        at: String,
    },
    /// A beat for an instance the responsible member does not know (Nacos code 20404).
    BeatNotFound {
        at: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Origin {
    /// Created or last changed here.
    Local,
    /// A copy last sent (or confirmed) by this member.
    Remote(String),
}

#[derive(Debug, Clone)]
struct Client {
    data: ClientData,
    origin: Origin,
    /// Last sync or verify that confirmed a remote copy; last keepalive of a local connection.
    last_renew_ms: u64,
    /// Last beat per published service (HTTP clients).
    beats: VecMap<ServiceKey, u64>,
    /// Since when this member has owned the client without interruption (HTTP clients): a new
    /// owner counts silence from here, so a stale copy taken over after a partition or a
    /// membership change gives the client a full delete timeout to beat its new owner.
    owned_since_ms: Option<u64>,
    /// An owned HTTP client whose instances were checked by `expire`: none of them times out
    /// before this time, as long as its data, beats and `owned_since_ms` stay as they were
    /// (every change of those clears it). Spares `expire` looking at every instance each tick.
    quiet_until_ms: Option<u64>,
    /// `expire` looks at this client from this time on: never later than the first time its
    /// expiry can do anything to it. A look may be early (it then only sets the time again);
    /// a change that could bring that time forward sets it to 0. Spares `expire` the ownership
    /// and timeout checks of every client at every tick.
    look_at_ms: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TaskOp {
    Change,
    Delete,
}

#[derive(Debug, Clone, Copy)]
struct Task {
    due_ms: u64,
    op: TaskOp,
    /// When the action happened here.
    at_ms: u64,
}

#[derive(Debug, Clone)]
enum InFlight {
    Handoff,
    /// Changes of clients sent to `target`, each with the time its action happened here.
    Sync {
        target: String,
        clients: Vec<(String, u64)>,
    },
    Verify {
        target: String,
    },
    Load {
        target: String,
    },
    Report {
        target: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Peer {
    state: MemberState,
    fails: u32,
}

#[derive(Debug, Clone)]
enum Load {
    /// Waiting until `at_ms` before the next round; the round asks members in order.
    Waiting {
        at_ms: u64,
    },
    /// Asking member `index` of the round.
    Asking {
        index: usize,
    },
    Done,
}

/// The clients publishing instances of one service.
#[derive(Debug, Default)]
struct Listed {
    clients: BTreeSet<String>,
    /// The instances those clients publish for the service, a copy per client.
    instances: usize,
    /// Changes whenever what a client publishes for the service may have changed; never
    /// repeats for the same service, even after it was gone (see `Distro::generation_of`).
    generation: u64,
}

/// The Distro state machine of one member.
#[derive(Debug)]
pub struct Distro {
    me: String,
    timings: DistroTimings,
    peers: BTreeMap<String, Peer>,
    /// `healthy_members()`, recomputed when a peer's health or the member list changes.
    healthy: Vec<String>,
    clients: BTreeMap<String, Client>,
    by_service: BTreeMap<ServiceKey, Listed>,
    /// Source of `Listed::generation`; only grows.
    generation: u64,
    subscribers: BTreeMap<ServiceKey, BTreeSet<String>>,
    last_pushed: BTreeMap<ServiceKey, u64>,
    touched: BTreeSet<ServiceKey>,
    tasks: BTreeMap<(String, String), Task>,
    /// HTTP clients this member deleted as their owner, with the time of the evidence the
    /// deletion rests on; a handoff with older evidence is refused. Kept `beat_delete_ms`.
    tombstones: BTreeMap<String, u64>,
    /// No tombstone outlives its keep time before this (`expire` skips the sweep until then).
    tombstones_gc_ms: u64,
    /// `expire` must look at every client: the healthy members changed, and with them who
    /// owns which HTTP client.
    rescan: bool,
    sending: BTreeSet<(String, String)>,
    in_flight: BTreeMap<u64, InFlight>,
    next_id: u64,
    load: Load,
    next_verify_ms: u64,
    next_report_ms: u64,
    out: Vec<Effect>,
}

impl Distro {
    /// A member `me` among `members` (which may include `me`). With no other member the member
    /// is standalone and loaded at once.
    pub fn new(me: &str, members: &[String], timings: DistroTimings, now: u64) -> Distro {
        let mut d = Distro {
            me: me.to_string(),
            peers: BTreeMap::new(),
            healthy: Vec::new(),
            clients: BTreeMap::new(),
            by_service: BTreeMap::new(),
            generation: 0,
            subscribers: BTreeMap::new(),
            last_pushed: BTreeMap::new(),
            touched: BTreeSet::new(),
            tasks: BTreeMap::new(),
            tombstones: BTreeMap::new(),
            tombstones_gc_ms: u64::MAX,
            rescan: true,
            sending: BTreeSet::new(),
            in_flight: BTreeMap::new(),
            next_id: 1,
            load: Load::Asking { index: 0 },
            next_verify_ms: now + timings.verify_interval_ms,
            next_report_ms: now,
            out: Vec::new(),
            timings,
        };
        d.set_members(now, members);
        if d.peers.is_empty() {
            d.load = Load::Done;
        }
        d
    }

    /// This member's name.
    pub fn me(&self) -> &str {
        &self.me
    }

    /// Takes the effects produced so far.
    pub fn drain(&mut self) -> Vec<Effect> {
        std::mem::take(&mut self.out)
    }

    /// True once the initial snapshot load finished (readiness).
    pub fn loaded(&self) -> bool {
        matches!(self.load, Load::Done)
    }

    /// Replaces the member list (cluster.conf changed, a member joined or left).
    pub fn set_members(&mut self, _now: u64, members: &[String]) {
        let wanted: BTreeSet<&String> = members.iter().filter(|m| **m != self.me).collect();
        self.peers.retain(|m, _| wanted.contains(m));
        for m in wanted {
            self.peers.entry(m.clone()).or_insert(Peer {
                state: MemberState::Up,
                fails: 0,
            });
        }
        self.tasks.retain(|(_, t), _| self.peers.contains_key(t));
        self.refresh_healthy();
    }

    fn refresh_healthy(&mut self) {
        let mut v: Vec<String> = self
            .peers
            .iter()
            .filter(|(_, p)| p.state != MemberState::Down)
            .map(|(m, _)| m.clone())
            .chain(std::iter::once(self.me.clone()))
            .collect();
        v.sort();
        if v != self.healthy {
            self.healthy = v;
            self.rescan = true;
        }
    }

    /// Members in state UP or SUSPICIOUS, plus self, sorted.
    pub fn healthy_members(&self) -> Vec<String> {
        self.healthy.clone()
    }

    /// Health of every peer.
    pub fn member_states(&self) -> BTreeMap<String, MemberState> {
        self.peers
            .iter()
            .map(|(m, p)| (m.clone(), p.state))
            .collect()
    }

    /// The member responsible for an HTTP client tag (`ip:port`).
    pub fn responsible_for(&self, tag: &str) -> String {
        responsible(tag, &self.healthy)
            .cloned()
            .unwrap_or_else(|| self.me.clone())
    }

    /// Where an HTTP client write must go: `None` when this member handles it.
    pub fn route(&self, tag: &str) -> Option<String> {
        let r = self.responsible_for(tag);
        (r != self.me).then_some(r)
    }

    fn owns(&self, c: &Client) -> bool {
        owns(&self.me, &self.healthy, c)
    }

    // ----- reads -----------------------------------------------------------------------------

    /// Every instance of a service known here, one per instance id (a healthy copy wins).
    pub fn instances(&self, service: &ServiceKey) -> Vec<Instance> {
        let mut by_id: BTreeMap<String, Instance> = BTreeMap::new();
        for id in self
            .by_service
            .get(service)
            .into_iter()
            .flat_map(|l| &l.clients)
        {
            let Some(c) = self.clients.get(id) else {
                continue;
            };
            for i in c.data.instances_of(service) {
                let key = i.instance_id(service);
                match by_id.get(&key) {
                    Some(prev) if prev.healthy || !i.healthy => {}
                    _ => {
                        by_id.insert(key, i.clone());
                    }
                }
            }
        }
        by_id.into_values().collect()
    }

    /// How many instances the clients known here publish for `service` (copies counted once
    /// per client; cheaper than `instances(service).len()`).
    pub fn instance_count(&self, service: &ServiceKey) -> usize {
        self.by_service.get(service).map_or(0, |l| l.instances)
    }

    /// Services whose kept instance count differs from a count over their clients. Always
    /// empty unless a change forgot to adjust the count; for tests.
    #[doc(hidden)]
    pub fn miscounted_services(&self) -> Vec<ServiceKey> {
        self.by_service
            .iter()
            .filter(|(s, l)| {
                let counted: usize = l
                    .clients
                    .iter()
                    .filter_map(|id| self.clients.get(id))
                    .map(|c| c.data.instances_of(s).count())
                    .sum();
                counted != l.instances
            })
            .map(|(s, _)| s.clone())
            .collect()
    }

    /// A number that changes whenever `instances(service)` may have changed (0: the service has
    /// no instances here). A number once given for a service is never given for it again,
    /// so a view of `instances(service)` taken at generation `g` is current while
    /// `generation_of(service) == g`.
    pub fn generation_of(&self, service: &ServiceKey) -> u64 {
        self.by_service.get(service).map_or(0, |l| l.generation)
    }

    /// Every instance shown here, as (service, ip, port).
    pub fn addresses(&self) -> BTreeSet<(ServiceKey, String, u16)> {
        self.services()
            .into_iter()
            .flat_map(|s| {
                self.instances(&s)
                    .into_iter()
                    .map(move |i| (s.clone(), i.ip, i.port))
            })
            .collect()
    }

    /// Every service with at least one instance.
    pub fn services(&self) -> Vec<ServiceKey> {
        self.by_service.keys().cloned().collect()
    }

    /// The data of one client.
    pub fn client(&self, id: &str) -> Option<&ClientData> {
        self.clients.get(id).map(|c| &c.data)
    }

    /// Ids of every client known here.
    pub fn client_ids(&self) -> Vec<String> {
        self.clients.keys().cloned().collect()
    }

    /// Number of clients this member owns.
    pub fn owned_count(&self) -> usize {
        self.clients.values().filter(|c| self.owns(c)).count()
    }

    // ----- connection clients ----------------------------------------------------------------

    /// A client connected here.
    pub fn connect(&mut self, now: u64, conn: &str) {
        self.clients.entry(conn.to_string()).or_insert(Client {
            data: ClientData::empty(conn, ClientKind::Connection),
            origin: Origin::Local,
            last_renew_ms: now,
            beats: VecMap::new(),
            owned_since_ms: None,
            quiet_until_ms: None,
            look_at_ms: 0,
        });
    }

    /// A keepalive on a connection; false if the connection is not known here.
    pub fn keepalive(&mut self, now: u64, conn: &str) -> bool {
        match self.clients.get_mut(conn) {
            Some(c) if c.origin == Origin::Local && c.data.kind == ClientKind::Connection => {
                c.last_renew_ms = now;
                true
            }
            _ => false,
        }
    }

    fn local_conn(&mut self, conn: &str) -> Result<&mut Client, NamingError> {
        match self.clients.get_mut(conn) {
            Some(c) if c.origin == Origin::Local && c.data.kind == ClientKind::Connection => Ok(c),
            _ => Err(NamingError::UnknownConnection(conn.to_string())),
        }
    }

    /// The connection closed: its instances and subscriptions go.
    pub fn disconnect(&mut self, now: u64, conn: &str) {
        self.close_connection(now, conn, now);
    }

    /// Closes a connection; `evidence_ms` is the last sign of life the deletion rests on.
    fn close_connection(&mut self, now: u64, conn: &str, evidence_ms: u64) {
        if self.local_conn(conn).is_err() {
            return;
        }
        for subs in self.subscribers.values_mut() {
            subs.remove(conn);
        }
        self.subscribers.retain(|_, s| !s.is_empty());
        self.remove_client(conn);
        self.queue_all_at(now, evidence_ms, conn, TaskOp::Delete);
        self.flush_pushes();
    }

    /// A connection client registers (or re-registers) an instance of a service.
    pub fn register(
        &mut self,
        now: u64,
        conn: &str,
        service: &ServiceKey,
        instance: Instance,
    ) -> Result<(), NamingError> {
        self.edit_conn(now, conn, service, |d| {
            if d.instances.get(service) == Some(&instance) {
                return false; // an identical re-registration changes nothing (alibaba/nacos#10693)
            }
            d.batches.remove(service);
            d.instances.insert(service.clone(), instance);
            true
        })
    }

    /// A connection client publishes a list of instances of a service, replacing what it
    /// published for it before (single or batch); an empty list withdraws them.
    pub fn register_batch(
        &mut self,
        now: u64,
        conn: &str,
        service: &ServiceKey,
        instances: Vec<Instance>,
    ) -> Result<(), NamingError> {
        self.edit_conn(now, conn, service, |d| {
            let single = d.instances.remove(service);
            let before = if instances.is_empty() {
                d.batches.remove(service)
            } else {
                d.batches.insert(service.clone(), instances)
            };
            single.is_some() || before.as_ref() != d.batches.get(service)
        })
    }

    /// A connection client deregisters its instance of a service.
    pub fn deregister(
        &mut self,
        now: u64,
        conn: &str,
        service: &ServiceKey,
    ) -> Result<(), NamingError> {
        self.edit_conn(now, conn, service, |d| {
            let single = d.instances.remove(service).is_some();
            d.batches.remove(service).is_some() || single
        })
    }

    /// Changes what a local connection publishes for `service`, in place: `edit` changes the
    /// client's data for that service only and says whether anything changed. A connection may
    /// publish in hundreds of services, so its data is neither copied nor compared whole.
    fn edit_conn(
        &mut self,
        now: u64,
        conn: &str,
        service: &ServiceKey,
        edit: impl FnOnce(&mut ClientData) -> bool,
    ) -> Result<(), NamingError> {
        let c = self.local_conn(conn)?;
        c.last_renew_ms = c.last_renew_ms.max(now);
        let before = c.data.instances_of(service).count();
        if !edit(&mut c.data) {
            return Ok(());
        }
        c.data.revision += 1;
        c.owned_since_ms.get_or_insert(now);
        c.quiet_until_ms = None;
        c.look_at_ms = 0;
        let publishes = c.data.publishes(service);
        let after = c.data.instances_of(service).count();
        let id = c.data.id.clone();
        if publishes {
            self.list(service, &id, before, after);
        } else {
            self.unlist(service, &id, before);
        }
        self.queue_all(now, &id, TaskOp::Change);
        self.flush_pushes();
        Ok(())
    }

    /// A connection client subscribes to a service; it is told the current list at once.
    pub fn subscribe(
        &mut self,
        _now: u64,
        conn: &str,
        service: &ServiceKey,
    ) -> Result<(), NamingError> {
        self.local_conn(conn)?;
        self.subscribers
            .entry(service.clone())
            .or_default()
            .insert(conn.to_string());
        let hosts = self.instances(service);
        self.out.push(Effect::Push {
            subscriber: conn.to_string(),
            service: service.clone(),
            hosts,
        });
        Ok(())
    }

    // ----- HTTP clients ----------------------------------------------------------------------

    /// Applies an HTTP client write here (the caller routed it, see `route`).
    pub fn apply_ip_port(&mut self, now: u64, write: &IpPortWrite) -> IpPortOutcome {
        let at = self.me.clone();
        let (ip, port) = match write {
            IpPortWrite::Register { instance, .. } => (instance.ip.clone(), instance.port),
            IpPortWrite::Deregister { ip, port, .. } | IpPortWrite::Beat { ip, port, .. } => {
                (ip.clone(), *port)
            }
        };
        let id = ip_port_client_id(&ip, port);
        match write {
            IpPortWrite::Register { service, instance } => {
                let mut data = self
                    .clients
                    .get(&id)
                    .map(|c| c.data.clone())
                    .unwrap_or_else(|| ClientData::empty(&id, ClientKind::IpPort));
                let changed = data.instances.get(service) != Some(instance);
                data.instances.insert(service.clone(), instance.clone());
                if changed || !self.clients.contains_key(&id) {
                    self.change_owned(now, data, Origin::Local);
                }
                if let Some(c) = self.clients.get_mut(&id) {
                    c.beats.insert(service.clone(), now);
                    c.quiet_until_ms = None;
                    c.look_at_ms = 0;
                }
            }
            IpPortWrite::Deregister { service, .. } => match self.clients.get(&id) {
                Some(c) => {
                    let mut data = c.data.clone();
                    if data.instances.remove(service).is_some() {
                        self.change_owned(now, data, Origin::Local);
                    }
                }
                // Unknown here (this member became responsible without a copy): copies other
                // members may hold are deleted all the same.
                None => {
                    self.tombstone(&id, now);
                    self.queue_all(now, &id, TaskOp::Delete);
                }
            },
            IpPortWrite::Beat { service, .. } => {
                let Some(c) = self.clients.get_mut(&id) else {
                    return IpPortOutcome::BeatNotFound { at };
                };
                let Some(inst) = c.data.instances.get(service) else {
                    return IpPortOutcome::BeatNotFound { at };
                };
                c.beats.insert(service.clone(), now);
                c.quiet_until_ms = None;
                c.look_at_ms = 0;
                if !inst.healthy {
                    let mut data = c.data.clone();
                    if let Some(i) = data.instances.get_mut(service) {
                        i.healthy = true;
                    }
                    self.change_owned(now, data, Origin::Local);
                }
            }
        }
        self.flush_pushes();
        IpPortOutcome::Done { at }
    }

    // ----- local changes ---------------------------------------------------------------------

    /// Stores a new version of a client this member changes, and queues its sync.
    fn change_owned(&mut self, now: u64, mut data: ClientData, origin: Origin) {
        let id = data.id.clone();
        if data.kind == ClientKind::IpPort && data.is_empty() {
            if self.clients.contains_key(&id) {
                self.remove_client(&id);
                self.tombstone(&id, now);
                self.queue_all(now, &id, TaskOp::Delete);
            }
            return;
        }
        data.revision += 1;
        let (renew, beats) = match self.clients.get(&id) {
            Some(c) => (c.last_renew_ms.max(now), c.beats.clone()),
            None => (now, VecMap::new()),
        };
        let owned_since_ms = self
            .clients
            .get(&id)
            .and_then(|c| c.owned_since_ms)
            .or(Some(now));
        self.put_client(Client {
            data,
            origin,
            last_renew_ms: renew,
            beats,
            owned_since_ms,
            quiet_until_ms: None,
            look_at_ms: 0,
        });
        self.queue_all(now, &id, TaskOp::Change);
    }

    /// Stores a client's new version. Only the services whose instances from this client
    /// changed are marked changed (pushes, list caches): a connection publishing in 100
    /// services that re-registers in one of them touches one service, not 100.
    fn put_client(&mut self, c: Client) {
        let id = c.data.id.clone();
        let old = self
            .clients
            .insert(id.clone(), Client { look_at_ms: 0, ..c });
        let new = &self.clients[&id].data;
        let old = old.map(|c| c.data);
        let services: Vec<&ServiceKey> = match &old {
            None => new.services().collect(),
            Some(old) => old.changed_services(new),
        };
        // Each changed service with the client's instance count there before and, unless it
        // left the service, after; the services it left first.
        let count = |d: &ClientData, s: &ServiceKey| d.instances_of(s).count();
        let mut changes: Vec<(ServiceKey, usize, Option<usize>)> = services
            .into_iter()
            .map(|s| {
                let before = old.as_ref().map_or(0, |o| count(o, s));
                let after = new.publishes(s).then(|| count(new, s));
                (s.clone(), before, after)
            })
            .collect();
        changes.sort_by_key(|(_, _, after)| after.is_some());
        for (s, before, after) in changes {
            match after {
                None => self.unlist(&s, &id, before),
                Some(after) => self.list(&s, &id, before, after),
            }
        }
    }

    /// Records that this member deleted HTTP client `id` on evidence from `at_ms`.
    fn tombstone(&mut self, id: &str, at_ms: u64) {
        self.tombstones.insert(id.to_string(), at_ms);
        let gone_at = at_ms.saturating_add(self.timings.beat_delete_ms + 1);
        self.tombstones_gc_ms = self.tombstones_gc_ms.min(gone_at);
    }

    /// Puts client `id` among the clients of service `s` and marks the service changed; the
    /// client published `before` instances there and publishes `after` now.
    fn list(&mut self, s: &ServiceKey, id: &str, before: usize, after: usize) {
        self.generation += 1;
        if !self.by_service.contains_key(s) {
            self.by_service.insert(s.clone(), Listed::default());
        }
        let listed = self.by_service.get_mut(s).expect("inserted above");
        listed.generation = self.generation;
        listed.instances = listed.instances + after - before.min(listed.instances);
        if !listed.clients.contains(id) {
            listed.clients.insert(id.to_string());
        }
        if !self.touched.contains(s) {
            self.touched.insert(s.clone());
        }
    }

    fn remove_client(&mut self, id: &str) {
        if let Some(old) = self.clients.remove(id) {
            for s in old.data.services() {
                self.unlist(s, id, old.data.instances_of(s).count());
            }
        }
    }

    /// Takes client `id`, which published `before` instances there, out of the clients of
    /// service `s` (dropping the entry when it was the last one) and marks the service changed.
    fn unlist(&mut self, s: &ServiceKey, id: &str, before: usize) {
        self.generation += 1;
        if let Some(listed) = self.by_service.get_mut(s) {
            listed.clients.remove(id);
            listed.instances -= before.min(listed.instances);
            listed.generation = self.generation;
            if listed.clients.is_empty() {
                self.by_service.remove(s);
            }
        }
        if !self.touched.contains(s) {
            self.touched.insert(s.clone());
        }
    }

    /// Queues a sync of `client` to every peer, merged with a pending one.
    fn queue_all(&mut self, now: u64, client: &str, op: TaskOp) {
        self.queue_all_at(now, now, client, op);
    }

    /// Queues with the time the action rests on (`at_ms`, at most `now`).
    fn queue_all_at(&mut self, now: u64, at_ms: u64, client: &str, op: TaskOp) {
        let targets: Vec<String> = self.peers.keys().cloned().collect();
        for t in targets {
            self.queue(now + self.timings.sync_delay_ms, at_ms, client, &t, op);
        }
    }

    fn queue(&mut self, due_ms: u64, at_ms: u64, client: &str, target: &str, op: TaskOp) {
        let key = (client.to_string(), target.to_string());
        match self.tasks.get_mut(&key) {
            Some(t) if t.at_ms <= at_ms => {
                // The newest action wins; the first due time stays.
                t.op = op;
                t.at_ms = at_ms;
                t.due_ms = t.due_ms.min(due_ms);
            }
            Some(t) => t.due_ms = t.due_ms.min(due_ms),
            None => {
                self.tasks.insert(key, Task { due_ms, op, at_ms });
            }
        }
    }

    /// Emits a push for every touched service whose list changed since its last push.
    fn flush_pushes(&mut self) {
        let touched = std::mem::take(&mut self.touched);
        for s in touched {
            let Some(subs) = self.subscribers.get(&s) else {
                self.last_pushed.remove(&s);
                continue;
            };
            let hosts = self.instances(&s);
            let digest = fnv64(&postcard::to_allocvec(&hosts).unwrap_or_default());
            if self.last_pushed.get(&s) == Some(&digest) {
                continue;
            }
            self.last_pushed.insert(s.clone(), digest);
            for sub in subs.clone() {
                self.out.push(Effect::Push {
                    subscriber: sub,
                    service: s.clone(),
                    hosts: hosts.clone(),
                });
            }
        }
    }

    /// Peers with a message of one kind (selected by `target_of`) still in flight.
    fn targets_in_flight(
        &self,
        target_of: impl Fn(&InFlight) -> Option<&String>,
    ) -> BTreeSet<String> {
        self.in_flight
            .values()
            .filter_map(target_of)
            .cloned()
            .collect()
    }

    fn send(&mut self, to: &str, msg: DistroMsg, what: InFlight) {
        let id = self.next_id;
        self.next_id += 1;
        self.in_flight.insert(id, what);
        self.out.push(Effect::Send {
            id,
            to: to.to_string(),
            msg,
        });
    }

    // ----- time ------------------------------------------------------------------------------

    /// Advances timers: due syncs, verify, snapshot load, member reports, expiry.
    pub fn on_tick(&mut self, now: u64) {
        self.expire(now);
        self.tick_load(now);
        self.dispatch(now);
        if now >= self.next_verify_ms {
            self.next_verify_ms = now + self.timings.verify_interval_ms;
            if self.loaded() {
                self.send_verify();
            }
        }
        if now >= self.next_report_ms {
            self.next_report_ms = now + self.timings.report_interval_ms;
            let busy = self.targets_in_flight(|f| match f {
                InFlight::Report { target } => Some(target),
                _ => None,
            });
            let targets: Vec<String> = self.peers.keys().cloned().collect();
            for t in targets {
                if !busy.contains(&t) {
                    self.send(
                        &t,
                        DistroMsg::Report,
                        InFlight::Report { target: t.clone() },
                    );
                }
            }
        }
        self.flush_pushes();
    }

    /// Whether a sync task is due and not already being sent.
    pub fn has_due_task(&self, now: u64) -> bool {
        self.tasks
            .iter()
            .any(|(k, t)| t.due_ms <= now && !self.sending.contains(k))
    }

    /// Between ticks: sends the sync tasks that fell due.
    pub fn on_dispatch(&mut self, now: u64) {
        self.dispatch(now);
        self.flush_pushes();
    }

    fn dispatch(&mut self, now: u64) {
        let due: Vec<(String, String)> = self
            .tasks
            .iter()
            .filter(|(k, t)| t.due_ms <= now && !self.sending.contains(*k))
            .map(|(k, _)| k.clone())
            .collect();
        // The due changes per target, in client order.
        let mut per_target: BTreeMap<String, Vec<(String, Task)>> = BTreeMap::new();
        for key in due {
            let Some(task) = self.tasks.remove(&key) else {
                continue;
            };
            let (client, target) = key;
            let Some(peer) = self.peers.get(&target) else {
                continue; // no longer a member: dropped
            };
            if peer.state == MemberState::Down {
                let due_ms = now + self.timings.sync_retry_ms;
                self.tasks.insert((client, target), Task { due_ms, ..task });
                continue;
            }
            per_target.entry(target).or_default().push((client, task));
        }
        for (target, tasks) in per_target {
            let mut items = Vec::new();
            let mut clients = Vec::new();
            let mut bytes = 0;
            for (client, task) in tasks {
                let item = match task.op {
                    TaskOp::Change => match self.clients.get(&client) {
                        Some(c) if self.owns(c) || c.origin == Origin::Local => {
                            SyncItem::Sync(c.data.clone())
                        }
                        _ => continue, // gone or no longer ours: nothing to send
                    },
                    TaskOp::Delete => SyncItem::Delete {
                        client: client.clone(),
                        age_ms: now.saturating_sub(task.at_ms),
                    },
                };
                bytes += postcard::experimental::serialized_size(&item).unwrap_or(0);
                self.sending.insert((client.clone(), target.clone()));
                items.push(item);
                clients.push((client, task.at_ms));
                if items.len() >= BATCH_ITEMS_MAX || bytes >= BATCH_BYTES_MAX {
                    self.send_changes(
                        &target,
                        std::mem::take(&mut items),
                        std::mem::take(&mut clients),
                    );
                    bytes = 0;
                }
            }
            if !items.is_empty() {
                self.send_changes(&target, items, clients);
            }
        }
    }

    /// Sends changes to `target`: one alone as the message it stands for, several as a batch.
    fn send_changes(
        &mut self,
        target: &str,
        mut items: Vec<SyncItem>,
        clients: Vec<(String, u64)>,
    ) {
        let msg = match (items.pop(), items.is_empty()) {
            (Some(SyncItem::Sync(data)), true) => DistroMsg::Sync(data),
            (Some(SyncItem::Delete { client, age_ms }), true) => {
                DistroMsg::Delete { client, age_ms }
            }
            (last, _) => {
                items.extend(last);
                DistroMsg::Batch(items)
            }
        };
        let what = InFlight::Sync {
            target: target.to_string(),
            clients,
        };
        self.send(target, msg, what);
    }

    fn send_verify(&mut self) {
        let targets: Vec<String> = self.peers.keys().cloned().collect();
        self.send_verify_to(&targets);
    }

    /// A peer came back (DOWN before, UP now): sync what waits for it and verify it at once
    /// instead of at the next period, so views converge soon after a heal.
    fn peer_recovered(&mut self, now: u64, peer: &str) {
        hit(Mark::DistroPeerRecovered);
        for ((_, target), task) in self.tasks.iter_mut() {
            if target == peer {
                task.due_ms = task.due_ms.min(now);
            }
        }
        if self.loaded() {
            self.send_verify_to(&[peer.to_string()]);
        }
    }

    fn send_verify_to(&mut self, targets: &[String]) {
        let manifest: Vec<VerifyEntry> = self
            .clients
            .values()
            .filter(|c| c.data.revision > 0 && self.owns(c))
            .map(|c| VerifyEntry {
                client: c.data.id.clone(),
                revision: c.data.revision,
                digest: c.data.digest(),
            })
            .collect();
        let busy = self.targets_in_flight(|f| match f {
            InFlight::Verify { target } => Some(target),
            _ => None,
        });
        let targets: Vec<String> = targets
            .iter()
            .filter(|m| {
                self.peers
                    .get(*m)
                    .is_some_and(|p| p.state != MemberState::Down)
                    && !busy.contains(*m)
            })
            .cloned()
            .collect();
        for t in targets {
            self.send(
                &t,
                DistroMsg::Verify {
                    clients: manifest.clone(),
                    members_digest: self.members_digest(),
                },
                InFlight::Verify { target: t.clone() },
            );
        }
    }

    fn tick_load(&mut self, now: u64) {
        let index = match self.load {
            Load::Done => return,
            Load::Waiting { at_ms } if now < at_ms => return,
            Load::Waiting { .. } => 0,
            Load::Asking { index } => index,
        };
        if self
            .in_flight
            .values()
            .any(|f| matches!(f, InFlight::Load { .. }))
        {
            return;
        }
        let order: Vec<String> = self.peers.keys().cloned().collect();
        match order.get(index) {
            Some(target) => {
                self.load = Load::Asking { index };
                self.send(
                    &target.clone(),
                    DistroMsg::SnapshotQuery,
                    InFlight::Load {
                        target: target.clone(),
                    },
                );
            }
            None if order.is_empty() => self.load = Load::Done,
            None => {
                self.load = Load::Waiting {
                    at_ms: now + self.timings.load_retry_ms,
                }
            }
        }
    }

    /// Clients the expiry pass at `now` would miss: expiry would act on them (or start
    /// counting their ownership) at `now`, but nothing files them for that pass. Always empty
    /// unless a change forgot to file a client; for tests.
    #[doc(hidden)]
    pub fn expiry_overdue(&self, now: u64) -> Vec<String> {
        if self.rescan {
            return Vec::new();
        }
        self.clients
            .values()
            .filter(|c| c.look_at_ms > now)
            .filter(|c| {
                let mut probe = (*c).clone();
                let owned = owns(&self.me, &self.healthy, c);
                let (outcome, _) = check_expiry(&mut probe, owned, now, &self.timings);
                !matches!(outcome, Expiry::Nothing) || probe.owned_since_ms != c.owned_since_ms
            })
            .map(|c| c.data.id.clone())
            .collect()
    }

    fn expire(&mut self, now: u64) {
        if now >= self.tombstones_gc_ms {
            let keep = self.timings.beat_delete_ms;
            self.tombstones
                .retain(|_, t| now.saturating_sub(*t) <= keep);
            self.tombstones_gc_ms = self
                .tombstones
                .values()
                .map(|t| t.saturating_add(keep + 1))
                .min()
                .unwrap_or(u64::MAX);
        }
        let rescan = std::mem::take(&mut self.rescan);
        let mut idle_conns = Vec::new();
        let mut dropped = Vec::new();
        let mut changed = Vec::new();
        // In id order, the order every outcome below is acted on in.
        for (id, c) in self.clients.iter_mut() {
            if c.look_at_ms > now && !rescan {
                continue;
            }
            let owned = owns(&self.me, &self.healthy, c);
            let (outcome, next) = check_expiry(c, owned, now, &self.timings);
            c.look_at_ms = next;
            match outcome {
                Expiry::Nothing => {}
                Expiry::IdleConn { last_keepalive } => {
                    idle_conns.push((id.clone(), last_keepalive))
                }
                Expiry::Dropped => dropped.push(id.clone()),
                Expiry::Changed { data, evidence } => changed.push((data, evidence)),
            }
        }
        for (id, last_keepalive) in idle_conns {
            self.close_connection(now, &id, last_keepalive);
        }
        for id in dropped {
            self.remove_client(&id);
        }
        for (data, evidence) in changed {
            if data.is_empty() {
                // Every instance timed out: the deletion is as old as the last beat seen, so
                // a member that saw a later one (across a partition) keeps its copy.
                let id = data.id.clone();
                self.remove_client(&id);
                self.tombstone(&id, evidence);
                self.queue_all_at(now, evidence, &id, TaskOp::Delete);
            } else {
                self.change_owned(now, data, Origin::Local);
            }
        }
    }

    // ----- messages --------------------------------------------------------------------------

    /// Handles a message from member `from` and returns the answer.
    pub fn on_message(&mut self, now: u64, from: &str, msg: DistroMsg) -> DistroReply {
        let reply = match msg {
            DistroMsg::Report => {
                if let Some(p) = self.peers.get_mut(from) {
                    let was_down = p.state == MemberState::Down;
                    p.state = MemberState::Up;
                    p.fails = 0;
                    self.refresh_healthy();
                    if was_down {
                        self.peer_recovered(now, from);
                        self.dispatch(now);
                    }
                }
                DistroReply::Ok
            }
            DistroMsg::Sync(data) => self.on_sync(now, from, data),
            DistroMsg::Handoff { data, age_ms } => self.on_handoff(now, data, age_ms),
            DistroMsg::Delete { client, age_ms } => self.on_delete(now, from, &client, age_ms),
            DistroMsg::Batch(items) => {
                for item in items {
                    match item {
                        SyncItem::Sync(data) => self.on_sync(now, from, data),
                        SyncItem::Delete { client, age_ms } => {
                            self.on_delete(now, from, &client, age_ms)
                        }
                    };
                }
                DistroReply::Ok
            }
            DistroMsg::Verify {
                clients,
                members_digest,
            } => {
                let agree = members_digest == self.members_digest();
                self.on_verify(now, from, clients, agree)
            }
            DistroMsg::SnapshotQuery => DistroReply::Snapshot(
                self.clients
                    .values()
                    .filter(|c| c.data.revision > 0)
                    .map(|c| {
                        let owner = match (&c.origin, self.owns(c)) {
                            (_, true) | (Origin::Local, _) => self.me.clone(),
                            (Origin::Remote(m), false) => m.clone(),
                        };
                        (c.data.clone(), owner)
                    })
                    .collect(),
            ),
        };
        self.flush_pushes();
        reply
    }

    /// Whether a change to `client` sent by `from` is taken: never one to a client this
    /// member owns; for a connection client only from the member holding the connection.
    fn accepts_from(&self, from: &str, id: &str, kind: ClientKind) -> bool {
        match (self.clients.get(id), kind) {
            (Some(c), _) if self.owns(c) => false,
            (Some(c), ClientKind::Connection) => c.origin == Origin::Remote(from.to_string()),
            (None, ClientKind::Connection) => true,
            // An HTTP client's owner moves with membership: a copy is taken from whoever
            // changed it last; the owner's next manifest corrects a stale one.
            (_, ClientKind::IpPort) => true,
        }
    }

    fn on_sync(&mut self, now: u64, from: &str, data: ClientData) -> DistroReply {
        if !self.accepts_from(from, &data.id, data.kind) {
            return DistroReply::Rejected;
        }
        let beats = data.instances.keys().map(|s| (s.clone(), now)).collect();
        self.put_client(Client {
            data,
            origin: Origin::Remote(from.to_string()),
            last_renew_ms: now,
            beats,
            owned_since_ms: None,
            quiet_until_ms: None,
            look_at_ms: 0,
        });
        DistroReply::Ok
    }

    fn on_handoff(&mut self, now: u64, data: ClientData, age_ms: u64) -> DistroReply {
        let seen_alive = now.saturating_sub(age_ms);
        if data.kind != ClientKind::IpPort
            || self.responsible_for(tag_of(&data.id)) != self.me
            || self.clients.contains_key(&data.id)
            || self
                .tombstones
                .get(&data.id)
                .is_some_and(|t| *t >= seen_alive)
        {
            return DistroReply::Rejected;
        }
        hit(Mark::DistroHandoffTaken);
        let id = data.id.clone();
        let beats = data
            .instances
            .keys()
            .map(|s| (s.clone(), seen_alive))
            .collect();
        self.put_client(Client {
            data,
            origin: Origin::Local,
            last_renew_ms: now,
            beats,
            owned_since_ms: Some(now),
            quiet_until_ms: None,
            look_at_ms: 0,
        });
        self.queue_all(now, &id, TaskOp::Change);
        DistroReply::Ok
    }

    fn on_delete(&mut self, now: u64, from: &str, id: &str, age_ms: u64) -> DistroReply {
        let Some(c) = self.clients.get(id) else {
            return DistroReply::Ok;
        };
        let fresh = c.beats.values().copied().fold(c.last_renew_ms, u64::max);
        if fresh > now.saturating_sub(age_ms) {
            hit(Mark::DistroStaleDeleteRefused);
            return DistroReply::Rejected; // this copy was confirmed after the deletion
        }
        if !self.accepts_from(from, id, c.data.kind) {
            return DistroReply::Rejected;
        }
        self.remove_client(id);
        DistroReply::Ok
    }

    fn members_digest(&self) -> u64 {
        fnv64(self.healthy.join(",").as_bytes())
    }

    fn on_verify(
        &mut self,
        now: u64,
        from: &str,
        manifest: Vec<VerifyEntry>,
        views_agree: bool,
    ) -> DistroReply {
        let listed: BTreeSet<&str> = manifest.iter().map(|e| e.client.as_str()).collect();
        // Copies the sender owns but no longer lists are gone at their owner: a connection
        // client's copy attributed to the sender; an HTTP client's copy when both members see
        // the same healthy members, the sender is responsible for it, and the copy came from
        // it or was neither renewed nor beaten for
        // `beat_unhealthy_ms` (after ownership moves, a live client beats its new owner, learns
        // it is unknown there and registers again well within that time).
        let from_origin = Origin::Remote(from.to_string());
        let stale: Vec<String> = self
            .clients
            .values()
            .filter(|c| !listed.contains(c.data.id.as_str()) && !self.owns(c))
            .filter(|c| match c.data.kind {
                ClientKind::Connection => c.origin == from_origin,
                ClientKind::IpPort => {
                    let fresh = c.beats.values().copied().fold(c.last_renew_ms, u64::max);
                    views_agree
                        && self.responsible_for(tag_of(&c.data.id)) == from
                        && (c.origin == from_origin
                            || now.saturating_sub(fresh) > self.timings.beat_unhealthy_ms)
                }
            })
            .map(|c| c.data.id.clone())
            .collect();
        for id in stale {
            hit(Mark::DistroUnlistedCopyDropped);
            self.remove_client(&id);
        }
        // Fresh copies of HTTP clients the sender now owns but lacks are handed to it.
        let handoffs: Vec<(ClientData, u64)> = self
            .clients
            .values()
            .filter(|_| views_agree)
            .filter(|c| c.data.kind == ClientKind::IpPort && c.origin != from_origin)
            .filter(|c| !listed.contains(c.data.id.as_str()) && !self.owns(c))
            .filter(|c| self.responsible_for(tag_of(&c.data.id)) == from)
            .filter_map(|c| {
                let fresh = c.beats.values().copied().fold(c.last_renew_ms, u64::max);
                let age = now.saturating_sub(fresh);
                (age <= self.timings.beat_unhealthy_ms).then(|| (c.data.clone(), age))
            })
            .collect();
        for (data, age_ms) in handoffs {
            self.send(from, DistroMsg::Handoff { data, age_ms }, InFlight::Handoff);
        }
        let mut failed = Vec::new();
        for e in manifest {
            let owned_here = self.clients.get(&e.client).is_some_and(|c| self.owns(c));
            if owned_here {
                continue;
            }
            match self.clients.get_mut(&e.client) {
                Some(c) if c.data.revision == e.revision && c.data.digest() == e.digest => {
                    c.last_renew_ms = now;
                    c.origin = Origin::Remote(from.to_string());
                    for b in c.beats.values_mut() {
                        *b = now;
                    }
                    c.quiet_until_ms = None;
                    c.look_at_ms = 0;
                }
                _ => failed.push(e.client),
            }
        }
        DistroReply::Verified { failed }
    }

    /// Reports the outcome of an `Effect::Send`; `None` means the peer could not be reached or
    /// did not answer in time.
    pub fn on_reply(&mut self, now: u64, id: u64, reply: Option<DistroReply>) {
        let Some(what) = self.in_flight.remove(&id) else {
            return;
        };
        match what {
            InFlight::Handoff => {}
            InFlight::Report { target } => {
                let mut recovered = false;
                if let Some(p) = self.peers.get_mut(&target) {
                    if reply.is_some() {
                        recovered = p.state == MemberState::Down;
                        p.state = MemberState::Up;
                        p.fails = 0;
                    } else {
                        p.fails += 1;
                        p.state = if p.fails >= self.timings.member_fail_max {
                            MemberState::Down
                        } else {
                            MemberState::Suspicious
                        };
                    }
                }
                self.refresh_healthy();
                if recovered {
                    self.peer_recovered(now, &target);
                }
            }
            InFlight::Sync { target, clients } => {
                for (client, at_ms) in clients {
                    let key = (client, target.clone());
                    self.sending.remove(&key);
                    if reply.is_none() && !self.tasks.contains_key(&key) {
                        let op = if self.clients.contains_key(&key.0) {
                            TaskOp::Change
                        } else {
                            TaskOp::Delete
                        };
                        let due = now + self.timings.sync_retry_ms;
                        self.queue(due, at_ms, &key.0, &target, op);
                    }
                }
            }
            InFlight::Verify { target } => {
                if let Some(DistroReply::Verified { failed }) = reply {
                    if !crate::bugs::active(crate::bugs::Bug::DistroSkipResend) {
                        for client in failed {
                            let ours = self.clients.get(&client).is_some_and(|c| self.owns(c));
                            if ours {
                                hit(Mark::DistroVerifyResend);
                                self.queue(now, now, &client, &target, TaskOp::Change);
                            }
                        }
                    }
                }
            }
            InFlight::Load { target } => match reply {
                Some(DistroReply::Snapshot(clients)) => {
                    if !clients.is_empty() {
                        hit(Mark::DistroSnapshotLoaded);
                    }
                    self.apply_snapshot(now, clients);
                    self.load = Load::Done;
                }
                _ => {
                    let next = self.peers.range::<String, _>((
                        std::ops::Bound::Excluded(&target),
                        std::ops::Bound::Unbounded,
                    ));
                    let index = self.peers.len() - next.count();
                    self.load = Load::Asking { index };
                }
            },
        }
        self.dispatch(now);
        self.flush_pushes();
    }

    fn apply_snapshot(&mut self, now: u64, clients: Vec<(ClientData, String)>) {
        if crate::bugs::active(crate::bugs::Bug::DistroSnapshotReplaces) {
            let ids: Vec<String> = self.clients.keys().cloned().collect();
            for id in ids {
                self.remove_client(&id);
            }
        }
        for (data, owner) in clients {
            if self.clients.contains_key(&data.id) {
                continue; // what this member has is at least as new: never overwrite or delete
            }
            if data.kind == ClientKind::Connection && owner == self.me {
                continue; // a connection of this member's previous life
            }
            let origin = if owner == self.me {
                Origin::Local
            } else {
                Origin::Remote(owner)
            };
            let beats = data.instances.keys().map(|s| (s.clone(), now)).collect();
            self.put_client(Client {
                data,
                origin,
                last_renew_ms: now,
                beats,
                owned_since_ms: None,
                quiet_until_ms: None,
                look_at_ms: 0,
            });
        }
    }
}

#[cfg(test)]
mod tests;
