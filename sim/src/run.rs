//! One simulated run: build the cluster, run the workload under the fault plan (safety phase),
//! heal everything and wait for the cluster to converge (liveness phase), then check.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use nacre_engine::config::md5_hex;
use nacre_engine::raft::command::Op;

use crate::check::durability::{self, AckedWrite};
use crate::check::monotonic_reads::{self, LocalRead};
use std::collections::{BTreeMap, BTreeSet};

use nacre_engine::naming::runner::DistroRunner;

use crate::check::naming::{self as check_naming, Windows};
use crate::check::Violation;
use crate::naming::{spawn_naming_clients, view_of, SharedLog, View};
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

    let naming_log: SharedLog = Arc::default();
    let naming_violations: Arc<Mutex<Vec<Violation>>> = Arc::default();
    let windows = fault_windows(&plan, &scenario);
    let run_end = duration + Duration::from_secs(scenario.liveness_bound_s);
    {
        let w = world.lock().expect("world lock");
        spawn_clients(&w, &scenario.workload, seed, duration, history.clone());
        if let Some(n) = &scenario.naming {
            spawn_naming_clients(&w, n, seed, run_end, naming_log.clone());
        }
    }
    let converged: Arc<Mutex<Vec<u64>>> = Arc::default();
    let sampler = scenario.naming.as_ref().map(|_| {
        madsim::task::spawn(sample_naming(
            world.clone(),
            naming_log.clone(),
            windows.clone(),
            heal_times(&plan, &scenario),
            converged.clone(),
            naming_violations.clone(),
        ))
    });
    for p in plan.clone() {
        let (world, losses, t) = (world.clone(), losses.clone(), trace.clone());
        madsim::task::spawn(async move {
            madsim::time::sleep(Duration::from_millis(p.at_ms)).await;
            t.event(format!("fault {:?}", p.fault));
            nemesis::apply(world, p, losses, move || t.now_ms()).await;
        });
    }
    madsim::time::sleep(duration).await;
    let heal_ms = trace.now_ms();
    let mut liveness = liveness_phase(&world, &scenario, &trace).await;
    if liveness.is_none() && scenario.naming.is_some() {
        if let Err(e) = naming_liveness(&world, &scenario, &trace, &naming_log, heal_ms).await {
            liveness = Some(e);
        }
    }
    if let Some(s) = sampler {
        s.abort();
    }
    let naming_converge_ms = converged.lock().expect("converged lock").clone();
    // Let in-flight client operations finish (they are bounded by the client deadline).
    madsim::time::sleep(Duration::from_millis(crate::workload::CLIENT_TIMEOUT_MS)).await;
    monitor.abort();

    let w = world.lock().expect("world lock");
    let ops = history.lock().expect("history lock").clone();
    let mut violations = check_all(&w, &ops);
    if scenario.naming.is_some() {
        let log = naming_log.lock().expect("naming log");
        violations.extend(log.violations.iter().cloned());
        violations.extend(
            naming_violations
                .lock()
                .expect("naming violations")
                .iter()
                .cloned(),
        );
        let crashes = w.crashes.lock().expect("crashes lock").clone();
        check_naming::check_pushes(
            &w.pushes.lock().expect("push lock"),
            &log,
            &crashes,
            &windows,
            &mut violations,
        );
    }
    violations.sort();
    violations.dedup();
    let failovers = measure_failover(
        &losses.lock().expect("loss lock"),
        &leaders.lock().expect("leaders lock"),
        &ops,
    );
    let mut summary = Summary::build(
        &scenario,
        seed,
        &w,
        &ops,
        &plan,
        leaders.lock().expect("leaders lock").len(),
    );
    if scenario.naming.is_some() {
        let log = naming_log.lock().expect("naming log");
        summary.0.push_str(&format!(
            "naming: registrations {}, reconnects {}, beats not found {}, pushes {}\n",
            log.registrations,
            log.reconnects,
            log.beats_not_found,
            w.pushes.lock().expect("push lock").len()
        ));
        for id in w.running() {
            if let Some(d) = w.distro(id) {
                let view = view_of(&d);
                summary.0.push_str(&format!(
                    "n{id}: naming instances {} owned clients {}\n",
                    view.len(),
                    d.read(|d| d.owned_count())
                ));
            }
        }
    }
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
        naming_converge_ms,
    }
}

