//! Naming (Distro) properties, checked against the clients' ground truth (DESIGN §5; field
//! lessons §3: alibaba/nacos#15857, #10693):
//!
//! - no live client's instance is deleted cluster-wide: at every sample some running member
//!   shows it, unless a crash explains the loss (the member holding a connection crashed after
//!   the registration; for HTTP clients, any member crashed in the last `CRASH_GRACE_MS`);
//! - no dead client's instance lingers: outside fault windows no member shows the instance of
//!   a client gone longer than its expiry (clean leave, silent HTTP client, lost connection)
//!   plus `LINGER_SLACK_MS`;
//! - no spurious offline notification: outside fault windows, no push to a subscriber lacks
//!   the instance of a client registered at least `PROPAGATION_MS` earlier and still live.

use std::collections::{BTreeMap, BTreeSet};

use nacre_engine::constants::{CLIENT_BEAT_DELETE_MS, SYNCED_CLIENT_EXPIRE_MS};

use std::sync::{Arc, Mutex};

use nacre_engine::naming::ServiceKey;

use crate::check::Violation;

/// How a registration ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// The client disconnected or deregistered cleanly.
    Left,
    /// An HTTP client stopped beating.
    Silent,
    /// The client lost its connection (member crashed or cut off) and registers elsewhere.
    Lost,
}

/// One acknowledged registration of a client, until it ended.
#[derive(Debug, Clone)]
pub struct Epoch {
    pub client: u64,
    pub http: bool,
    pub service: ServiceKey,
    pub ip: String,
    pub port: u16,
    /// The member holding the connection (0 for HTTP clients, whose owner moves).
    pub node: u64,
    /// When the client sent the registration.
    pub start_ms: u64,
    /// When the client heard it acknowledged.
    pub acked_ms: Option<u64>,
    pub end: Option<(u64, End)>,
}

/// The ground truth of the naming clients, and violations they saw themselves.
#[derive(Debug, Default)]
pub struct NamingLog {
    pub epochs: Vec<Epoch>,
    pub violations: Vec<Violation>,
    pub registrations: u64,
    pub beats_not_found: u64,
    pub reconnects: u64,
}

/// The log shared by the naming clients.
pub type SharedLog = Arc<Mutex<NamingLog>>;

/// The instances a member shows: (service, ip, port).
pub type View = BTreeSet<(ServiceKey, String, u16)>;

/// A push to a local subscriber, as recorded for the checkers.
#[derive(Debug, Clone)]
pub struct PushRecord {
    pub at_ms: u64,
    pub node: u64,
    pub subscriber: String,
    pub service: ServiceKey,
    pub hosts: Vec<(String, u16)>,
}

/// After a crash or restart, HTTP clients' instances may be missing this long (ownership
/// moves, a registration not yet synced is re-registered on the next beat).
pub const CRASH_GRACE_MS: u64 = 15_000;
/// Slack on top of an expiry before an instance counts as lingering.
pub const LINGER_SLACK_MS: u64 = 10_000;
/// Time a registration gets to reach every member when nothing fails.
pub const PROPAGATION_MS: u64 = 3_000;

/// Simulated intervals in which faults (plus a grace period) excuse divergence.
#[derive(Debug, Clone, Default)]
pub struct Windows(pub Vec<(u64, u64)>);

impl Windows {
    pub fn contains(&self, t: u64) -> bool {
        self.0.iter().any(|(a, b)| *a <= t && t <= *b)
    }
}

/// Whether a crash explains the absence of `e`'s instance at `now`.
pub fn exempt(e: &Epoch, now: u64, crashes: &[(u64, u64)]) -> bool {
    if e.http {
        crashes
            .iter()
            .any(|(t, _)| *t <= now && now - *t <= CRASH_GRACE_MS)
    } else {
        crashes
            .iter()
            .any(|(t, n)| *n == e.node && *t >= e.start_ms)
    }
}

fn live_at(e: &Epoch, t: u64) -> bool {
    e.acked_ms.is_some_and(|a| a <= t) && e.end.is_none_or(|(end, _)| end > t)
}

fn allowance(end: End) -> u64 {
    LINGER_SLACK_MS
        + match end {
            End::Left => 0,
            End::Silent => CLIENT_BEAT_DELETE_MS,
            End::Lost => SYNCED_CLIENT_EXPIRE_MS,
        }
}

/// Whether an instance seen at `t` may be shown: its client registered it (acknowledged or
/// not yet) and is live, or is gone recently enough. Expiry counts from the later of the end
/// and the end of a fault window overlapping it (ownership of HTTP clients settles then).
pub fn may_show(epochs: &[&Epoch], t: u64, windows: &Windows) -> bool {
    epochs.iter().any(|e| match e.end {
        None => e.start_ms <= t,
        Some((end, how)) => {
            let settled = windows
                .0
                .iter()
                .filter(|(a, b)| *a <= t && *b >= end)
                .map(|(_, b)| *b)
                .max()
                .unwrap_or(end)
                .max(end);
            t <= settled + allowance(how)
        }
    })
}

