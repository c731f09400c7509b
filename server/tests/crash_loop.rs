//! Crash-loop durability test of a standalone `nacre`: writers publish configs as fast as the
//! node acknowledges them while the test SIGKILLs the process, restarts it on the same data
//! directory, and checks that every acknowledged publish of every round is served — in a loop
//! of `ROUNDS` kills at varied moments. A publish whose answer was lost in the kill is
//! indeterminate and not checked; an acknowledged one must never be lost. The node must also
//! restart cleanly every time (a torn journal tail is cut, not fatal).

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::thread::sleep;
use std::time::Duration;

use nacre_tests::{free_http_port, http, temp_dir, Nacre};

/// Kill/restart rounds.
const ROUNDS: usize = 6;
/// Concurrent writers (so fsyncs are shared by several writes).
const WRITERS: usize = 4;
/// Most publishes one writer makes in one round (bounds the loop if the kill comes late).
const WRITES_PER_ROUND_MAX: usize = 2_000;

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_nacre"))
}

/// The kill moment of a round, after the writers started: varied, deterministic.
fn kill_after(round: usize) -> Duration {
    Duration::from_millis(150 + (round as u64 * 277) % 700)
}

/// Every acknowledged `(dataId, content)` is served by the node on `port`.
fn assert_all_served(port: u16, acked: &[(String, String)], nacre: &Nacre, when: &str) {
    for (data_id, content) in acked {
        let r = http(
            port,
            "GET",
            &format!("/nacos/v1/cs/configs?dataId={data_id}&group=crash"),
            &[],
            "",
        )
        .unwrap_or_else(|e| panic!("{when}: read {data_id}: {e}"));
        assert_eq!(
            (r.status, r.body.as_str()),
            (200, content.as_str()),
            "{when}: acknowledged {data_id} lost\n{}",
            nacre.log_text()
        );
    }
}

#[test]
fn no_acknowledged_write_is_lost_across_repeated_sigkills() {
    let root = temp_dir("crash-loop");
    let data = root.join("data");
    let port = free_http_port();
    let acked: Mutex<Vec<(String, String)>> = Mutex::new(Vec::new());
    for round in 0..ROUNDS {
        let mut nacre = Nacre::spawn(bin(), port, &data, &root.join(format!("round-{round}.log")));
        // Everything acknowledged before this start is served.
        assert_all_served(
            port,
            &acked.lock().expect("acked"),
            &nacre,
            &format!("round {round}"),
        );
        let stop = AtomicBool::new(false);
        let round_acks = std::thread::scope(|s| {
            let writers: Vec<_> = (0..WRITERS)
                .map(|w| {
                    let stop = &stop;
                    let acked = &acked;
                    s.spawn(move || {
                        let mut n = 0;
                        while !stop.load(Ordering::Relaxed) && n < WRITES_PER_ROUND_MAX {
                            let data_id = format!("crash.r{round}.w{w}.n{n}");
                            let content = format!("v{round}-{w}-{n}");
                            let target = format!(
                                "/nacos/v1/cs/configs?dataId={data_id}&group=crash&content={content}"
                            );
                            match http(port, "POST", &target, &[], "") {
                                Ok(r) if r.status == 200 && r.body == "true" => {
                                    acked.lock().expect("acked").push((data_id, content));
                                }
                                // The kill: this write is indeterminate; the writer stops.
                                _ => break,
                            }
                            n += 1;
                        }
                        n
                    })
                })
                .collect();
            sleep(kill_after(round));
            nacre.kill();
            stop.store(true, Ordering::Relaxed);
            writers
                .into_iter()
                .map(|h| h.join().expect("writer"))
                .sum::<usize>()
        });
        println!(
            "round {round}: killed after {} ms, {round_acks} publishes acknowledged",
            kill_after(round).as_millis()
        );
        assert!(
            round_acks > 0,
            "round {round}: nothing was written before the kill"
        );
        drop(nacre);
    }
    // A last restart checks the last round too.
    let nacre = Nacre::spawn(bin(), port, &data, &root.join("final.log"));
    let all = acked.lock().expect("acked").clone();
    assert_all_served(port, &all, &nacre, "final");
    println!(
        "{} acknowledged publishes over {ROUNDS} SIGKILLs, all served after restarts",
        all.len()
    );
    drop(nacre);
    let _ = std::fs::remove_dir_all(&root);
}
