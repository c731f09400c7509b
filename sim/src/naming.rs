//! Simulated naming clients (DESIGN §5): connection clients (2.x SDK style: connect, register,
//! keepalive, re-register, leave), HTTP clients (1.x style: register through any member, beat
//! every 5 s, re-register on "not found", stop beating) and subscribers. They record the
//! ground truth the naming checkers compare every member's view with: when each client's
//! registration was acknowledged, and when and how it ended.

// Runs only under madsim, where `Instant::now` is simulated time.
#![allow(clippy::disallowed_methods)]

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nacre_engine::naming::distro::{ip_port_client_id, IpPortOutcome, IpPortWrite};
use nacre_engine::naming::runner::{DistroRunner, PeerAddr};
use nacre_engine::naming::{Instance, ServiceKey};
use nacre_engine::ports::{PeerTransport, TransportError};
use nacre_engine::wire::{NamingRequest, NamingResponse, PeerRequest, PeerResponse};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::check::Violation;
use crate::net::SimTransport;
use crate::trace::Trace;
use crate::world::World;

pub use crate::check::naming::{End, Epoch, NamingLog, SharedLog, View};
pub use crate::scenario::NamingWorkload;

/// What every naming client shares.
#[derive(Clone)]
struct Ctx {
    transport: SimTransport,
    members: Arc<Mutex<BTreeMap<String, PeerAddr>>>,
    naming: Arc<Mutex<BTreeMap<u64, Arc<DistroRunner>>>>,
    crashes: Arc<Mutex<Vec<(u64, u64)>>>,
    log: SharedLog,
    trace: Trace,
    end: madsim::time::Instant,
}

/// The instance a client publishes.
pub fn client_instance(client: u64, http: bool) -> (String, u16) {
    let ip = format!("10.9.{}.{}", u8::from(http), client);
    (ip, 8000 + client as u16)
}

/// The service of a client.
pub fn client_service(client: u64, services: u64) -> ServiceKey {
    ServiceKey::new(
        "public",
        "DEFAULT_GROUP",
        &format!("svc{}", client % services.max(1)),
    )
}

const CALL_TIMEOUT_MS: u64 = 3_000;
const KEEPALIVE_MS: u64 = 2_000;
const BEAT_MS: u64 = nacre_engine::constants::CLIENT_BEAT_INTERVAL_MS;

impl Ctx {
    fn now_ms(&self) -> u64 {
        self.trace.now_ms()
    }

    fn member(&self, pick: u64) -> (u64, String) {
        let m = self.members.lock().expect("members lock");
        let list: Vec<&PeerAddr> = m.values().collect();
        let p = list[(pick as usize) % list.len()];
        (p.id, p.addr.clone())
    }

    async fn call(
        &self,
        node: &(u64, String),
        request: NamingRequest,
    ) -> Result<NamingResponse, String> {
        let r = self
            .transport
            .call(
                node.0,
                &node.1,
                PeerRequest::Naming { hops: 0, request },
                Duration::from_millis(CALL_TIMEOUT_MS),
            )
            .await;
        match r {
            Ok(PeerResponse::Naming(Ok(resp))) => Ok(resp),
            Ok(PeerResponse::Naming(Err(e))) => Err(e.to_string()),
            Ok(other) => Err(format!("unexpected {other:?}")),
            Err(TransportError::Timeout) => Err("timeout".into()),
            Err(e) => Err(e.to_string()),
        }
    }

    fn open_epoch(&self, e: Epoch) -> usize {
        let mut log = self.log.lock().expect("naming log");
        log.epochs.push(e);
        log.epochs.len() - 1
    }

    fn ack_epoch(&self, idx: usize) {
        let now = self.now_ms();
        let mut log = self.log.lock().expect("naming log");
        log.registrations += 1;
        if let Some(e) = log.epochs.get_mut(idx) {
            e.acked_ms.get_or_insert(now);
        }
    }

    fn close_epoch(&self, idx: usize, end: End) {
        let now = self.now_ms();
        if let Some(e) = self.log.lock().expect("naming log").epochs.get_mut(idx) {
            if e.end.is_none() {
                e.end = Some((now, end));
            }
        }
    }

    fn crashed_since(&self, node: u64, since_ms: u64) -> bool {
        self.crashes
            .lock()
            .expect("crashes lock")
            .iter()
            .any(|(t, n)| *n == node && *t >= since_ms)
    }
}

