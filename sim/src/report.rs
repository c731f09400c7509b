//! What a run reports: the seed-derived parameters, the golden summary, violations, the
//! failover measurements and the exit code (STYLE 11).

use std::fmt::Write as _;

use crate::check::Violation;
use crate::nemesis::Planned;
use crate::scenario::Scenario;
use crate::workload::{OpKind, OpRecord, Outcome};
use crate::world::World;

/// Exit code: the run passed.
pub const EXIT_OK: i32 = 0;
/// Exit code: the run crashed (panic, harness error).
pub const EXIT_CRASH: i32 = 1;
/// Exit code: a safety property was violated.
pub const EXIT_SAFETY: i32 = 2;
/// Exit code: the cluster did not recover within the liveness bound.
pub const EXIT_LIVENESS: i32 = 3;

/// Time from losing a leader to a new leader and to the first acknowledged write invoked after
/// the loss, simulated milliseconds.
#[derive(Debug, Clone, Copy)]
pub struct Failover {
    pub at_ms: u64,
    pub new_leader_ms: Option<u64>,
    pub first_write_ms: Option<u64>,
}

/// The deterministic summary that scenario goldens pin.
#[derive(Debug, Clone)]
pub struct Summary(pub String);

impl Summary {
    /// Builds the summary text.
    pub fn build(
        scenario: &Scenario,
        seed: u64,
        w: &World,
        ops: &[OpRecord],
        plan: &[Planned],
        leader_changes: usize,
    ) -> Summary {
        let mut s = String::new();
        let count = |f: &dyn Fn(&OpRecord) -> bool| ops.iter().filter(|o| f(o)).count();
        let _ = writeln!(s, "scenario: {} (tier {})", scenario.name, scenario.tier);
        let _ = writeln!(s, "seed: {seed}");
        let _ = writeln!(s, "members: {}", w.members.len());
        for p in plan {
            let _ = writeln!(
                s,
                "fault at {} ms for {} ms: {:?}",
                p.at_ms, p.dur_ms, p.fault
            );
        }
        let _ = writeln!(s, "leader changes observed: {leader_changes}");
        let _ = writeln!(s, "operations: {}", ops.len());
        let _ = writeln!(
            s,
            "  writes acknowledged: {}",
            count(&|o| matches!(o.outcome, Outcome::Written { .. }))
        );
        let _ = writeln!(
            s,
            "  cas rejected: {}",
            count(&|o| o.outcome == Outcome::CasFailed)
        );
        let _ = writeln!(
            s,
            "  local reads: {}",
            count(&|o| o.kind == OpKind::GetLocal && matches!(o.outcome, Outcome::Read(_)))
        );
        let _ = writeln!(
            s,
            "  linearizable reads: {}",
            count(&|o| o.kind == OpKind::GetLinearizable && matches!(o.outcome, Outcome::Read(_)))
        );
        let _ = writeln!(
            s,
            "  failed (not executed): {}",
            count(&|o| o.outcome == Outcome::Failed)
        );
        let _ = writeln!(
            s,
            "  indeterminate: {}",
            count(&|o| o.outcome == Outcome::Unknown)
        );
        for (id, e) in w.fatal_members() {
            let _ = writeln!(s, "member n{id} stopped: {e}");
        }
        let marks: Vec<String> = nacre_engine::coverage::ALL
            .iter()
            .filter(|m| nacre_engine::coverage::count(**m) > 0)
            .map(|m| format!("{}={}", m.name(), nacre_engine::coverage::count(*m)))
            .collect();
        let _ = writeln!(s, "coverage marks: {}", marks.join(" "));
        let obs = w.observer.lock();
        let _ = writeln!(
            s,
            "snapshot installs: {}, truncations: {}",
            obs.snapshot_installs, obs.truncations
        );
        drop(obs);
        for id in w.running() {
            if let Some(n) = w.node(id) {
                let st = n.state();
                let st = st.read().expect("state lock");
                let _ = writeln!(
                    s,
                    "n{id}: applied {} configs {} digest {:016x}",
                    st.last_applied.map(|l| l.index).unwrap_or(0),
                    st.configs.len(),
                    st.digest()
                );
            }
        }
        Summary(s)
    }
}

/// Everything one run produced.
#[derive(Debug)]
pub struct RunReport {
    pub seed: u64,
    pub scenario: String,
    pub violations: Vec<Violation>,
    pub liveness: Option<String>,
    pub summary: Summary,
    pub trace_hash: u64,
    pub events: u64,
    pub failovers: Vec<Failover>,
    pub sim_ms: u64,
    /// Simulated ms from each heal until every member's naming view converged.
    pub naming_converge_ms: Vec<u64>,
}

impl RunReport {
    /// The process exit code.
    pub fn exit_code(&self) -> i32 {
        if !self.violations.is_empty() {
            EXIT_SAFETY
        } else if self.liveness.is_some() {
            EXIT_LIVENESS
        } else {
            EXIT_OK
        }
    }

    /// The machine-readable last line a sweep parses.
    pub fn result_line(&self) -> String {
        let fo: Vec<String> = self
            .failovers
            .iter()
            .map(|f| format!("{}/{}", opt(f.new_leader_ms), opt(f.first_write_ms)))
            .collect();
        format!(
            "RESULT seed={} code={} trace={:016x} events={} sim_ms={} failover={} distro={}",
            self.seed,
            self.exit_code(),
            self.trace_hash,
            self.events,
            self.sim_ms,
            if fo.is_empty() {
                "-".to_string()
            } else {
                fo.join(",")
            },
            if self.naming_converge_ms.is_empty() {
                "-".to_string()
            } else {
                self.naming_converge_ms
                    .iter()
                    .map(|m| m.to_string())
                    .collect::<Vec<_>>()
                    .join(",")
            }
        )
    }
}

fn opt(v: Option<u64>) -> String {
    v.map(|x| x.to_string()).unwrap_or_else(|| "none".into())
}
