//! Simulated config clients: publish, CAS publish, remove, local get and linearizable get,
//! each recorded with its simulated call and return times and its outcome, including
//! indeterminate ones (DESIGN §5).

// Runs only under madsim, where `Instant::now` is simulated time.
#![allow(clippy::disallowed_methods)]

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nacre_engine::config::{md5_hex, ConfigCommand, ConfigKey, PublishConfig};
use nacre_engine::digest::fnv64;
use nacre_engine::error::Reject;
use nacre_engine::ports::{PeerTransport, TransportError};
use nacre_engine::raft::command::{Command, Op};
use nacre_engine::raft::type_config::TypeConfig;
use nacre_engine::wire::{ClientRequest, ClientResponse, PeerRequest, PeerResponse};
use openraft::EntryPayload;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::net::SimTransport;
use crate::scenario::Workload;
use crate::trace::Trace;
use crate::world::{member_addr, World};

/// Client-side deadline of one operation; past it the outcome is unknown.
pub const CLIENT_TIMEOUT_MS: u64 = 12_000;

/// What a client asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpKind {
    Publish(String),
    Cas { expected_md5: String, new: String },
    Remove,
    GetLocal,
    GetLinearizable,
}

/// How it ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// A write acknowledged at this log index.
    Written {
        index: u64,
    },
    CasFailed,
    /// A read: content and revision, or absent.
    Read(Option<(String, u64)>),
    /// Certainly not executed (no leader, invalid).
    Failed,
    /// May or may not have taken effect.
    Unknown,
}

/// One recorded operation.
#[derive(Debug, Clone)]
pub struct OpRecord {
    pub id: u64,
    pub client: u64,
    pub node: u64,
    pub key: String,
    pub kind: OpKind,
    pub call_ns: u64,
    pub ret_ns: u64,
    pub outcome: Outcome,
    pub incarnation: Option<u64>,
    /// Digest of the replicated entry payload, for writes.
    pub payload: Option<u64>,
}

/// The history shared by all clients.
pub type History = Arc<Mutex<Vec<OpRecord>>>;

/// Starts `workload.clients` clients that run until `end` (simulated, since the run start).
pub fn spawn_clients(
    world: &World,
    workload: &Workload,
    seed: u64,
    end: Duration,
    history: History,
) {
    let members: Vec<u64> = world.initial.keys().copied().collect();
    for c in 0..workload.clients {
        let client = Client {
            id: c + 1,
            node: members[(c as usize) % members.len()],
            rng: ChaCha8Rng::seed_from_u64(seed.wrapping_mul(31).wrapping_add(c)),
            workload: workload.clone(),
            transport: SimTransport {
                alive: world.alive.clone(),
            },
            history: history.clone(),
            incarnations: world
                .members
                .iter()
                .map(|(id, m)| (*id, m.incarnation.clone()))
                .collect(),
            trace: world.trace.clone(),
            last_seen: BTreeMap::new(),
            seq: 0,
        };
        let ip = IpAddr::V4(Ipv4Addr::new(10, 0, 1, (c + 1) as u8));
        let start = madsim::time::Instant::now();
        world
            .handle
            .create_node()
            .name(format!("client{}", c + 1))
            .ip(ip)
            .build()
            .spawn(client.run(start + end));
    }
}

struct Client {
    id: u64,
    node: u64,
    rng: ChaCha8Rng,
    workload: Workload,
    transport: SimTransport,
    history: History,
    incarnations: BTreeMap<u64, Arc<std::sync::atomic::AtomicU64>>,
    trace: Trace,
    last_seen: BTreeMap<String, String>,
    seq: u64,
}

fn now_ns() -> u64 {
    madsim::time::TimeHandle::current().elapsed().as_nanos() as u64
}

impl Client {
    async fn run(mut self, end: madsim::time::Instant) {
        while madsim::time::Instant::now() < end {
            self.one_op().await;
            let think = self
                .rng
                .gen_range(self.workload.think_ms[0]..=self.workload.think_ms[1]);
            madsim::time::sleep(Duration::from_millis(think)).await;
        }
    }

    fn pick_kind(&mut self, key: &str) -> OpKind {
        let w = &self.workload;
        let total = w.publish + w.cas + w.remove + w.get_local + w.get_linearizable;
        let mut roll = self.rng.gen_range(0..total.max(1));
        self.seq += 1;
        let content = format!("c{}-{}", self.id, self.seq);
        for (weight, kind) in [
            (w.publish, 0),
            (w.cas, 1),
            (w.remove, 2),
            (w.get_local, 3),
            (w.get_linearizable, 4),
        ] {
            if roll < weight {
                return match kind {
                    0 => OpKind::Publish(content),
                    1 => {
                        let seen = self.last_seen.get(key).cloned().unwrap_or_default();
                        OpKind::Cas {
                            expected_md5: md5_hex(&seen),
                            new: content,
                        }
                    }
                    2 => OpKind::Remove,
                    3 => OpKind::GetLocal,
                    _ => OpKind::GetLinearizable,
                };
            }
            roll -= weight;
        }
        OpKind::GetLocal
    }

