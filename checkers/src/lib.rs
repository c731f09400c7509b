//! Linearizability of per-key register histories (Wing & Gong's search with Lowe's
//! memoization, as in Porcupine), pure and deterministic.
//!
//! The model is a config key: a register whose value is absent or a content string. A write
//! publishes (`Some`) or removes (`None`); a CAS publishes only if the current content's md5
//! equals the expected one, or if the key is absent (Nacos inserts on CAS of an absent config);
//! a read returns the value. Operations whose outcome is unknown (timed out) may take effect at
//! any point after their call, or never. Keys are independent registers, checked one by one.

use std::collections::{BTreeMap, BTreeSet};

/// Simulated time, nanoseconds.
pub type Time = u64;

/// What an operation asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    Write(Option<String>),
    Cas { expected_md5: String, new: String },
    Read,
}

/// How it ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    WriteOk,
    CasOk,
    CasFailed,
    ReadValue(Option<String>),
    /// Timed out or lost: may or may not have taken effect.
    Unknown,
}

/// One operation of a history.
#[derive(Debug, Clone)]
pub struct Operation {
    pub id: u64,
    pub client: u64,
    pub key: String,
    pub call: Time,
    /// `Time::MAX` for unknown outcomes.
    pub ret: Time,
    pub input: Input,
    pub output: Output,
}

/// The verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinearizabilityReport {
    Ok {
        keys: usize,
        ops: usize,
    },
    /// The ids of the operations that could not be placed after the longest linearizable prefix.
    Violation {
        key: String,
        op_ids: Vec<u64>,
    },
    Inconclusive {
        key: String,
        steps: u64,
    },
}

/// Checks every key's history. `md5` computes Nacos's md5 of a content; `budget` bounds the
/// search steps per key.
pub fn check_linearizable(
    ops: &[Operation],
    md5: fn(&str) -> String,
    budget: u64,
) -> LinearizabilityReport {
    let mut by_key: BTreeMap<&str, Vec<&Operation>> = BTreeMap::new();
    for op in ops {
        // A read with an unknown outcome constrains nothing.
        if op.input == Input::Read && op.output == Output::Unknown {
            continue;
        }
        by_key.entry(op.key.as_str()).or_default().push(op);
    }
    let total = by_key.values().map(Vec::len).sum();
    for (key, key_ops) in &by_key {
        match check_key(key_ops, md5, budget) {
            KeyVerdict::Ok => {}
            KeyVerdict::Violation(ids) => {
                return LinearizabilityReport::Violation {
                    key: key.to_string(),
                    op_ids: ids,
                }
            }
            KeyVerdict::Budget(steps) => {
                return LinearizabilityReport::Inconclusive {
                    key: key.to_string(),
                    steps,
                }
            }
        }
    }
    LinearizabilityReport::Ok {
        keys: by_key.len(),
        ops: total,
    }
}

enum KeyVerdict {
    Ok,
    Violation(Vec<u64>),
    Budget(u64),
}

/// Applies `op` to `state`; `None` if its recorded output is impossible there.
fn step(state: &Option<String>, op: &Operation, md5: fn(&str) -> String) -> Option<Option<String>> {
    let cas_applies = |expected: &str| match state {
        None => true,
        Some(cur) => md5(cur) == expected,
    };
    match (&op.input, &op.output) {
        (Input::Write(v), Output::WriteOk | Output::Unknown) => Some(v.clone()),
        (Input::Cas { expected_md5, new }, Output::CasOk) => {
            cas_applies(expected_md5).then(|| Some(new.clone()))
        }
        (Input::Cas { expected_md5, new }, Output::Unknown) => Some(if cas_applies(expected_md5) {
            Some(new.clone())
        } else {
            state.clone()
        }),
        (Input::Cas { expected_md5, .. }, Output::CasFailed) => {
            (!cas_applies(expected_md5)).then(|| state.clone())
        }
        (Input::Read, Output::ReadValue(v)) => (v == state).then(|| state.clone()),
        _ => None,
    }
}

/// A bitset of linearized operations.
type Done = Vec<u64>;

fn set(done: &mut Done, i: usize) {
    done[i / 64] |= 1 << (i % 64);
}
fn is_set(done: &Done, i: usize) -> bool {
    done[i / 64] & (1 << (i % 64)) != 0
}

/// Depth-first search over linearization orders with memoization of (done set, state).
fn check_key(ops: &[&Operation], md5: fn(&str) -> String, budget: u64) -> KeyVerdict {
    let mut ops: Vec<&Operation> = ops.to_vec();
    ops.sort_by_key(|o| (o.call, o.id));
    let n = ops.len();
    let required: usize = ops.iter().filter(|o| o.output != Output::Unknown).count();
    let words = n.div_ceil(64).max(1);
    let mut seen: BTreeSet<(Done, Option<String>)> = BTreeSet::new();
    // Stack of (done set, state, number of required ops done).
    let mut stack: Vec<(Done, Option<String>, usize)> = vec![(vec![0; words], None, 0)];
    let mut steps = 0u64;
    let mut best: (usize, Done) = (0, vec![0; words]);
    while let Some((done, state, count)) = stack.pop() {
        if count == required {
            return KeyVerdict::Ok;
        }
        steps += 1;
        if steps > budget {
            return KeyVerdict::Budget(steps);
        }
        if count > best.0 {
            best = (count, done.clone());
        }
        // The earliest return among pending required ops bounds which ops may go next.
        let horizon = (0..n)
            .filter(|i| !is_set(&done, *i) && ops[*i].output != Output::Unknown)
            .map(|i| ops[i].ret)
            .min()
            .unwrap_or(Time::MAX);
        for i in (0..n).rev() {
            if is_set(&done, i) || ops[i].call > horizon {
                continue;
            }
            let Some(next) = step(&state, ops[i], md5) else {
                continue;
            };
            let mut d = done.clone();
            set(&mut d, i);
            if seen.insert((d.clone(), next.clone())) {
                let c = count + usize::from(ops[i].output != Output::Unknown);
                stack.push((d, next, c));
            }
        }
    }
    let pending: Vec<u64> = (0..n)
        .filter(|i| !is_set(&best.1, *i) && ops[*i].output != Output::Unknown)
        .map(|i| ops[i].id)
        .collect();
    KeyVerdict::Violation(pending)
}

#[cfg(test)]
mod tests;
