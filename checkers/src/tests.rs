//! Checker tests: hand-built histories and randomized ones with a known linearization.

use super::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn md5(s: &str) -> String {
    // A stand-in digest for tests: any injective function of the content works.
    format!("md5({s})")
}

fn op(id: u64, call: Time, ret: Time, input: Input, output: Output) -> Operation {
    Operation {
        id,
        client: id,
        key: "k".into(),
        call,
        ret,
        input,
        output,
    }
}

fn w(v: &str) -> Input {
    Input::Write(Some(v.into()))
}
fn read(v: Option<&str>) -> Output {
    Output::ReadValue(v.map(Into::into))
}

fn verdict(ops: &[Operation]) -> LinearizabilityReport {
    check_linearizable(ops, md5, 1_000_000)
}

#[test]
fn sequential_history_is_linearizable() {
    let h = [
        op(1, 0, 1, w("a"), Output::WriteOk),
        op(2, 2, 3, Input::Read, read(Some("a"))),
    ];
    assert!(matches!(
        verdict(&h),
        LinearizabilityReport::Ok { ops: 2, .. }
    ));
}

#[test]
fn concurrent_read_may_see_either_value() {
    for seen in [None, Some("a")] {
        let h = [
            op(1, 0, 10, w("a"), Output::WriteOk),
            op(2, 1, 9, Input::Read, read(seen)),
        ];
        assert!(
            matches!(verdict(&h), LinearizabilityReport::Ok { .. }),
            "{seen:?}"
        );
    }
}

#[test]
fn stale_read_after_completed_write_is_a_violation() {
    let h = [
        op(1, 0, 1, w("a"), Output::WriteOk),
        op(2, 2, 3, w("b"), Output::WriteOk),
        op(3, 4, 5, Input::Read, read(Some("a"))),
    ];
    match verdict(&h) {
        LinearizabilityReport::Violation { key, op_ids } => {
            assert_eq!(key, "k");
            assert!(op_ids.contains(&3), "{op_ids:?}");
        }
        other => panic!("expected a violation, got {other:?}"),
    }
}

#[test]
fn cas_semantics() {
    let ok = [
        op(1, 0, 1, w("a"), Output::WriteOk),
        op(
            2,
            2,
            3,
            Input::Cas {
                expected_md5: md5("a"),
                new: "b".into(),
            },
            Output::CasOk,
        ),
        op(
            3,
            4,
            5,
            Input::Cas {
                expected_md5: md5("a"),
                new: "c".into(),
            },
            Output::CasFailed,
        ),
        op(4, 6, 7, Input::Read, read(Some("b"))),
    ];
    assert!(matches!(verdict(&ok), LinearizabilityReport::Ok { .. }));
    let bad = [
        op(1, 0, 1, w("a"), Output::WriteOk),
        op(
            2,
            2,
            3,
            Input::Cas {
                expected_md5: md5("a"),
                new: "b".into(),
            },
            Output::CasFailed,
        ),
    ];
    assert!(matches!(
        verdict(&bad),
        LinearizabilityReport::Violation { .. }
    ));
    // A CAS on an absent key inserts.
    let insert = [op(
        1,
        0,
        1,
        Input::Cas {
            expected_md5: "x".into(),
            new: "n".into(),
        },
        Output::CasOk,
    )];
    assert!(matches!(verdict(&insert), LinearizabilityReport::Ok { .. }));
}

#[test]
fn unknown_writes_may_or_may_not_apply() {
    let applied = [
        op(1, 0, Time::MAX, w("a"), Output::Unknown),
        op(2, 5, 6, Input::Read, read(Some("a"))),
    ];
    assert!(matches!(
        verdict(&applied),
        LinearizabilityReport::Ok { .. }
    ));
    let not_applied = [
        op(1, 0, Time::MAX, w("a"), Output::Unknown),
        op(2, 5, 6, Input::Read, read(None)),
    ];
    assert!(matches!(
        verdict(&not_applied),
        LinearizabilityReport::Ok { .. }
    ));
    let never_written = [
        op(1, 0, 1, w("a"), Output::WriteOk),
        op(2, 5, 6, Input::Read, read(Some("zz"))),
    ];
    assert!(matches!(
        verdict(&never_written),
        LinearizabilityReport::Violation { .. }
    ));
}

#[test]
fn keys_are_independent() {
    let mut a = op(1, 0, 1, w("a"), Output::WriteOk);
    a.key = "x".into();
    let b = op(2, 2, 3, Input::Read, read(None));
    assert!(matches!(
        verdict(&[a, b]),
        LinearizabilityReport::Ok { keys: 2, .. }
    ));
}

/// Random concurrent histories generated from a real sequential execution: every op's interval
/// contains its true linearization point, so the checker must accept; corrupting one read to a
/// value never written must be rejected.
#[test]
fn randomized_histories_with_known_linearization() {
    for seed in 0..40u64 {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut state: Option<String> = None;
        let mut ops = Vec::new();
        for i in 0..60u64 {
            let point = i * 10 + 5;
            let call = point - rng.gen_range(0..=30.min(point));
            let ret = point + rng.gen_range(0..=30);
            let (input, output) = match rng.gen_range(0..4) {
                0 | 1 => {
                    let v = format!("v{i}");
                    state = Some(v.clone());
                    (w(&v), Output::WriteOk)
                }
                2 => {
                    state = None;
                    (Input::Write(None), Output::WriteOk)
                }
                _ => (Input::Read, Output::ReadValue(state.clone())),
            };
            ops.push(op(i + 1, call, ret, input, output));
        }
        assert!(
            matches!(verdict(&ops), LinearizabilityReport::Ok { .. }),
            "seed {seed}"
        );
        if let Some(r) = ops.iter_mut().find(|o| o.input == Input::Read) {
            r.output = read(Some("never-written"));
            assert!(
                matches!(verdict(&ops), LinearizabilityReport::Violation { .. }),
                "seed {seed}"
            );
        }
    }
}

#[test]
fn a_long_concurrent_key_completes_within_budget() {
    let mut rng = ChaCha8Rng::seed_from_u64(9);
    let mut state: Option<String> = None;
    let mut ops = Vec::new();
    for i in 0..200u64 {
        let point = i * 10 + 30;
        let call = point - rng.gen_range(0..30);
        let ret = point + rng.gen_range(0..30);
        let (input, output) = if rng.gen_bool(0.5) {
            state = Some(format!("v{i}"));
            (w(&format!("v{i}")), Output::WriteOk)
        } else {
            (Input::Read, Output::ReadValue(state.clone()))
        };
        ops.push(op(i + 1, call, ret, input, output));
    }
    assert!(matches!(
        check_linearizable(&ops, md5, 2_000_000),
        LinearizabilityReport::Ok { .. }
    ));
}