    async fn one_op(&mut self) {
        let key = format!("k{}", self.rng.gen_range(0..self.workload.keys));
        let kind = self.pick_kind(&key);
        let config_key = ConfigKey::new("", "DEFAULT_GROUP", &key);
        let (request, payload) = build_request(&kind, config_key, self.id);
        let incarnation = self.incarnations[&self.node].load(Ordering::SeqCst);
        let call_ns = now_ns();
        let msg = PeerRequest::Forward { hops: 0, request };
        let answer = self
            .transport
            .call(
                self.node,
                &member_addr(self.node),
                msg,
                Duration::from_millis(CLIENT_TIMEOUT_MS),
            )
            .await;
        let ret_ns = now_ns();
        let outcome = outcome_of(answer);
        let same_incarnation = self.incarnations[&self.node].load(Ordering::SeqCst) == incarnation;
        match (&outcome, &kind) {
            (Outcome::Read(v), _) => {
                self.last_seen.insert(
                    key.clone(),
                    v.as_ref().map(|(c, _)| c.clone()).unwrap_or_default(),
                );
            }
            (Outcome::Written { .. }, OpKind::Publish(c) | OpKind::Cas { new: c, .. }) => {
                self.last_seen.insert(key.clone(), c.clone());
            }
            _ => {}
        }
        let id = {
            let mut h = self.history.lock().expect("history lock");
            let id = h.len() as u64 + 1;
            h.push(OpRecord {
                id,
                client: self.id,
                node: self.node,
                key: key.clone(),
                kind: kind.clone(),
                call_ns,
                ret_ns,
                outcome: outcome.clone(),
                incarnation: same_incarnation.then_some(incarnation),
                payload,
            });
            id
        };
        self.trace.event(format!(
            "op {id} c{} n{} {key} {kind:?} -> {outcome:?}",
            self.id, self.node
        ));
    }
}

fn build_request(kind: &OpKind, key: ConfigKey, client: u64) -> (ClientRequest, Option<u64>) {
    let publish = |content: &str, cas: Option<String>| {
        ConfigCommand::Publish(PublishConfig {
            key: key.clone(),
            content: content.to_string(),
            cas_md5: cas,
            config_type: "text".into(),
            desc: String::new(),
            tags: String::new(),
            app_name: String::new(),
            encrypted_data_key: String::new(),
            src_user: format!("client{client}"),
            src_ip: String::new(),
        })
    };
    let op = match kind {
        OpKind::Publish(c) => publish(c, None),
        OpKind::Cas { expected_md5, new } => publish(new, Some(expected_md5.clone())),
        OpKind::Remove => ConfigCommand::Remove {
            key: key.clone(),
            src_user: format!("client{client}"),
            src_ip: String::new(),
        },
        OpKind::GetLocal => return (ClientRequest::GetLocal(key), None),
        OpKind::GetLinearizable => return (ClientRequest::GetLinearizable(key), None),
    };
    let cmd = Command {
        now_ms: crate::world::SimClock.now_ms_value(),
        op: Op::Config(op),
    };
    let payload =
        postcard::to_allocvec(&EntryPayload::<TypeConfig>::Normal(cmd.clone())).expect("encodes");
    (ClientRequest::Write(cmd), Some(fnv64(&payload)))
}

fn outcome_of(answer: Result<PeerResponse, TransportError>) -> Outcome {
    match answer {
        Ok(PeerResponse::Forward(Ok(ClientResponse::Written(w)))) => match w.result {
            nacre_engine::raft::command::CommandResult::Config(
                nacre_engine::config::ConfigApplied::CasMismatch { .. },
            ) => Outcome::CasFailed,
            _ => Outcome::Written { index: w.index },
        },
        Ok(PeerResponse::Forward(Ok(ClientResponse::Config(item)))) => {
            Outcome::Read(item.map(|i| (i.content, i.revision)))
        }
        Ok(PeerResponse::Forward(Err(Reject::NoLeader { .. } | Reject::InvalidParam(_)))) => {
            Outcome::Failed
        }
        Err(TransportError::Unreachable(_)) => Outcome::Failed,
        _ => Outcome::Unknown,
    }
}