/// When faults that split or stop members end (the heals convergence is measured from): each
/// partition, isolation, crash or flapping period, cut at the final heal of the fault phase.
fn heal_times(plan: &[crate::nemesis::Planned], scenario: &Scenario) -> Vec<u64> {
    use crate::scenario::Fault;
    let end = scenario.duration_s * 1000;
    let mut v: Vec<u64> = plan
        .iter()
        .filter(|p| {
            matches!(
                p.fault,
                Fault::Partition { .. }
                    | Fault::IsolateLeader { .. }
                    | Fault::OneWay { .. }
                    | Fault::Crash { .. }
                    | Fault::CrashAll { .. }
                    | Fault::FlappingLinks { .. }
            )
        })
        .map(|p| p.at_ms + p.dur_ms)
        .collect();
    // A fault still running at the end is healed by the liveness phase.
    for t in v.iter_mut() {
        *t = (*t).min(end);
    }
    v.sort();
    v.dedup();
    v
}

/// Fault intervals plus a grace period, and the heal at the end of the fault phase.
fn fault_windows(plan: &[crate::nemesis::Planned], scenario: &Scenario) -> Windows {
    let end = scenario.duration_s * 1000;
    let grace = check_naming::CRASH_GRACE_MS;
    let mut w: Vec<(u64, u64)> = plan
        .iter()
        .map(|p| {
            let dur = match p.fault {
                crate::scenario::Fault::RollingRestart { gap_s, .. } => {
                    gap_s * 1000 * (scenario.nodes + 1)
                }
                crate::scenario::Fault::Join { .. } => 30_000,
                _ => p.dur_ms,
            };
            (p.at_ms, (p.at_ms + dur).min(end) + grace)
        })
        .collect();
    w.push((end, end + grace));
    Windows(w)
}

fn naming_views(world: &Arc<Mutex<World>>) -> NamingState {
    let runners: Vec<(u64, Arc<DistroRunner>)> = {
        let w = world.lock().expect("world lock");
        w.running()
            .into_iter()
            .filter_map(|id| w.distro(id).map(|d| (id, d)))
            .collect()
    };
    let mut st = NamingState::default();
    for (id, d) in runners {
        st.views.insert(id, view_of(&d));
        st.healthy.insert(id, d.read(|d| d.healthy_members()));
        st.loaded.insert(id, d.read(|d| d.loaded()));
    }
    st
}

#[derive(Default)]
struct NamingState {
    views: BTreeMap<u64, View>,
    healthy: BTreeMap<u64, Vec<String>>,
    loaded: BTreeMap<u64, bool>,
}

const NAMING_SAMPLE_MS: u64 = 250;