/// Starts the naming clients; they run until `end` (simulated, since the run start).
pub fn spawn_naming_clients(
    world: &World,
    w: &NamingWorkload,
    seed: u64,
    end: Duration,
    log: SharedLog,
) {
    let ctx = Ctx {
        transport: SimTransport {
            alive: world.alive.clone(),
        },
        members: world.distro_members.clone(),
        naming: world.naming.clone(),
        crashes: world.crashes.clone(),
        log,
        trace: world.trace.clone(),
        end: madsim::time::Instant::now() + end,
    };
    let spawn =
        |name: String,
         n: u8,
         fut: std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>| {
            world
                .handle
                .create_node()
                .name(name)
                .ip(IpAddr::V4(Ipv4Addr::new(10, 0, 2, n)))
                .build()
                .spawn(fut);
        };
    let mut n = 0u8;
    let total = w.conn_clients + w.http_clients;
    for i in 1..=total {
        n += 1;
        let http = i > w.conn_clients;
        let rng = ChaCha8Rng::seed_from_u64(seed.wrapping_mul(131).wrapping_add(i));
        let leave = w.leave_one_in > 0 && i % w.leave_one_in == 0;
        let c = NamingClient {
            ctx: ctx.clone(),
            id: i,
            http,
            service: client_service(i, w.services),
            rng,
            leave_at_ms: leave.then_some(0),
            leave_range: w.leave_at_s,
            reregister_p: w.reregister_p,
        };
        spawn(format!("naming{i}"), n, Box::pin(c.run()));
    }
    for s in 1..=w.subscribers {
        n += 1;
        let services: Vec<ServiceKey> = (0..w.services)
            .map(|k| client_service(k, w.services))
            .collect();
        spawn(
            format!("subscriber{s}"),
            n,
            Box::pin(subscriber(ctx.clone(), s, services)),
        );
    }
}

struct NamingClient {
    ctx: Ctx,
    id: u64,
    http: bool,
    service: ServiceKey,
    rng: ChaCha8Rng,
    leave_at_ms: Option<u64>,
    leave_range: [u64; 2],
    reregister_p: f64,
}

fn sleep_ms(ms: u64) -> madsim::time::Sleep {
    madsim::time::sleep(Duration::from_millis(ms))
}

impl NamingClient {
    fn instance(&self) -> Instance {
        let (ip, port) = client_instance(self.id, self.http);
        Instance::new(&ip, port)
    }

    fn epoch(&self, node: u64) -> Epoch {
        let (ip, port) = client_instance(self.id, self.http);
        Epoch {
            client: self.id,
            http: self.http,
            service: self.service.clone(),
            ip,
            port,
            node,
            start_ms: self.ctx.now_ms(),
            acked_ms: None,
            end: None,
        }
    }

    async fn run(mut self) {
        if self.leave_at_ms.is_some() {
            let [a, b] = self.leave_range;
            self.leave_at_ms = Some(self.rng.gen_range(a * 1000..=b.max(a) * 1000));
        }
        // Stagger the start so registrations do not all land in one tick.
        sleep_ms(self.rng.gen_range(0..2_000)).await;
        if self.http {
            self.run_http().await
        } else {
            self.run_conn().await
        }
    }

    fn leaving(&self) -> bool {
        self.leave_at_ms.is_some_and(|t| self.ctx.now_ms() >= t)
    }

    async fn run_conn(mut self) {
        let mut attempt = self.id;
        let mut k = 0;
        while madsim::time::Instant::now() < self.ctx.end {
            let node = self.ctx.member(attempt);
            k += 1;
            let conn = format!("conn-{}-{k}", self.id);
            let epoch = self.ctx.open_epoch(self.epoch(node.0));
            let registered = self
                .ctx
                .call(&node, NamingRequest::Connect { conn: conn.clone() })
                .await
                .is_ok()
                && self
                    .ctx
                    .call(
                        &node,
                        NamingRequest::Register {
                            conn: conn.clone(),
                            service: self.service.clone(),
                            instance: self.instance(),
                        },
                    )
                    .await
                    .is_ok();
            if !registered {
                // The member may hold the registration anyway, until the connection idles out.
                self.ctx.close_epoch(epoch, End::Lost);
                attempt += 1;
                sleep_ms(1_000).await;
                continue;
            }
            self.ctx.ack_epoch(epoch);
            loop {
                sleep_ms(KEEPALIVE_MS).await;
                if madsim::time::Instant::now() >= self.ctx.end {
                    return;
                }
                if self.leaving() {
                    // Gone from the moment it asks to leave.
                    self.ctx.close_epoch(epoch, End::Left);
                    let _ = self
                        .ctx
                        .call(&node, NamingRequest::Disconnect { conn: conn.clone() })
                        .await;
                    return;
                }
                let request = if self.rng.gen_bool(self.reregister_p) {
                    NamingRequest::Register {
                        conn: conn.clone(),
                        service: self.service.clone(),
                        instance: self.instance(),
                    }
                } else {
                    NamingRequest::KeepAlive { conn: conn.clone() }
                };
                if self.ctx.call(&node, request).await.is_err() {
                    self.ctx.close_epoch(epoch, End::Lost);
                    self.ctx.log.lock().expect("naming log").reconnects += 1;
                    // The member may still hold the connection: close it if it can be reached.
                    let _ = self
                        .ctx
                        .call(&node, NamingRequest::Disconnect { conn: conn.clone() })
                        .await;
                    attempt += 1;
                    break;
                }
            }
        }
    }

