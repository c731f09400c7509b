//! The load loop every request workload shares: `connections` concurrent sessions, each
//! sending one request after the other and timing it, until the duration passes or the shared
//! request budget is spent. A session that fails at the transport is reopened.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Barrier;

use crate::report::{now, sample, Report, Tally};

/// How much load to apply.
pub struct Load {
    pub connections: usize,
    pub duration: Duration,
    pub max_requests: u64,
    /// The server processes whose RSS and CPU time the report gives.
    pub server_pids: Vec<u32>,
}

/// The longest one request (or one session opening) may take before it counts as an error.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Pause before opening a session again after a failed opening.
const REOPEN_PAUSE: Duration = Duration::from_millis(100);

/// Why a request did not succeed.
#[derive(Debug)]
pub struct Failure {
    /// What the error report counts it under (`HTTP 500`, `ConfigQueryResponse errorCode 300`).
    pub kind: String,
    /// The session is unusable and must be reopened.
    pub reopen: bool,
}

impl Failure {
    /// The server answered, but not with success.
    pub fn answer(kind: impl Into<String>) -> Failure {
        Failure {
            kind: kind.into(),
            reopen: false,
        }
    }

    /// The transport failed.
    pub fn transport(kind: impl Into<String>) -> Failure {
        Failure {
            kind: kind.into(),
            reopen: true,
        }
    }
}

/// A kind of request, sent over sessions (HTTP keep-alive connections, gRPC connections).
pub trait Workload: Send + Sync + 'static {
    type Session: Send + 'static;

    /// The target the report names.
    fn target(&self) -> String;

    /// Opens session number `conn`.
    fn open(&self, conn: usize) -> impl Future<Output = Result<Self::Session, String>> + Send;

    /// Sends request number `n` (unique across sessions) and reads its answer.
    fn send(
        &self,
        session: &mut Self::Session,
        n: u64,
    ) -> impl Future<Output = Result<(), Failure>> + Send;
}

/// Runs `workload` under `load`; the report is named `workload_id` / `name`. Every session is
/// opened first (an SDK connection's setup is not part of the measured time); the clock, and
/// the servers' CPU time, start when all have been opened or have failed to.
pub async fn run_load<W: Workload>(
    workload: Arc<W>,
    load: &Load,
    workload_id: &str,
    name: &str,
) -> Result<Report, String> {
    let budget = Arc::new(AtomicU64::new(0));
    let opened = Arc::new(Barrier::new(load.connections + 1));
    let (max_requests, duration) = (load.max_requests, load.duration);
    let mut tasks = Vec::new();
    for conn in 0..load.connections {
        let workload = workload.clone();
        let budget = budget.clone();
        let opened = opened.clone();
        tasks.push(tokio::spawn(async move {
            let mut tally = Tally::default();
            let mut session = open(&*workload, conn, &mut tally).await;
            opened.wait().await;
            let deadline = now() + duration;
            while now() < deadline {
                let s = match session.as_mut() {
                    Some(s) => s,
                    None => match open(&*workload, conn, &mut tally).await {
                        Some(s) => session.insert(s),
                        None => {
                            tokio::time::sleep(REOPEN_PAUSE).await;
                            continue;
                        }
                    },
                };
                let n = budget.fetch_add(1, Ordering::Relaxed);
                if n >= max_requests {
                    break;
                }
                let t = now();
                match tokio::time::timeout(REQUEST_TIMEOUT, workload.send(s, n)).await {
                    Ok(Ok(())) => tally.ok(t.elapsed()),
                    Ok(Err(f)) => {
                        tally.error(f.kind);
                        if f.reopen {
                            session = None;
                        }
                    }
                    Err(_) => {
                        tally.error("request timed out");
                        session = None;
                    }
                }
            }
            tally
        }));
    }
    opened.wait().await;
    let before: Vec<_> = load.server_pids.iter().map(|p| sample(*p)).collect();
    let started = now();
    let mut all = Tally::default();
    for t in tasks {
        all.merge(t.await.map_err(|e| e.to_string())?);
    }
    Ok(Report::new(
        workload_id,
        name,
        workload.target(),
        load.connections,
        started.elapsed(),
        all,
    )
    .with_servers(&load.server_pids, &before))
}

/// Opens session `conn` within `REQUEST_TIMEOUT`; a failure is counted in `tally`.
async fn open<W: Workload>(workload: &W, conn: usize, tally: &mut Tally) -> Option<W::Session> {
    match tokio::time::timeout(REQUEST_TIMEOUT, workload.open(conn)).await {
        Ok(Ok(s)) => Some(s),
        Ok(Err(e)) => {
            tally.error(format!("open: {e}"));
            None
        }
        Err(_) => {
            tally.error("open: timed out");
            None
        }
    }
}
