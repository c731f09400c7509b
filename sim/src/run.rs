//! One simulated run: build the cluster, run the workload under the fault plan (safety phase),
//! heal everything and wait for the cluster to converge (liveness phase), then check.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use nacre_engine::config::md5_hex;
use nacre_engine::raft::command::Op;

use crate::check::durability::{self, AckedWrite};
use crate::check::monotonic_reads::{self, LocalRead};
use crate::check::Violation;
use crate::nemesis::{self, LeaderLoss};
use crate::report::{Failover, RunReport, Summary};
use crate::scenario::Scenario;
use crate::trace::Trace;
use crate::workload::{spawn_clients, History, OpKind, Outcome};
use crate::world::World;

/// Leader changes seen by the monitor: (simulated ms, leader).
type Leaders = Arc<Mutex<Vec<(u64, Option<u64>)>>>;

/// Steps of the linearizability search per key before it gives up (inconclusive).
const LINEARIZABILITY_BUDGET: u64 = 2_000_000;

/// Runs one seed of one scenario inside the madsim runtime.
pub async fn run(seed: u64, scenario: Scenario, print_trace: bool) -> RunReport {
    let trace = Trace::new(print_trace);
    trace.start_clock();
    let plan = nemesis::plan(&scenario, seed);
    let world = Arc::new(Mutex::new(World::new(seed, &scenario, trace.clone())));
    let history: History = Arc::default();
    let losses: Arc<Mutex<Vec<LeaderLoss>>> = Arc::default();
    let leaders: Leaders = Arc::default();
    let duration = Duration::from_secs(scenario.duration_s);
    let monitor = madsim::task::spawn(monitor_leader(
        world.clone(),
        trace.clone(),
        leaders.clone(),
    ));

    {
        let w = world.lock().expect("world lock");
        spawn_clients(&w, &scenario.workload, seed, duration, history.clone());
    }
    for p in plan.clone() {
        let (world, losses, t) = (world.clone(), losses.clone(), trace.clone());
        madsim::task::spawn(async move {
            madsim::time::sleep(Duration::from_millis(p.at_ms)).await;
            t.event(format!("fault {:?}", p.fault));
            nemesis::apply(world, p, losses, move || t.now_ms()).await;
        });
    }
    madsim::time::sleep(duration).await;
    let liveness = liveness_phase(&world, &scenario, &trace).await;
    // Let in-flight client operations finish (they are bounded by the client deadline).
    madsim::time::sleep(Duration::from_millis(crate::workload::CLIENT_TIMEOUT_MS)).await;
    monitor.abort();

    let w = world.lock().expect("world lock");
    let ops = history.lock().expect("history lock").clone();
    let mut violations = check_all(&w, &ops);
    violations.sort();
    violations.dedup();
    let failovers = measure_failover(
        &losses.lock().expect("loss lock"),
        &leaders.lock().expect("leaders lock"),
        &ops,
    );
    let summary = Summary::build(
        &scenario,
        seed,
        &w,
        &ops,
        &plan,
        leaders.lock().expect("leaders lock").len(),
    );
    let (hash, events) = trace.hash();
    RunReport {
        seed,
        scenario: scenario.name.clone(),
        violations,
        liveness,
        summary,
        trace_hash: hash,
        events,
        failovers,
        sim_ms: trace.now_ms(),
    }
}

