//! The nemesis: turns a scenario's fault timeline into concrete faults for one seed and
//! applies them at their simulated times. Victims are picked when a fault fires (the leader
//! at that moment, a follower, anyone) with the run's seeded RNG.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use nacre_engine::wire::ClientRequest;

use crate::scenario::{Fault, Scenario, Target};
use crate::world::World;

/// A fault with its concrete start time and durations.
#[derive(Debug, Clone)]
pub struct Planned {
    pub at_ms: u64,
    pub fault: Fault,
    pub dur_ms: u64,
    pub rng_seed: u64,
}

/// A leader lost at `at_ms` (crash or isolation), for the failover measurement.
#[derive(Debug, Clone, Copy)]
pub struct LeaderLoss {
    pub at_ms: u64,
    pub leader: u64,
}

fn pick(rng: &mut ChaCha8Rng, range: [u64; 2], scale: u64) -> u64 {
    rng.gen_range(range[0] * scale..=range[1] * scale)
}

/// Derives the concrete plan for a seed.
pub fn plan(scenario: &Scenario, seed: u64) -> Vec<Planned> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x006e_656d_6573_6973);
    let mut out: Vec<Planned> = scenario
        .faults
        .iter()
        .map(|f| {
            let at_ms = pick(&mut rng, f.at_s(), 1000);
            let dur_ms = match f {
                Fault::Crash { down_s, .. }
                | Fault::CrashDuringSnapshot { down_s, .. }
                | Fault::CrashAll { down_s, .. } => pick(&mut rng, *down_s, 1000),
                Fault::Partition { for_s, .. }
                | Fault::IsolateLeader { for_s, .. }
                | Fault::OneWay { for_s, .. }
                | Fault::FlappingLinks { for_s, .. } => pick(&mut rng, *for_s, 1000),
                Fault::RollingRestart { gap_s, .. } => gap_s * 1000,
                Fault::Join { .. } | Fault::CorruptDisk { .. } | Fault::RemoveMember { .. } => 0,
            };
            Planned {
                at_ms,
                fault: f.clone(),
                dur_ms,
                rng_seed: rng.gen(),
            }
        })
        .collect();
    out.sort_by_key(|p| p.at_ms);
    out
}

type Shared = Arc<Mutex<World>>;

fn sleep_ms(ms: u64) -> madsim::time::Sleep {
    madsim::time::sleep(Duration::from_millis(ms))
}

/// Applies one planned fault (spawned at its time by the run).
pub async fn apply(
    world: Shared,
    p: Planned,
    losses: Arc<Mutex<Vec<LeaderLoss>>>,
    now_ms: impl Fn() -> u64,
) {
    let mut rng = ChaCha8Rng::seed_from_u64(p.rng_seed);
    let running = world.lock().expect("world lock").running();
    let leader = world.lock().expect("world lock").leader();
    match &p.fault {
        Fault::Crash { target, .. } => {
            let victim = match target {
                Target::Leader => leader,
                Target::Follower => running
                    .iter()
                    .copied()
                    .filter(|n| Some(*n) != leader)
                    .collect::<Vec<_>>()
                    .choose(&mut rng)
                    .copied(),
                Target::Any => running.choose(&mut rng).copied(),
            };
            let Some(v) = victim else { return };
            if Some(v) == leader {
                losses.lock().expect("loss lock").push(LeaderLoss {
                    at_ms: now_ms(),
                    leader: v,
                });
            }
            world.lock().expect("world lock").crash(v);
            sleep_ms(p.dur_ms).await;
            world.lock().expect("world lock").restart(v);
        }
        Fault::Partition { .. } => partition(&world, &running, &mut rng, p.dur_ms).await,
        Fault::FlappingLinks { period_ms, .. } => {
            let rounds = p.dur_ms / (*period_ms).max(1);
            for _ in 0..rounds {
                if running.len() >= 2 {
                    let a = running[rng.gen_range(0..running.len())];
                    let b = running[rng.gen_range(0..running.len())];
                    if a != b {
                        let w = world.lock().expect("world lock");
                        w.clog_link(a, b);
                        w.clog_link(b, a);
                    }
                }
                sleep_ms(*period_ms).await;
                heal(&world);
                sleep_ms(*period_ms / 2).await;
            }
        }
        Fault::IsolateLeader { .. } => {
            let Some(l) = leader else { return };
            losses.lock().expect("loss lock").push(LeaderLoss {
                at_ms: now_ms(),
                leader: l,
            });
            {
                let w = world.lock().expect("world lock");
                w.isolate(l);
                w.trace.event(format!("isolate leader n{l}"));
            }
            sleep_ms(p.dur_ms).await;
            heal(&world);
        }
        Fault::OneWay { .. } => {
            let mut two: Vec<u64> = running.clone();
            two.shuffle(&mut rng);
            if two.len() < 2 {
                return;
            }
            {
                let w = world.lock().expect("world lock");
                w.clog_link(two[0], two[1]);
                w.trace
                    .event(format!("drop link n{} -> n{}", two[0], two[1]));
            }
            sleep_ms(p.dur_ms).await;
            heal(&world);
        }
        Fault::Join { .. } => {
            let mut w = world.lock().expect("world lock");
            let id = w.members.keys().max().copied().unwrap_or(0) + 1;
            w.trace.event(format!("join n{id}"));
            w.add_member(id, Default::default());
        }
        Fault::RollingRestart { .. } => {
            let ids: Vec<u64> = world
                .lock()
                .expect("world lock")
                .members
                .keys()
                .copied()
                .collect();
            for id in ids {
                world.lock().expect("world lock").crash(id);
                sleep_ms(1_000).await;
                world.lock().expect("world lock").restart(id);
                sleep_ms(p.dur_ms).await;
            }
        }
        Fault::CrashDuringSnapshot { .. } => {
            crash_during_snapshot(&world, &running, leader, &mut rng, p.dur_ms).await
        }
        Fault::CrashAll { .. } => {
            let ids: Vec<u64> = world
                .lock()
                .expect("world lock")
                .members
                .keys()
                .copied()
                .collect();
            if let Some(l) = leader {
                losses.lock().expect("loss lock").push(LeaderLoss {
                    at_ms: now_ms(),
                    leader: l,
                });
            }
            for id in &ids {
                world.lock().expect("world lock").crash(*id);
            }
            sleep_ms(p.dur_ms).await;
            for id in &ids {
                world.lock().expect("world lock").restart(*id);
            }
        }
        Fault::RemoveMember { .. } => remove_member(&world, &running, leader, &mut rng).await,
        Fault::CorruptDisk { .. } => {
            let followers: Vec<u64> = running
                .iter()
                .copied()
                .filter(|n| Some(*n) != leader)
                .collect();
            let Some(v) = followers.choose(&mut rng).copied() else {
                return;
            };
            let mut w = world.lock().expect("world lock");
            let corrupted = w.members[&v].disk.corrupt_synced();
            w.trace.event(format!("corrupt disk of n{v}: {corrupted}"));
            w.crash(v);
            w.restart(v);
        }
    }
}