    async fn run_http(mut self) {
        let mut epoch: Option<usize> = None;
        let mut registered = false;
        while madsim::time::Instant::now() < self.ctx.end {
            if self.leaving() {
                if let Some(e) = epoch {
                    self.ctx.close_epoch(e, End::Silent);
                }
                return;
            }
            let node = self.ctx.member(self.rng.gen_range(0..64));
            let write = if registered {
                IpPortWrite::Beat {
                    service: self.service.clone(),
                    ip: self.instance().ip,
                    port: self.instance().port,
                }
            } else {
                IpPortWrite::Register {
                    service: self.service.clone(),
                    instance: self.instance(),
                }
            };
            let started = self.ctx.now_ms();
            if epoch.is_none() {
                epoch = Some(self.ctx.open_epoch(self.epoch(0)));
            }
            match self.ctx.call(&node, NamingRequest::IpPort(write)).await {
                Ok(NamingResponse::IpPort(IpPortOutcome::Done { at })) if !registered => {
                    self.check_forwarded_write(&at, started);
                    if let Some(e) = epoch {
                        self.ctx.ack_epoch(e);
                    }
                    registered = true;
                }
                Ok(NamingResponse::IpPort(IpPortOutcome::BeatNotFound { .. })) => {
                    self.ctx.log.lock().expect("naming log").beats_not_found += 1;
                    registered = false;
                    continue;
                }
                _ => {}
            }
            sleep_ms(if registered { BEAT_MS } else { 1_000 }).await;
        }
    }

    fn member_id(&self, name: &str) -> u64 {
        self.ctx
            .members
            .lock()
            .expect("members lock")
            .get(name)
            .map(|p| p.id)
            .unwrap_or(0)
    }

    /// A write acknowledged by member `at` is in `at`'s view when the client hears of it,
    /// unless `at` restarted meanwhile.
    fn check_forwarded_write(&self, at: &str, started_ms: u64) {
        let id = self.member_id(at);
        if self.ctx.crashed_since(id, started_ms) {
            return;
        }
        let Some(runner) = self
            .ctx
            .naming
            .lock()
            .expect("naming lock")
            .get(&id)
            .cloned()
        else {
            return;
        };
        let (ip, port) = client_instance(self.id, true);
        let held = runner.read(|d| {
            d.client(&ip_port_client_id(&ip, port))
                .is_some_and(|c| c.publishes(&self.service))
        });
        if !held {
            self.ctx.log.lock().expect("naming log").violations.push(
                Violation::ForwardedWriteLost {
                    client: self.id,
                    member: id,
                    at_ms: self.ctx.now_ms(),
                },
            );
        }
    }
}

async fn subscriber(ctx: Ctx, id: u64, services: Vec<ServiceKey>) {
    let mut attempt = id;
    let mut k = 0;
    while madsim::time::Instant::now() < ctx.end {
        let node = ctx.member(attempt);
        k += 1;
        let conn = format!("sub-{id}-{k}");
        let mut ok = ctx
            .call(&node, NamingRequest::Connect { conn: conn.clone() })
            .await
            .is_ok();
        for s in &services {
            ok = ok
                && ctx
                    .call(
                        &node,
                        NamingRequest::Subscribe {
                            conn: conn.clone(),
                            service: s.clone(),
                        },
                    )
                    .await
                    .is_ok();
        }
        while ok && madsim::time::Instant::now() < ctx.end {
            sleep_ms(KEEPALIVE_MS).await;
            ok = ctx
                .call(&node, NamingRequest::KeepAlive { conn: conn.clone() })
                .await
                .is_ok();
        }
        attempt += 1;
        sleep_ms(1_000).await;
    }
}

/// The view of one member's Distro.
pub fn view_of(d: &DistroRunner) -> View {
    d.read(|d| d.addresses())
}