/// Samples every member's naming view: checks the sampled properties, and measures, for each
/// heal, the time until the views converge.
async fn sample_naming(
    world: Arc<Mutex<World>>,
    log: SharedLog,
    windows: Windows,
    heals: Vec<u64>,
    converged: Arc<Mutex<Vec<u64>>>,
    out: Arc<Mutex<Vec<Violation>>>,
) {
    let mut seen: BTreeSet<(String, u64)> = BTreeSet::new();
    let watch = std::env::var("NACRE_SIM_WATCH").ok();
    let mut next_heal = 0;
    let mut pending: Option<u64> = None;
    loop {
        madsim::time::sleep(Duration::from_millis(NAMING_SAMPLE_MS)).await;
        let st = naming_views(&world);
        let (now, crashes, running) = {
            let w = world.lock().expect("world lock");
            let c = w.crashes.lock().expect("crashes lock").clone();
            let running: Vec<String> = w
                .running()
                .into_iter()
                .map(crate::world::member_addr)
                .collect();
            (w.trace.now_ms(), c, running)
        };
        while next_heal < heals.len() && heals[next_heal] <= now {
            pending = Some(heals[next_heal]);
            next_heal += 1;
        }
        if let Some(heal) = pending {
            let done = check_naming::not_converged(
                now,
                &st.views,
                &st.healthy,
                &st.loaded,
                &running,
                &log.lock().expect("naming log"),
            );
            if watch.is_some() {
                eprintln!("converge {now} {:?}", done);
            }
            let done = done.is_none();
            if done {
                converged.lock().expect("converged lock").push(now - heal);
                pending = None;
            }
        }
        if let Some(tag) = &watch {
            // Debugging aid: NACRE_SIM_WATCH=ip:port prints that HTTP client's copies.
            let w = world.lock().expect("world lock");
            for id in w.running() {
                if let Some(d) = w.distro(id) {
                    let line = d.read(|d| {
                        format!(
                            "watch {now} n{id} healthy={} owner={} copy={:?}",
                            d.healthy_members().len(),
                            d.responsible_for(tag),
                            d.client(&format!("{tag}#true"))
                                .map(|c| (c.revision, c.services().count()))
                        )
                    });
                    eprintln!("{line}");
                }
            }
        }
        let mut found = Vec::new();
        check_naming::check_sample(
            now,
            &st.views,
            &log.lock().expect("naming log"),
            &crashes,
            &windows,
            &mut found,
        );
        // One violation per property and client is enough evidence.
        for v in found {
            let key = match &v {
                Violation::LiveInstanceDeleted { client, .. } => ("deleted".into(), *client),
                Violation::LingeringInstance { client, .. } => ("lingering".into(), *client),
                other => (other.property().to_string(), 0),
            };
            if seen.insert(key) {
                out.lock().expect("naming violations").push(v);
            }
        }
    }
}

/// Waits (bounded) until the naming views converge; returns ms since the heal.
async fn naming_liveness(
    world: &Arc<Mutex<World>>,
    scenario: &Scenario,
    trace: &Trace,
    log: &SharedLog,
    heal_ms: u64,
) -> Result<u64, String> {
    let bound_ms = scenario.liveness_bound_s * 1000;
    let mut why = String::new();
    while trace.now_ms() - heal_ms < bound_ms {
        let st = naming_views(world);
        let running: Vec<String> = {
            let w = world.lock().expect("world lock");
            w.running()
                .into_iter()
                .map(crate::world::member_addr)
                .collect()
        };
        match check_naming::not_converged(
            trace.now_ms(),
            &st.views,
            &st.healthy,
            &st.loaded,
            &running,
            &log.lock().expect("naming log"),
        ) {
            None => {
                let ms = trace.now_ms() - heal_ms;
                trace.event(format!("naming converged {ms} ms after heal"));
                return Ok(ms);
            }
            Some(w) => why = w,
        }
        madsim::time::sleep(Duration::from_millis(100)).await;
    }
    Err(format!(
        "naming views did not converge within {} s after heal: {why}",
        scenario.liveness_bound_s
    ))
}

/// Heals all faults, restarts crashed members, and waits (bounded) until a leader exists, a
/// write through every running member succeeds and all members converge. Returns the failure,
/// or `None` with the convergence time recorded in the trace.
/// How long the liveness phase waits for one probe write (a write's own deadline is
/// `WRITE_LEADER_WAIT_MS` to find a leader plus `WRITE_TIMEOUT_MS` to commit).
const PROBE_TIMEOUT: Duration = Duration::from_millis(
    nacre_engine::constants::WRITE_LEADER_WAIT_MS + nacre_engine::constants::WRITE_TIMEOUT_MS,
);

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
                // Bounded, so a member that never answers fails the liveness bound instead of
                // holding the run forever.
                let probe = h.spawn(async move { node.write(op).await });
                let r = match madsim::time::timeout(PROBE_TIMEOUT, probe).await {
                    Ok(Ok(r)) => r,
                    Ok(Err(_)) => continue,
                    Err(_) => {
                        trace.event(format!("probe write via n{}: no answer", n.id()));
                        ok = false;
                        continue;
                    }
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
    let batches = observed.batches.clone();
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
    durability::check(&acked, &committed, &batches, converged, &mut out);
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