/// Checks one sample of every running member's view at `now`.
pub fn check_sample(
    now: u64,
    views: &BTreeMap<u64, View>,
    log: &NamingLog,
    crashes: &[(u64, u64)],
    windows: &Windows,
    out: &mut Vec<Violation>,
) {
    for e in log.epochs.iter().filter(|e| live_at(e, now)) {
        if exempt(e, now, crashes) {
            continue;
        }
        let key = (e.service.clone(), e.ip.clone(), e.port);
        if !views.values().any(|v| v.contains(&key)) {
            out.push(Violation::LiveInstanceDeleted {
                client: e.client,
                at_ms: now,
            });
        }
    }
    if windows.contains(now) {
        return;
    }
    let by_addr = epochs_by_addr(log);
    for (node, view) in views {
        for (_, ip, port) in view {
            let epochs = by_addr
                .get(&(ip.clone(), *port))
                .cloned()
                .unwrap_or_default();
            if !may_show(&epochs, now, windows) {
                out.push(Violation::LingeringInstance {
                    node: *node,
                    client: epochs.first().map(|e| e.client).unwrap_or(0),
                    at_ms: now,
                });
            }
        }
    }
}

fn epochs_by_addr(log: &NamingLog) -> BTreeMap<(String, u16), Vec<&Epoch>> {
    let mut m: BTreeMap<(String, u16), Vec<&Epoch>> = BTreeMap::new();
    for e in &log.epochs {
        m.entry((e.ip.clone(), e.port)).or_default().push(e);
    }
    m
}

/// Checks every push of the run.
pub fn check_pushes(
    pushes: &[PushRecord],
    log: &NamingLog,
    crashes: &[(u64, u64)],
    windows: &Windows,
    out: &mut Vec<Violation>,
) {
    for p in pushes {
        if windows.contains(p.at_ms) {
            continue;
        }
        let hosts: BTreeSet<&(String, u16)> = p.hosts.iter().collect();
        for e in log.epochs.iter().filter(|e| e.service == p.service) {
            let acked = e.acked_ms.unwrap_or(u64::MAX);
            if acked.saturating_add(PROPAGATION_MS) > p.at_ms || !live_at(e, p.at_ms) {
                continue;
            }
            if exempt(e, p.at_ms, crashes) {
                continue;
            }
            if !hosts.contains(&(e.ip.clone(), e.port)) {
                out.push(Violation::SpuriousOffline {
                    subscriber: p.subscriber.clone(),
                    client: e.client,
                    at_ms: p.at_ms,
                });
            }
        }
    }
}

/// Why the members' naming views have not converged yet (`None` once they have): every
/// running member loaded, agrees on the healthy members (hence on every HTTP client's owner)
/// and shows the same instances, among them every live client's. (Instances of gone clients
/// are the lingering checker's business: they may stay until their expiry.)
pub fn not_converged(
    now: u64,
    views: &BTreeMap<u64, View>,
    healthy: &BTreeMap<u64, Vec<String>>,
    loaded: &BTreeMap<u64, bool>,
    running: &[String],
    log: &NamingLog,
) -> Option<String> {
    if let Some((n, _)) = loaded.iter().find(|(_, l)| !**l) {
        return Some(format!("n{n} has not loaded its snapshot"));
    }
    let mut want: Vec<String> = running.to_vec();
    want.sort();
    if let Some((n, h)) = healthy.iter().find(|(_, h)| **h != want) {
        return Some(format!("n{n} sees healthy members {h:?}, running {want:?}"));
    }
    let first = views.values().next()?;
    if let Some((n, v)) = views.iter().find(|(_, v)| *v != first) {
        let (f, fv) = views.iter().next()?;
        let only_first: Vec<_> = fv
            .difference(v)
            .map(|(_, ip, port)| format!("{ip}:{port}"))
            .collect();
        let only_n: Vec<_> = v
            .difference(fv)
            .map(|(_, ip, port)| format!("{ip}:{port}"))
            .collect();
        return Some(format!(
            "n{n}'s instances differ from n{f}'s: only on n{f} {only_first:?}, only on n{n} {only_n:?}"
        ));
    }
    for e in log
        .epochs
        .iter()
        .filter(|e| e.end.is_none() && e.start_ms <= now)
    {
        if !first.contains(&(e.service.clone(), e.ip.clone(), e.port)) {
            return Some(format!("live client {} is missing", e.client));
        }
    }
    None
}
