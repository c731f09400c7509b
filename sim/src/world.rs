//! The simulated cluster: members on madsim nodes, each with a disk that survives crashes.
//!
//! A member's init (re-run by madsim on every restart) opens its storage through the engine,
//! registers the live `CpNode`, and serves requests. A member whose storage is corrupt stops
//! with `Fatal` and stays down; the run records it (it is a detected fault, not a violation).

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use madsim::net::NetSim;
use madsim::runtime::{Handle, NodeHandle};
use nacre_engine::cp_node::{CpNode, CpOptions, CpStatus};
use nacre_engine::member::Member as EngineMember;
use nacre_engine::naming::distro::DistroTimings;
use nacre_engine::naming::runner::{DistroRunner, PeerAddr};
use nacre_engine::ports::{Clock, Disk, DiskFile, PeerTransport};
use nacre_engine::raft::journal::replay;
use nacre_engine::raft::log_store::{entry_digest, LogStoreOptions};
use nacre_engine::wire::{ClientRequest, ClientResponse, PeerRequest, PeerResponse};

use crate::disk::SimDisk;
use crate::net::{serve, Alive, SimTransport};
use crate::observer::Observer;
use crate::scenario::Scenario;
use crate::trace::Trace;

/// Raft port of every member.
pub const RAFT_PORT: u16 = 7848;
/// Epoch offset of the simulated wall clock (2026-01-01T00:00:00Z).
const EPOCH_MS: u64 = 1_767_225_600_000;

/// The simulated wall clock: a fixed epoch plus simulated elapsed time.
pub struct SimClock;

impl SimClock {
    /// The simulated wall-clock time in milliseconds.
    pub fn now_ms_value(&self) -> u64 {
        EPOCH_MS + madsim::time::TimeHandle::current().elapsed().as_millis() as u64
    }
}

impl Clock for SimClock {
    fn now_ms(&self) -> u64 {
        self.now_ms_value()
    }
}

/// One member of the simulated cluster.
pub struct Member {
    pub id: u64,
    pub addr: String,
    pub handle: NodeHandle,
    pub disk: SimDisk,
    pub incarnation: Arc<AtomicU64>,
    pub fatal: Arc<Mutex<Option<String>>>,
    pub up: bool,
    /// Removed from the membership and stopped for good.
    pub retired: bool,
}

pub use crate::check::naming::PushRecord;

/// Every push of the run.
pub type PushLog = Arc<Mutex<Vec<PushRecord>>>;

/// The simulated cluster.
pub struct World {
    pub handle: Handle,
    pub members: BTreeMap<u64, Member>,
    pub live: Arc<Mutex<BTreeMap<u64, Arc<CpNode>>>>,
    /// The Distro of every running member.
    pub naming: Arc<Mutex<BTreeMap<u64, Arc<DistroRunner>>>>,
    /// The Distro member list (cluster.conf), shared by every member's start.
    pub distro_members: Arc<Mutex<BTreeMap<String, PeerAddr>>>,
    pub pushes: PushLog,
    /// Simulated times of crashes and restarts, with the member.
    pub crashes: Arc<Mutex<Vec<(u64, u64)>>>,
    pub alive: Alive,
    pub observer: Observer,
    pub trace: Trace,
    pub initial: BTreeMap<u64, String>,
    seed: u64,
    scenario: Scenario,
}

/// The address of member `id`.
pub fn member_addr(id: u64) -> String {
    format!("10.0.0.{id}:{RAFT_PORT}")
}

impl World {
    /// Creates the initial members (they start at once and bootstrap).
    pub fn new(seed: u64, scenario: &Scenario, trace: Trace) -> World {
        let initial: BTreeMap<u64, String> = (1..=scenario.nodes)
            .map(|id| (id, member_addr(id)))
            .collect();
        let mut world = World {
            handle: Handle::current(),
            members: BTreeMap::new(),
            live: Arc::default(),
            naming: Arc::default(),
            distro_members: Arc::new(Mutex::new(
                initial
                    .iter()
                    .map(|(id, a)| {
                        (
                            a.clone(),
                            PeerAddr {
                                id: *id,
                                addr: a.clone(),
                            },
                        )
                    })
                    .collect(),
            )),
            pushes: Arc::default(),
            crashes: Arc::default(),
            alive: Arc::default(),
            observer: Observer::default(),
            trace,
            initial: initial.clone(),
            seed,
            scenario: scenario.clone(),
        };
        for id in initial.keys() {
            world.add_member(*id, initial.clone());
        }
        world
    }

