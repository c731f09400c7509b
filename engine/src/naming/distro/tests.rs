//! Unit tests of the Distro state machine: merging, ownership, verify and resend, snapshot
//! load, HTTP client expiry, deletion age, member health.

use super::*;

const A: &str = "10.0.0.1:8848";
const B: &str = "10.0.0.2:8848";
const C: &str = "10.0.0.3:8848";

fn members() -> Vec<String> {
    vec![A.into(), B.into(), C.into()]
}

fn svc() -> ServiceKey {
    ServiceKey::new("public", "DEFAULT_GROUP", "svc")
}

/// A member that finished its snapshot load (from B, empty).
fn loaded(me: &str) -> Distro {
    let mut d = Distro::new(me, &members(), DistroTimings::default(), 0);
    d.on_tick(0);
    for e in d.drain() {
        if let Effect::Send { id, msg, .. } = e {
            let reply = match msg {
                DistroMsg::SnapshotQuery => DistroReply::Snapshot(vec![]),
                _ => DistroReply::Ok,
            };
            d.on_reply(0, id, Some(reply));
        }
    }
    d.drain();
    assert!(d.loaded());
    d
}

fn sends(effects: &[Effect]) -> Vec<(String, DistroMsg)> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Send { to, msg, .. } => Some((to.clone(), msg.clone())),
            _ => None,
        })
        .collect()
}

/// Every client version sent, alone or in a batch, with its target.
fn syncs(effects: &[Effect]) -> Vec<(String, ClientData)> {
    sends(effects)
        .into_iter()
        .flat_map(|(to, m)| match m {
            DistroMsg::Sync(d) => vec![(to, d)],
            DistroMsg::Batch(items) => items
                .into_iter()
                .filter_map(|i| match i {
                    SyncItem::Sync(d) => Some((to.clone(), d)),
                    SyncItem::Delete { .. } => None,
                })
                .collect(),
            _ => vec![],
        })
        .collect()
}

#[test]
fn changes_within_the_delay_merge_into_one_sync_of_the_newest_state() {
    let mut d = loaded(A);
    d.connect(0, "c1");
    d.register(0, "c1", &svc(), Instance::new("1.1.1.1", 80))
        .expect("register");
    let delay = DistroTimings::default().sync_delay_ms;
    let mut moved = Instance::new("1.1.1.1", 80);
    moved.weight = 2.0;
    d.register(delay / 2, "c1", &svc(), moved.clone())
        .expect("register");
    d.on_tick(delay - 1);
    assert!(syncs(&d.drain()).is_empty(), "nothing before the delay");
    d.on_tick(delay);
    let out = syncs(&d.drain());
    assert_eq!(out.len(), 2, "one sync per peer: {out:?}");
    for (_, data) in out {
        assert_eq!(data.revision, 2);
        assert_eq!(data.instances.get(&svc()), Some(&moved));
    }
}

#[test]
fn identical_reregistration_changes_nothing() {
    let mut d = loaded(A);
    d.connect(0, "c1");
    d.register(0, "c1", &svc(), Instance::new("1.1.1.1", 80))
        .expect("register");
    d.on_tick(1_000);
    d.drain();
    d.register(2_000, "c1", &svc(), Instance::new("1.1.1.1", 80))
        .expect("register");
    d.on_tick(4_000);
    assert!(syncs(&d.drain()).is_empty());
    assert_eq!(d.client("c1").map(|c| c.revision), Some(1));
}

#[test]
fn a_member_refuses_remote_changes_to_its_own_clients_and_foreign_connections() {
    let mut d = loaded(A);
    d.connect(0, "c1");
    d.register(0, "c1", &svc(), Instance::new("1.1.1.1", 80))
        .expect("register");
    let forged = ClientData {
        id: "c1".into(),
        kind: ClientKind::Connection,
        revision: 9,
        instances: VecMap::new(),
        batches: BTreeMap::new(),
    };
    assert_eq!(
        d.on_message(10, B, DistroMsg::Sync(forged)),
        DistroReply::Rejected
    );
    assert_eq!(
        d.on_message(
            10,
            B,
            DistroMsg::Delete {
                client: "c1".into(),
                age_ms: 0
            }
        ),
        DistroReply::Rejected
    );
    // A connection client synced by B cannot be deleted by C.
    let remote = ClientData {
        id: "c2".into(),
        kind: ClientKind::Connection,
        revision: 1,
        instances: VecMap::from([(svc(), Instance::new("2.2.2.2", 80))]),
        batches: BTreeMap::new(),
    };
    assert_eq!(
        d.on_message(10, B, DistroMsg::Sync(remote)),
        DistroReply::Ok
    );
    let delete = DistroMsg::Delete {
        client: "c2".into(),
        age_ms: 0,
    };
    assert_eq!(d.on_message(20, C, delete.clone()), DistroReply::Rejected);
    assert_eq!(d.on_message(20, B, delete), DistroReply::Ok);
    assert!(d.client("c2").is_none());
}

