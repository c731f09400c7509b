//! The driver of a member's Distro: a timer, the peer transport and the push fan-out around
//! the sans-IO core. The server and the simulator run the same driver; only the transport
//! differs.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use tokio::sync::broadcast;

use crate::constants::{
    DISTRO_CALL_TIMEOUT_MS, DISTRO_DISPATCH_MS, DISTRO_FORWARD_HOPS_MAX, DISTRO_LOAD_TIMEOUT_MS,
    DISTRO_TICK_MS,
};
use crate::naming::distro::{
    Distro, DistroMsg, DistroReply, DistroTimings, Effect, IpPortOutcome, IpPortWrite, NamingError,
};
use crate::naming::{Instance, ServiceKey};
use crate::ports::PeerTransport;
use crate::wire::{NamingRequest, NamingResponse, PeerRequest, PeerResponse};

/// A member as Distro addresses it: its node id and peer-port address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerAddr {
    pub id: u64,
    pub addr: String,
}

/// A change of a service's instances for one local subscriber.
#[derive(Debug, Clone, PartialEq)]
pub struct Push {
    pub subscriber: String,
    pub service: ServiceKey,
    pub hosts: Vec<Instance>,
}

/// Capacity of the push channel; a subscriber that lags further misses pushes and re-queries.
const PUSH_CHANNEL: usize = 4096;

/// One member's Distro with its I/O.
pub struct DistroRunner {
    me: String,
    core: Mutex<Distro>,
    members: Mutex<BTreeMap<String, PeerAddr>>,
    transport: Arc<dyn PeerTransport>,
    start: tokio::time::Instant,
    pushes: broadcast::Sender<Push>,
}

impl DistroRunner {
    /// Starts the Distro of member `me`; `members` maps every member's Distro name (including
    /// `me`) to its peer address.
    pub fn start(
        me: &str,
        members: BTreeMap<String, PeerAddr>,
        timings: DistroTimings,
        transport: Arc<dyn PeerTransport>,
    ) -> Arc<DistroRunner> {
        let names: Vec<String> = members.keys().cloned().collect();
        let runner = Arc::new(DistroRunner {
            me: me.to_string(),
            core: Mutex::new(Distro::new(me, &names, timings, 0)),
            members: Mutex::new(members),
            transport,
            start: runtime_now(),
            pushes: broadcast::channel(PUSH_CHANNEL).0,
        });
        tokio::spawn(ticker(Arc::downgrade(&runner)));
        runner
    }

    fn now(&self) -> u64 {
        self.start.elapsed().as_millis() as u64
    }

    /// Runs `f` on the core at the current time and carries out the effects it produced.
    pub fn with<R>(self: &Arc<Self>, f: impl FnOnce(&mut Distro, u64) -> R) -> R {
        let now = self.now();
        let (r, effects) = {
            let mut core = self.core.lock().expect("distro lock");
            let r = f(&mut core, now);
            (r, core.drain())
        };
        self.carry_out(effects);
        r
    }

    /// Reads the core without changing it.
    pub fn read<R>(&self, f: impl FnOnce(&Distro) -> R) -> R {
        f(&self.core.lock().expect("distro lock"))
    }

    /// Pushes to local subscribers.
    pub fn subscribe_pushes(&self) -> broadcast::Receiver<Push> {
        self.pushes.subscribe()
    }

    /// Replaces the member list.
    pub fn set_members(self: &Arc<Self>, members: BTreeMap<String, PeerAddr>) {
        let names: Vec<String> = members.keys().cloned().collect();
        *self.members.lock().expect("members lock") = members;
        self.with(|d, now| d.set_members(now, &names));
    }

    fn carry_out(self: &Arc<Self>, effects: Vec<Effect>) {
        for e in effects {
            match e {
                Effect::Push {
                    subscriber,
                    service,
                    hosts,
                } => {
                    // No receiver is not an error: nobody is listening yet.
                    let _ = self.pushes.send(Push {
                        subscriber,
                        service,
                        hosts,
                    });
                }
                Effect::Send { id, to, msg } => {
                    let target = self.members.lock().expect("members lock").get(&to).cloned();
                    let me = self.clone();
                    tokio::spawn(async move {
                        let reply = match target {
                            Some(t) => me.call(&t, msg).await,
                            None => None,
                        };
                        me.with(|d, now| d.on_reply(now, id, reply));
                    });
                }
            }
        }
    }

    async fn call(&self, target: &PeerAddr, msg: DistroMsg) -> Option<DistroReply> {
        let timeout = match msg {
            DistroMsg::SnapshotQuery => DISTRO_LOAD_TIMEOUT_MS,
            _ => DISTRO_CALL_TIMEOUT_MS,
        };
        let request = PeerRequest::Distro {
            from: self.me.clone(),
            msg,
        };
        match self
            .transport
            .call(
                target.id,
                &target.addr,
                request,
                Duration::from_millis(timeout),
            )
            .await
        {
            Ok(PeerResponse::Distro(reply)) => Some(reply),
            _ => None,
        }
    }