    /// Starts member `id`; `initial` is empty for a member that joins.
    pub fn add_member(&mut self, id: u64, initial: BTreeMap<u64, String>) {
        let addr = member_addr(id);
        let joining = !self
            .distro_members
            .lock()
            .expect("members lock")
            .contains_key(&addr);
        if joining {
            // cluster.conf gains the member on every running member.
            let list = {
                let mut m = self.distro_members.lock().expect("members lock");
                m.insert(
                    addr.clone(),
                    PeerAddr {
                        id,
                        addr: addr.clone(),
                    },
                );
                m.clone()
            };
            for r in self.naming.lock().expect("naming lock").values() {
                r.set_members(list.clone());
            }
        }
        let disk = SimDisk::new(self.seed ^ (id << 32), self.scenario.storage.torn_tail);
        let incarnation = Arc::new(AtomicU64::new(0));
        let fatal = Arc::new(Mutex::new(None));
        let ctx = MemberCtx {
            id,
            addr: addr.clone(),
            initial,
            disk: disk.clone(),
            incarnation: incarnation.clone(),
            fatal: fatal.clone(),
            live: self.live.clone(),
            naming: self.naming.clone(),
            distro_members: self.distro_members.clone(),
            pushes: self.pushes.clone(),
            alive: self.alive.clone(),
            observer: self.observer.clone(),
            trace: self.trace.clone(),
            snapshot_every: self.scenario.storage.snapshot_every_entries,
            keep_after: self.scenario.storage.keep_after_snapshot,
        };
        let ip = IpAddr::V4(Ipv4Addr::new(10, 0, 0, id as u8));
        let handle = self
            .handle
            .create_node()
            .name(format!("n{id}"))
            .ip(ip)
            .init(move || ctx.clone().run())
            .build();
        self.members.insert(
            id,
            Member {
                id,
                addr,
                handle,
                disk,
                incarnation,
                fatal,
                up: true,
                retired: false,
            },
        );
    }

    /// Kills member `id` as a power loss would: the process stops, unsynced bytes are lost.
    pub fn crash(&mut self, id: u64) {
        let Some(m) = self.members.get_mut(&id) else {
            return;
        };
        if !m.up {
            return;
        }
        self.handle.kill(m.handle.id());
        m.disk.crash();
        m.up = false;
        self.alive.lock().expect("alive lock").remove(&m.addr);
        self.live.lock().expect("live lock").remove(&id);
        self.naming.lock().expect("naming lock").remove(&id);
        let now = self.trace.now_ms();
        self.crashes.lock().expect("crashes lock").push((now, id));
        self.trace.event(format!("crash n{id}"));
    }

    /// Stops a member that was removed from the membership; it is never restarted.
    pub fn retire(&mut self, id: u64) {
        self.crash(id);
        let list = {
            let mut m = self.distro_members.lock().expect("members lock");
            m.remove(&member_addr(id));
            m.clone()
        };
        for r in self.naming.lock().expect("naming lock").values() {
            r.set_members(list.clone());
        }
        if let Some(m) = self.members.get_mut(&id) {
            m.retired = true;
        }
    }

    /// Restarts a crashed member (madsim re-runs its init).
    pub fn restart(&mut self, id: u64) {
        let Some(m) = self.members.get_mut(&id) else {
            return;
        };
        if m.up || m.retired {
            return;
        }
        m.up = true;
        self.handle.restart(m.handle.id());
        let now = self.trace.now_ms();
        self.crashes.lock().expect("crashes lock").push((now, id));
        self.trace.event(format!("restart n{id}"));
    }

    /// Cuts member `id` off the network in both directions.
    pub fn isolate(&self, id: u64) {
        if let Some(m) = self.members.get(&id) {
            NetSim::current().clog_node(m.handle.id());
        }
    }

    /// Drops the link from `a` to `b`.
    pub fn clog_link(&self, a: u64, b: u64) {
        if let (Some(ma), Some(mb)) = (self.members.get(&a), self.members.get(&b)) {
            NetSim::current().clog_link(ma.handle.id(), mb.handle.id());
        }
    }

    /// Heals every network fault.
    pub fn heal_network(&self) {
        let net = NetSim::current();
        let ids: Vec<_> = self.members.values().map(|m| m.handle.id()).collect();
        for a in &ids {
            net.unclog_node(*a);
            for b in &ids {
                net.unclog_link(*a, *b);
            }
        }
    }

    /// Status of every live member.
    pub fn statuses(&self) -> BTreeMap<u64, CpStatus> {
        self.live
            .lock()
            .expect("live lock")
            .iter()
            .map(|(id, n)| (*id, n.status()))
            .collect()
    }

    /// The live member that is leader with the highest term.
    pub fn leader(&self) -> Option<u64> {
        self.statuses()
            .values()
            .filter(|s| s.is_leader)
            .max_by_key(|s| s.term)
            .map(|s| s.id)
    }

    /// The live CpNode of member `id`.
    pub fn node(&self, id: u64) -> Option<Arc<CpNode>> {
        self.live.lock().expect("live lock").get(&id).cloned()
    }

    /// Members that are up and not stopped by a fatal error.
    pub fn running(&self) -> Vec<u64> {
        self.members
            .values()
            .filter(|m| m.up && m.fatal.lock().expect("fatal lock").is_none())
            .map(|m| m.id)
            .collect()
    }