#[test]
fn a_failed_verify_resends_the_client_at_once() {
    let mut d = loaded(A);
    d.connect(0, "c1");
    d.register(0, "c1", &svc(), Instance::new("1.1.1.1", 80))
        .expect("register");
    d.on_tick(1_000);
    for e in d.drain() {
        if let Effect::Send { id, .. } = e {
            d.on_reply(1_010, id, Some(DistroReply::Ok));
        }
    }
    d.on_tick(5_000); // the first verify goes out
    let out = d.drain();
    let verify = out
        .iter()
        .find_map(|e| match e {
            Effect::Send {
                id,
                to,
                msg: DistroMsg::Verify { clients: m, .. },
            } if to == B => Some((*id, m.clone())),
            _ => None,
        })
        .expect("a manifest to B");
    assert_eq!(verify.1.len(), 1);
    d.on_reply(
        5_010,
        verify.0,
        Some(DistroReply::Verified {
            failed: vec!["c1".into()],
        }),
    );
    let resent = syncs(&d.drain());
    assert_eq!(resent.len(), 1, "{resent:?}");
    assert_eq!(resent[0].0, B);
}

#[test]
fn a_loaded_snapshot_never_replaces_local_clients_nor_revives_own_dead_connections() {
    let mut d = Distro::new(A, &members(), DistroTimings::default(), 0);
    d.connect(0, "mine");
    d.register(0, "mine", &svc(), Instance::new("1.1.1.1", 80))
        .expect("register");
    d.on_tick(0);
    let query = d
        .drain()
        .into_iter()
        .find_map(|e| match e {
            Effect::Send {
                id,
                msg: DistroMsg::SnapshotQuery,
                ..
            } => Some(id),
            _ => None,
        })
        .expect("snapshot query");
    let stale_mine = ClientData {
        id: "mine".into(),
        kind: ClientKind::Connection,
        revision: 7,
        instances: VecMap::new(),
        batches: BTreeMap::new(),
    };
    let old_life = ClientData {
        id: "old".into(),
        kind: ClientKind::Connection,
        revision: 3,
        instances: VecMap::from([(svc(), Instance::new("3.3.3.3", 80))]),
        batches: BTreeMap::new(),
    };
    let other = ClientData {
        id: "theirs".into(),
        kind: ClientKind::Connection,
        revision: 1,
        instances: VecMap::from([(svc(), Instance::new("4.4.4.4", 80))]),
        batches: BTreeMap::new(),
    };
    d.on_reply(
        10,
        query,
        Some(DistroReply::Snapshot(vec![
            (stale_mine, B.into()),
            (old_life, A.into()),
            (other, B.into()),
        ])),
    );
    assert!(d.loaded());
    assert_eq!(d.client("mine").map(|c| c.revision), Some(1));
    assert!(d.client("old").is_none());
    assert!(d.client("theirs").is_some());
}

#[test]
fn http_clients_turn_unhealthy_then_are_deleted_without_beats() {
    let mut d = Distro::new(A, &[A.to_string()], DistroTimings::default(), 0);
    let w = IpPortWrite::Register {
        service: svc(),
        instance: Instance::new("5.5.5.5", 80),
    };
    assert_eq!(d.apply_ip_port(0, &w), IpPortOutcome::Done { at: A.into() });
    d.on_tick(15_000);
    assert!(d.instances(&svc())[0].healthy);
    d.on_tick(15_100);
    assert!(!d.instances(&svc())[0].healthy);
    let beat = IpPortWrite::Beat {
        service: svc(),
        ip: "5.5.5.5".into(),
        port: 80,
    };
    d.apply_ip_port(16_000, &beat);
    assert!(d.instances(&svc())[0].healthy, "a beat heals it");
    d.on_tick(46_100);
    assert!(d.instances(&svc()).is_empty());
    assert_eq!(
        d.apply_ip_port(46_200, &beat),
        IpPortOutcome::BeatNotFound { at: A.into() }
    );
}