    /// Handles a Distro message from another member.
    pub fn on_peer_message(self: &Arc<Self>, from: &str, msg: DistroMsg) -> DistroReply {
        self.with(|d, now| d.on_message(now, from, msg))
    }

    /// Handles a naming request arriving here (from a client, or forwarded `hops` times).
    pub async fn handle(
        self: &Arc<Self>,
        request: NamingRequest,
        hops: u8,
    ) -> Result<NamingResponse, NamingError> {
        match request {
            NamingRequest::Connect { conn } => {
                self.with(|d, now| d.connect(now, &conn));
                Ok(NamingResponse::Ok)
            }
            NamingRequest::KeepAlive { conn } => {
                if self.with(|d, now| d.keepalive(now, &conn)) {
                    Ok(NamingResponse::Ok)
                } else {
                    Err(NamingError::UnknownConnection(conn))
                }
            }
            NamingRequest::Disconnect { conn } => {
                self.with(|d, now| d.disconnect(now, &conn));
                Ok(NamingResponse::Ok)
            }
            NamingRequest::Register {
                conn,
                service,
                instance,
            } => self
                .with(|d, now| d.register(now, &conn, &service, instance))
                .map(|()| NamingResponse::Ok),
            NamingRequest::RegisterBatch {
                conn,
                service,
                instances,
            } => self
                .with(|d, now| d.register_batch(now, &conn, &service, instances))
                .map(|()| NamingResponse::Ok),
            NamingRequest::Deregister { conn, service } => self
                .with(|d, now| d.deregister(now, &conn, &service))
                .map(|()| NamingResponse::Ok),
            NamingRequest::Subscribe { conn, service } => self
                .with(|d, now| d.subscribe(now, &conn, &service))
                .map(|()| NamingResponse::Ok),
            NamingRequest::IpPort(write) => self
                .ip_port_write(write, hops)
                .await
                .map(NamingResponse::IpPort),
            NamingRequest::List { service } => Ok(NamingResponse::Instances(
                self.read(|d| d.instances(&service)),
            )),
        }
    }

    /// Applies an HTTP client write at its responsible member: here, or forwarded there
    /// (at most `DISTRO_FORWARD_HOPS_MAX` times).
    pub async fn ip_port_write(
        self: &Arc<Self>,
        write: IpPortWrite,
        hops: u8,
    ) -> Result<IpPortOutcome, NamingError> {
        let route = self.read(|d| d.route(&write.tag()));
        let target = match route {
            Some(name) if hops < DISTRO_FORWARD_HOPS_MAX => self
                .members
                .lock()
                .expect("members lock")
                .get(&name)
                .cloned(),
            _ => None,
        };
        let Some(target) = target else {
            return Ok(self.with(|d, now| d.apply_ip_port(now, &write)));
        };
        let request = PeerRequest::Naming {
            hops: hops + 1,
            request: NamingRequest::IpPort(write),
        };
        let answer = self
            .transport
            .call(
                target.id,
                &target.addr,
                request,
                Duration::from_millis(DISTRO_CALL_TIMEOUT_MS),
            )
            .await;
        match answer {
            Ok(PeerResponse::Naming(Ok(NamingResponse::IpPort(outcome)))) => Ok(outcome),
            Ok(PeerResponse::Naming(Err(e))) => Err(e),
            Ok(other) => Err(NamingError::ForwardFailed(format!(
                "unexpected answer {other:?}"
            ))),
            Err(e) => Err(NamingError::ForwardFailed(e.to_string())),
        }
    }
}

/// The runtime's monotonic clock: real time in the server, simulated time under madsim. It
/// only drives Distro's timers, relative to the runner's start.
#[allow(clippy::disallowed_methods)]
fn runtime_now() -> tokio::time::Instant {
    tokio::time::Instant::now()
}

/// Distro's timer: a full tick every `DISTRO_TICK_MS`, and in between, every
/// `DISTRO_DISPATCH_MS`, only the sending of sync tasks that fell due.
async fn ticker(runner: Weak<DistroRunner>) {
    let per_tick = DISTRO_TICK_MS / DISTRO_DISPATCH_MS;
    let mut round: u64 = 0;
    loop {
        tokio::time::sleep(Duration::from_millis(DISTRO_DISPATCH_MS)).await;
        let Some(r) = runner.upgrade() else {
            return;
        };
        round += 1;
        if round.is_multiple_of(per_tick) {
            r.with(|d, now| d.on_tick(now));
        } else if r.read(|d| d.has_due_task(r.now())) {
            r.with(|d, now| d.on_dispatch(now));
        }
    }
}