async fn partition(world: &Shared, running: &[u64], rng: &mut ChaCha8Rng, dur_ms: u64) {
    let mut ids = running.to_vec();
    ids.shuffle(rng);
    let minority = ids.len().saturating_sub(1) / 2;
    let minority = rng.gen_range(1..=minority.max(1));
    let (a, b) = ids.split_at(minority.min(ids.len()));
    {
        let w = world.lock().expect("world lock");
        for x in a {
            for y in b {
                w.clog_link(*x, *y);
                w.clog_link(*y, *x);
            }
        }
        w.trace.event(format!("partition {a:?} | {b:?}"));
    }
    sleep_ms(dur_ms).await;
    heal(world);
}

async fn crash_during_snapshot(
    world: &Shared,
    running: &[u64],
    leader: Option<u64>,
    rng: &mut ChaCha8Rng,
    down_ms: u64,
) {
    let followers: Vec<u64> = running
        .iter()
        .copied()
        .filter(|n| Some(*n) != leader)
        .collect();
    let Some(v) = followers.choose(rng).copied() else {
        return;
    };
    world.lock().expect("world lock").crash(v);
    // While it is down the leader snapshots and purges past it, so it must install a snapshot.
    sleep_ms(down_ms).await;
    world.lock().expect("world lock").restart(v);
    sleep_ms(rng.gen_range(5..400)).await;
    world.lock().expect("world lock").crash(v);
    sleep_ms(1_000).await;
    world.lock().expect("world lock").restart(v);
}

async fn remove_member(world: &Shared, running: &[u64], leader: Option<u64>, rng: &mut ChaCha8Rng) {
    let Some(l) = leader else { return };
    let followers: Vec<u64> = running.iter().copied().filter(|n| *n != l).collect();
    let Some(v) = followers.choose(rng).copied() else {
        return;
    };
    let (node, host) = {
        let w = world.lock().expect("world lock");
        let Some(node) = w.node(l) else { return };
        (node, w.members[&l].handle.clone())
    };
    let request = ClientRequest::RemoveMember { id: v };
    // The request runs on the leader's own host, as an operator's call to that member would.
    let outcome = host
        .spawn(async move { node.handle_client(request, 0).await })
        .await;
    let mut w = world.lock().expect("world lock");
    match outcome {
        Ok(Ok(_)) => {
            w.trace.event(format!("removed n{v} from the membership"));
            w.retire(v);
        }
        other => w.trace.event(format!("remove n{v} failed: {other:?}")),
    }
}

fn heal(world: &Shared) {
    let w = world.lock().expect("world lock");
    w.heal_network();
    w.trace.event("heal network".into());
}