#[test]
fn an_instances_own_beat_timeouts_win_over_the_defaults() {
    let mut d = Distro::new(A, &[A.to_string()], DistroTimings::default(), 0);
    let mut inst = Instance::new("5.5.5.6", 80);
    inst.metadata
        .insert(META_BEAT_TIMEOUT.into(), "3000".into());
    inst.metadata
        .insert(META_DELETE_TIMEOUT.into(), "6000".into());
    let w = IpPortWrite::Register {
        service: svc(),
        instance: inst,
    };
    d.apply_ip_port(0, &w);
    d.on_tick(3_100);
    assert!(
        !d.instances(&svc())[0].healthy,
        "unhealthy after its own 3 s"
    );
    d.on_tick(6_100);
    assert!(d.instances(&svc()).is_empty(), "deleted after its own 6 s");
}

#[test]
fn a_deletion_older_than_the_copy_is_refused() {
    let mut d = loaded(A);
    let id = "9.9.9.8:80#true";
    // Over [A, B, C] the tag hashes to index 2: C owns the client, A holds a copy.
    assert_eq!(d.responsible_for("9.9.9.8:80"), C);
    let data = ClientData {
        id: id.into(),
        kind: ClientKind::IpPort,
        revision: 1,
        instances: VecMap::from([(svc(), Instance::new("9.9.9.8", 80))]),
        batches: BTreeMap::new(),
    };
    assert_eq!(
        d.on_message(100_000, C, DistroMsg::Sync(data)),
        DistroReply::Ok
    );
    // B deleted it 60 s ago (say, on its side of a partition): older than the copy.
    let stale = DistroMsg::Delete {
        client: id.into(),
        age_ms: 60_000,
    };
    assert_eq!(d.on_message(110_000, B, stale), DistroReply::Rejected);
    assert!(d.client(id).is_some());
    let fresh = DistroMsg::Delete {
        client: id.into(),
        age_ms: 0,
    };
    assert_eq!(d.on_message(110_000, B, fresh), DistroReply::Ok);
    assert!(d.client(id).is_none());
}

#[test]
fn three_failed_reports_make_a_member_down_and_move_ownership() {
    let mut d = loaded(A);
    assert_eq!(d.healthy_members().len(), 3);
    for round in 0..3u64 {
        let now = 2_000 * (round + 1);
        d.on_tick(now);
        for e in d.drain() {
            if let Effect::Send {
                id,
                to,
                msg: DistroMsg::Report,
            } = e
            {
                let ok = (to != C).then_some(DistroReply::Ok);
                d.on_reply(now, id, ok);
            }
        }
        let expected = if round < 2 {
            MemberState::Suspicious
        } else {
            MemberState::Down
        };
        assert_eq!(d.member_states()[C], expected);
    }
    assert_eq!(d.healthy_members(), vec![A.to_string(), B.to_string()]);
    // An incoming report brings it back.
    d.on_message(7_000, C, DistroMsg::Report);
    assert_eq!(d.healthy_members().len(), 3);
}