    /// Members stopped by a fatal storage error, with the error.
    pub fn fatal_members(&self) -> BTreeMap<u64, String> {
        self.members
            .values()
            .filter_map(|m| {
                m.fatal
                    .lock()
                    .expect("fatal lock")
                    .clone()
                    .map(|e| (m.id, e))
            })
            .collect()
    }

    /// The Distro of running member `id`.
    pub fn distro(&self, id: u64) -> Option<Arc<DistroRunner>> {
        self.naming.lock().expect("naming lock").get(&id).cloned()
    }

    /// Bytes on each member's disk.
    pub fn disk_bytes(&self) -> BTreeMap<u64, usize> {
        self.members
            .values()
            .map(|m| (m.id, m.disk.sizes().values().sum()))
            .collect()
    }
}

/// What a member's init needs; cloned for every (re)start.
#[derive(Clone)]
struct MemberCtx {
    id: u64,
    addr: String,
    initial: BTreeMap<u64, String>,
    disk: SimDisk,
    incarnation: Arc<AtomicU64>,
    fatal: Arc<Mutex<Option<String>>>,
    live: Arc<Mutex<BTreeMap<u64, Arc<CpNode>>>>,
    naming: Arc<Mutex<BTreeMap<u64, Arc<DistroRunner>>>>,
    distro_members: Arc<Mutex<BTreeMap<String, PeerAddr>>>,
    pushes: PushLog,
    alive: Alive,
    observer: Observer,
    trace: Trace,
    snapshot_every: u64,
    keep_after: u64,
}

impl MemberCtx {
    async fn run(self) {
        self.incarnation.fetch_add(1, Ordering::SeqCst);
        // The checkers' mirror of this log restarts from what survived on disk.
        let journal = self
            .disk
            .read(DiskFile::Journal)
            .ok()
            .flatten()
            .unwrap_or_default();
        if let Ok(rec) = replay(&journal) {
            let digests: Vec<_> = rec.entries.values().map(entry_digest).collect();
            self.observer.reset_log(self.id, &digests);
        }
        let mut opts = CpOptions::new(self.id, self.addr.clone(), self.initial.clone());
        opts.snapshot_logs_since_last = self.snapshot_every;
        opts.logs_kept_after_snapshot = self.keep_after;
        opts.snapshot_max_age_ms = 60_000;
        opts.log = LogStoreOptions {
            compact_bytes_min: 64 * 1024,
            observer: Some(Arc::new(self.observer.clone())),
        };
        let transport = Arc::new(SimTransport {
            alive: self.alive.clone(),
        });
        let disk: Arc<dyn Disk> = Arc::new(self.disk.clone());
        let node = match CpNode::start(opts, disk, transport.clone(), Arc::new(SimClock)).await {
            Ok(n) => n,
            Err(fatal) => {
                self.trace.event(format!("fatal n{}: {fatal}", self.id));
                *self.fatal.lock().expect("fatal lock") = Some(fatal.to_string());
                return;
            }
        };
        self.live
            .lock()
            .expect("live lock")
            .insert(self.id, node.clone());
        let members = self.distro_members.lock().expect("members lock").clone();
        let naming = DistroRunner::start(
            &self.addr,
            members,
            DistroTimings::default(),
            transport.clone(),
        );
        self.naming
            .lock()
            .expect("naming lock")
            .insert(self.id, naming.clone());
        tokio::spawn(record_pushes(
            self.id,
            naming.clone(),
            self.pushes.clone(),
            self.trace.clone(),
        ));
        self.alive
            .lock()
            .expect("alive lock")
            .insert(self.addr.clone());
        if self.initial.is_empty() {
            tokio::spawn(join_cluster(self.id, self.addr.clone(), transport));
        }
        serve(self.addr, Arc::new(EngineMember { cp: node, naming })).await;
    }
}

async fn record_pushes(node: u64, naming: Arc<DistroRunner>, log: PushLog, trace: Trace) {
    let mut rx = naming.subscribe_pushes();
    drop(naming);
    loop {
        match rx.recv().await {
            Ok(p) => log.lock().expect("push lock").push(PushRecord {
                at_ms: trace.now_ms(),
                node,
                subscriber: p.subscriber,
                service: p.service,
                hosts: p.hosts.iter().map(|h| (h.ip.clone(), h.port)).collect(),
            }),
            Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
            Err(_) => return,
        }
    }
}

/// A joining member asks the initial members, in turn, to add it until one succeeds.
async fn join_cluster(id: u64, addr: String, transport: Arc<SimTransport>) {
    for attempt in 0..200u64 {
        let target = 1 + attempt % 3;
        let request = PeerRequest::Forward {
            hops: 0,
            request: ClientRequest::AddMember {
                id,
                addr: addr.clone(),
            },
        };
        let answer = transport
            .call(
                target,
                &member_addr(target),
                request,
                Duration::from_secs(30),
            )
            .await;
        if let Ok(PeerResponse::Forward(Ok(ClientResponse::MembershipChanged))) = answer {
            return;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
