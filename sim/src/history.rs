//! From recorded client operations to the checkers' histories: linearizability of the CP
//! history per key (writes plus linearizable reads), and no phantom values in local reads.

use std::collections::{BTreeMap, BTreeSet};

use nacre_checkers::{check_linearizable, Input, LinearizabilityReport, Operation, Output};

use crate::check::Violation;
use crate::workload::{OpKind, OpRecord, Outcome};

/// The CP operations of a history in the checker's form: writes (acknowledged, CAS-failed or
/// indeterminate) and linearizable reads. Definite failures and local reads are left out.
pub fn to_checker_ops(ops: &[OpRecord]) -> Vec<Operation> {
    ops.iter()
        .filter_map(|o| {
            let input = match &o.kind {
                OpKind::Publish(c) => Input::Write(Some(c.clone())),
                OpKind::Remove => Input::Write(None),
                OpKind::Cas { expected_md5, new } => Input::Cas {
                    expected_md5: expected_md5.clone(),
                    new: new.clone(),
                },
                OpKind::GetLinearizable => Input::Read,
                OpKind::GetLocal => return None,
            };
            let output = match (&o.outcome, &o.kind) {
                (Outcome::Failed, _) => return None,
                (Outcome::Unknown, _) => Output::Unknown,
                (Outcome::CasFailed, _) => Output::CasFailed,
                (Outcome::Written { .. }, OpKind::Cas { .. }) => Output::CasOk,
                (Outcome::Written { .. }, _) => Output::WriteOk,
                (Outcome::Read(v), _) => Output::ReadValue(v.as_ref().map(|(c, _)| c.clone())),
            };
            let ret = if output == Output::Unknown {
                u64::MAX
            } else {
                o.ret_ns
            };
            Some(Operation {
                id: o.id,
                client: o.client,
                key: o.key.clone(),
                call: o.call_ns,
                ret,
                input,
                output,
            })
        })
        .collect()
}

/// Runs the history checkers.
pub fn check_histories(ops: &[OpRecord], budget: u64, md5: fn(&str) -> String) -> Vec<Violation> {
    let mut out = Vec::new();
    match check_linearizable(&to_checker_ops(ops), md5, budget) {
        LinearizabilityReport::Ok { .. } => {}
        LinearizabilityReport::Violation { key, op_ids } => {
            out.push(Violation::Linearizability { key, ops: op_ids })
        }
        LinearizabilityReport::Inconclusive { key, .. } => {
            out.push(Violation::LinearizabilityInconclusive { key })
        }
    }
    check_phantoms(ops, &mut out);
    out
}

/// No phantom values: every value a local read returns was written (published or CAS'd) by
/// some operation on that key invoked before the read returned.
fn check_phantoms(ops: &[OpRecord], out: &mut Vec<Violation>) {
    let mut written: BTreeMap<(&str, &str), u64> = BTreeMap::new();
    for o in ops {
        if let OpKind::Publish(c) | OpKind::Cas { new: c, .. } = &o.kind {
            let e = written
                .entry((o.key.as_str(), c.as_str()))
                .or_insert(o.call_ns);
            *e = (*e).min(o.call_ns);
        }
    }
    let mut seen = BTreeSet::new();
    for o in ops.iter().filter(|o| o.kind == OpKind::GetLocal) {
        if let Outcome::Read(Some((content, _))) = &o.outcome {
            let ok = written
                .get(&(o.key.as_str(), content.as_str()))
                .is_some_and(|call| *call <= o.ret_ns);
            if !ok && seen.insert(o.id) {
                out.push(Violation::PhantomRead { op: o.id });
            }
        }
    }
}