#[test]
fn a_batch_publishes_several_instances_and_replaces_or_is_replaced_by_a_single_one() {
    let mut a = loaded(A);
    let mut b = loaded(B);
    a.connect(0, "c1");
    let batch = vec![Instance::new("1.1.1.1", 80), Instance::new("1.1.1.2", 80)];
    a.register_batch(0, "c1", &svc(), batch.clone())
        .expect("batch");
    assert_eq!(a.instances(&svc()).len(), 2);
    assert_eq!(a.instance_count(&svc()), 2);
    // The sync carries the batch; the peer shows both instances.
    a.on_tick(1_000);
    for (to, data) in syncs(&a.drain()) {
        if to == B {
            assert_eq!(data.batches.get(&svc()), Some(&batch));
            b.on_message(1_000, A, DistroMsg::Sync(data));
        }
    }
    assert_eq!(b.instances(&svc()).len(), 2, "replicated batch");
    assert_eq!(b.instance_count(&svc()), 2);
    // A single registration replaces the batch, and a batch replaces the single one.
    a.register(2_000, "c1", &svc(), Instance::new("1.1.1.3", 80))
        .expect("single");
    let ips: Vec<String> = a.instances(&svc()).into_iter().map(|i| i.ip).collect();
    assert_eq!(ips, vec!["1.1.1.3".to_string()]);
    assert_eq!(a.instance_count(&svc()), 1);
    a.register_batch(3_000, "c1", &svc(), batch)
        .expect("batch again");
    assert_eq!(a.instances(&svc()).len(), 2);
    assert!(a.client("c1").is_some_and(|c| c.instances.is_empty()));
    assert_eq!(a.instance_count(&svc()), 2);
    // The same client's sync changes the peer's count by the difference only.
    let mut single = ClientData::empty("c1", ClientKind::Connection);
    single.revision = 9;
    single.instances.insert(svc(), Instance::new("1.1.1.9", 80));
    b.on_message(3_000, A, DistroMsg::Sync(single));
    assert_eq!(b.instance_count(&svc()), 1);
    assert!(b.miscounted_services().is_empty());
    // An empty batch withdraws them; so does a deregistration or the disconnect.
    a.register_batch(4_000, "c1", &svc(), vec![])
        .expect("empty");
    assert!(a.instances(&svc()).is_empty());
    assert!(a.services().is_empty());
    a.register_batch(5_000, "c1", &svc(), vec![Instance::new("1.1.1.4", 80)])
        .expect("batch of one");
    a.deregister(6_000, "c1", &svc()).expect("deregister");
    assert!(a.instances(&svc()).is_empty());
    a.register_batch(7_000, "c1", &svc(), vec![Instance::new("1.1.1.5", 80)])
        .expect("batch");
    a.disconnect(8_000, "c1");
    assert!(a.instances(&svc()).is_empty(), "gone with the connection");
    assert_eq!(a.instance_count(&svc()), 0);
    assert!(a.miscounted_services().is_empty());
}

#[test]
fn changed_services_lists_each_differing_service_once() {
    let key = |n: &str| ServiceKey::new("public", "DEFAULT_GROUP", n);
    let mut old = ClientData::empty("c", ClientKind::Connection);
    for n in ["a", "b", "c", "d"] {
        old.instances.insert(key(n), Instance::new("1.1.1.1", 80));
    }
    let mut new = old.clone();
    new.instances.insert(key("b"), Instance::new("1.1.1.1", 81)); // changed
    new.instances.remove(&key("c")); // withdrawn
    new.batches
        .insert(key("c"), vec![Instance::new("1.1.1.1", 82)]); // moved to a batch
    new.instances.insert(key("e"), Instance::new("1.1.1.1", 80)); // added
    let changed: Vec<String> = old
        .changed_services(&new)
        .into_iter()
        .map(|s| s.name.clone())
        .collect();
    assert_eq!(changed, ["b", "c", "e"]);
    assert!(old.changed_services(&old.clone()).is_empty());
    new.instances.remove(&key("a"));
    let gone: Vec<&ServiceKey> = old
        .changed_services(&new)
        .into_iter()
        .filter(|s| !new.publishes(s))
        .collect();
    assert_eq!(gone, [&key("a")]);
}

#[test]
fn a_registration_touches_only_its_own_service() {
    let mut d = Distro::new(A, &[A.to_string()], DistroTimings::default(), 0);
    d.connect(0, "conn");
    for n in ["a", "b", "c"] {
        let s = ServiceKey::new("public", "DEFAULT_GROUP", n);
        d.register(0, "conn", &s, Instance::new("1.1.1.1", 80))
            .unwrap();
    }
    let generation_of =
        |d: &Distro, n: &str| d.generation_of(&ServiceKey::new("public", "DEFAULT_GROUP", n));
    let (a, c) = (generation_of(&d, "a"), generation_of(&d, "c"));
    let b = ServiceKey::new("public", "DEFAULT_GROUP", "b");
    d.register(1, "conn", &b, Instance::new("1.1.1.1", 81))
        .unwrap();
    assert_eq!(
        generation_of(&d, "a"),
        a,
        "an untouched service keeps its generation"
    );
    assert_eq!(generation_of(&d, "c"), c);
    assert_eq!(d.instances(&b)[0].port, 81);
    assert_eq!(
        d.instances(&ServiceKey::new("public", "DEFAULT_GROUP", "a"))
            .len(),
        1
    );
}