/// Heals all faults, restarts crashed members, and waits (bounded) until a leader exists, a
/// write through every running member succeeds and all members converge. Returns the failure,
/// or `None` with the convergence time recorded in the trace.
async fn liveness_phase(
    world: &Arc<Mutex<World>>,
    scenario: &Scenario,
    trace: &Trace,
) -> Option<String> {
    {
        let mut w = world.lock().expect("world lock");
        w.heal_network();
        let down: Vec<u64> = w.members.values().filter(|m| !m.up).map(|m| m.id).collect();
        for id in down {
            w.restart(id);
        }
        trace.event("liveness phase: all faults healed".into());
    }
    let start = trace.now_ms();
    let bound_ms = scenario.liveness_bound_s * 1000;
    let mut probes_done = false;
    while trace.now_ms() - start < bound_ms {
        madsim::time::sleep(Duration::from_millis(100)).await;
        let (running, nodes, handles) = {
            let w = world.lock().expect("world lock");
            let running = w.running();
            let nodes: Vec<_> = running.iter().filter_map(|id| w.node(*id)).collect();
            let handles: Vec<_> = running
                .iter()
                .map(|id| w.members[id].handle.clone())
                .collect();
            (running, nodes, handles)
        };
        if nodes.len() != running.len() || world.lock().expect("world lock").leader().is_none() {
            continue;
        }
        if !probes_done {
            let mut ok = true;
            for (n, h) in nodes.iter().zip(&handles) {
                // The probe runs on the member's own simulated host, like a local client.
                let node = n.clone();
                let op = Op::PurgeHistory {
                    retention_ms: u64::MAX,
                };
                let r = match h.spawn(async move { node.write(op).await }).await {
                    Ok(r) => r,
                    Err(_) => continue,
                };
                trace.event(format!(
                    "probe write via n{}: {:?}",
                    n.id(),
                    r.as_ref().map(|w| w.index)
                ));
                ok &= r.is_ok();
            }
            probes_done = ok;
            continue;
        }
        let states: Vec<(Option<u64>, u64)> = nodes
            .iter()
            .map(|n| {
                let s = n.state();
                let s = s.read().expect("state lock");
                (s.last_applied.map(|l| l.index), s.digest())
            })
            .collect();
        if states.windows(2).all(|w| w[0] == w[1]) {
            trace.event(format!(
                "converged after {} ms at {:?}",
                trace.now_ms() - start,
                states[0]
            ));
            return None;
        }
    }
    let statuses: Vec<String> = world
        .lock()
        .expect("world lock")
        .statuses()
        .values()
        .map(|s| {
            format!(
                "n{} leader={:?} term={} log={:?} applied={:?} voters={:?}",
                s.id, s.leader, s.term, s.last_log_index, s.last_applied, s.voters
            )
        })
        .collect();
    Some(format!(
        "no convergence within {} s after heal (probes done: {probes_done}); {}",
        scenario.liveness_bound_s,
        statuses.join("; ")
    ))
}

async fn monitor_leader(world: Arc<Mutex<World>>, trace: Trace, leaders: Leaders) {
    let mut last = None;
    loop {
        madsim::time::sleep(Duration::from_millis(10)).await;
        let leader = world.lock().expect("world lock").leader();
        if leader != last && leader.is_some() {
            trace.event(format!("leader n{}", leader.unwrap_or(0)));
            leaders
                .lock()
                .expect("leaders lock")
                .push((trace.now_ms(), leader));
        }
        last = leader;
    }
}

fn check_all(w: &World, ops: &[crate::workload::OpRecord]) -> Vec<Violation> {
    w.observer.check_log_matching();
    let observed = w.observer.lock();
    let mut out = observed.violations.clone();
    let committed = observed.sm.committed();
    drop(observed);
    let converged = w
        .running()
        .iter()
        .filter_map(|id| w.node(*id))
        .map(|n| {
            n.state()
                .read()
                .expect("state lock")
                .last_applied
                .map(|l| l.index)
                .unwrap_or(0)
        })
        .min()
        .unwrap_or(0);
    let acked: Vec<AckedWrite> = ops
        .iter()
        .filter_map(|o| match (&o.outcome, o.payload) {
            (Outcome::Written { index }, Some(p)) => Some(AckedWrite {
                op: o.id,
                index: *index,
                payload: p,
            }),
            _ => None,
        })
        .collect();
    durability::check(&acked, &committed, converged, &mut out);
    let reads: Vec<LocalRead> = ops
        .iter()
        .filter(|o| o.kind == OpKind::GetLocal)
        .filter_map(|o| match (&o.outcome, o.incarnation) {
            (Outcome::Read(v), Some(inc)) => Some(LocalRead {
                op: o.id,
                client: o.client,
                node: o.node,
                incarnation: inc,
                key: o.key.clone(),
                revision: v.as_ref().map(|(_, r)| *r),
            }),
            _ => None,
        })
        .collect();
    monotonic_reads::check(&reads, &mut out);
    out.extend(crate::history::check_histories(
        ops,
        LINEARIZABILITY_BUDGET,
        md5_hex,
    ));
    out
}

fn measure_failover(
    losses: &[LeaderLoss],
    leaders: &[(u64, Option<u64>)],
    ops: &[crate::workload::OpRecord],
) -> Vec<Failover> {
    losses
        .iter()
        .map(|l| {
            let new_leader_ms = leaders
                .iter()
                .find(|(t, _)| *t > l.at_ms)
                .map(|(t, _)| t - l.at_ms);
            let at_ns = l.at_ms * 1_000_000;
            let first_write_ms = ops
                .iter()
                .filter(|o| o.call_ns >= at_ns && matches!(o.outcome, Outcome::Written { .. }))
                .map(|o| (o.ret_ns - at_ns) / 1_000_000)
                .min();
            Failover {
                at_ms: l.at_ms,
                new_leader_ms,
                first_write_ms,
            }
        })
        .collect()
}