#[test]
fn the_changes_due_for_a_peer_travel_in_one_batch_and_a_lost_batch_is_resent_whole() {
    let mut a = loaded(A);
    for i in 0..20 {
        let conn = format!("c{i}");
        a.connect(0, &conn);
        a.register(0, &conn, &svc(), Instance::new("1.1.1.1", 1000 + i))
            .expect("register");
    }
    a.disconnect(0, "c19");
    let delay = DistroTimings::default().sync_delay_ms;
    a.on_tick(delay);
    let sent: Vec<(u64, String, DistroMsg)> = a
        .drain()
        .into_iter()
        .filter_map(|e| match e {
            Effect::Send { id, to, msg } => Some((id, to, msg)),
            _ => None,
        })
        .collect();
    assert_eq!(sent.len(), 2, "one message per peer: {sent:?}");
    for (_, to, msg) in &sent {
        let DistroMsg::Batch(items) = msg else {
            panic!("a batch to {to}: {msg:?}");
        };
        assert_eq!(items.len(), 20, "19 connections and a deletion");
        assert!(items.contains(&SyncItem::Delete {
            client: "c19".into(),
            age_ms: delay,
        }));
    }
    // The batch reaches B: every change is taken.
    let mut b = loaded(B);
    let (_, _, to_b) = sent.iter().find(|(_, to, _)| to == B).expect("sent to B");
    assert_eq!(b.on_message(delay, A, to_b.clone()), DistroReply::Ok);
    assert_eq!(b.instance_count(&svc()), 19);
    // The one to C is lost: all of it goes again after the retry delay, and only then.
    let (lost, _, _) = sent.iter().find(|(_, to, _)| to == C).expect("sent to C");
    let (ok, _, _) = sent.iter().find(|(_, to, _)| to == B).expect("sent to B");
    a.on_reply(delay + 1, *ok, Some(DistroReply::Ok));
    a.on_reply(delay + 1, *lost, None);
    let retry = DistroTimings::default().sync_retry_ms;
    a.on_tick(delay + retry);
    assert!(syncs(&a.drain()).is_empty(), "not before the retry delay");
    a.on_dispatch(delay + 1 + retry);
    let again = sends(&a.drain());
    assert_eq!(again.len(), 1, "{again:?}");
    let (to, DistroMsg::Batch(items)) = &again[0] else {
        panic!("a batch: {again:?}");
    };
    assert_eq!((to.as_str(), items.len()), (C, 20));
}

#[test]
fn a_copy_no_one_renews_is_dropped_and_an_idle_connection_closed_on_time() {
    let t = DistroTimings::default();
    let mut b = loaded(B);
    let mut copy = ClientData::empty("a-conn", ClientKind::Connection);
    copy.revision = 1;
    copy.instances.insert(svc(), Instance::new("1.1.1.1", 80));
    assert_eq!(
        b.on_message(1_000, A, DistroMsg::Sync(copy)),
        DistroReply::Ok
    );
    b.connect(1_000, "b-conn");
    b.register(1_000, "b-conn", &svc(), Instance::new("2.2.2.2", 80))
        .expect("register");
    // Ticks in between look at nothing (both wait for their own time) and change nothing.
    for now in (1_100..=1_000 + t.conn_idle_ms).step_by(100) {
        b.on_tick(now);
    }
    assert_eq!(b.instance_count(&svc()), 2);
    b.on_tick(1_000 + t.conn_idle_ms + 100);
    assert!(b.client("b-conn").is_none(), "idle connection closed");
    b.on_tick(1_000 + t.synced_expire_ms);
    assert!(b.client("a-conn").is_some(), "not before its time");
    b.on_tick(1_000 + t.synced_expire_ms + 100);
    assert!(b.client("a-conn").is_none(), "unrenewed copy dropped");
}
