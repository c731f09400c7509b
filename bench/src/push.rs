//! Push latency: one SDK connection listens (config) or subscribes (naming), another client
//! changes the subject at a steady pace; each latency runs from the change's acknowledgement
//! to the arrival of the push that carries it. The publishing side may talk to another member
//! of a cluster (`--publish-addr`), so the figure includes the replication between them.

use std::future::Future;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::client::{publish, Conn};
use crate::grpc::{grpc_addr, register_request, GrpcConn};
use crate::report::{now, pct, Report, Tally};

/// The pace and bounds of a push measurement.
pub struct Pace {
    /// Changes made at most.
    pub count: u64,
    /// Time between two changes (from the start of one to the start of the next).
    pub interval: Duration,
    /// Longest wait for the push of one change.
    pub push_timeout: Duration,
    /// The whole measurement stops after this.
    pub duration: Duration,
}

/// Where the listener and the publisher talk.
pub struct Sides {
    pub listen: SocketAddr,
    pub publish: SocketAddr,
}

impl Sides {
    fn target(&self) -> String {
        if self.listen == self.publish {
            self.listen.to_string()
        } else {
            format!("listen {} / publish {}", self.listen, self.publish)
        }
    }
}

/// A name no earlier run used, so that old listeners and instances do not interfere.
// The wall clock only makes the name unique; nothing is measured with it.
#[allow(clippy::disallowed_methods)]
fn fresh_name(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("{prefix}.{}.{nanos}", std::process::id())
}

/// What the change loop gathered.
#[derive(Default)]
struct Outcome {
    /// From the change's acknowledgement to the push.
    tally: Tally,
    /// From the change's request being sent to the push.
    from_send: Tally,
    /// Pushes that arrived before the change's acknowledgement (counted as 0 µs from it).
    before_ack: u64,
}

impl Outcome {
    /// Records the push that arrived at `at` for the change sent at `sent` and acknowledged
    /// at `acked`.
    fn record(&mut self, sent: Instant, acked: Instant, at: Instant) {
        self.from_send.ok(at.saturating_duration_since(sent));
        match at.checked_duration_since(acked) {
            Some(d) => self.tally.ok(d),
            None => {
                self.before_ack += 1;
                self.tally.ok(Duration::ZERO);
            }
        }
    }
}

/// One side that changes the subject, change after change.
trait Changer: Send {
    /// What the pushes of this subject are.
    const PUSH_TYPE: &'static str;

    /// Makes change `i`; `Err` (the kind to count) unless it was acknowledged.
    fn change(&mut self, i: u64) -> impl Future<Output = Result<(), String>> + Send;

    /// Whether a push's body carries change `i`.
    fn carries(&self, i: u64, body: &Value) -> bool;
}

/// Makes changes at `pace` and waits, after each acknowledged one, for the push carrying it.
async fn measure<C: Changer>(listener: &mut GrpcConn, changer: &mut C, pace: &Pace) -> Outcome {
    let deadline = now() + pace.duration;
    let mut out = Outcome::default();
    for i in 1..=pace.count {
        let round = now();
        if round >= deadline {
            break;
        }
        listener.drain_pushes();
        let sent = now();
        if let Err(kind) = changer.change(i).await {
            out.tally.error(kind);
            tokio::time::sleep_until((round + pace.interval).into()).await;
            continue;
        }
        let acked = now();
        let until = acked + pace.push_timeout;
        let mut carried = None;
        while let Some(p) = listener.next_push(until).await {
            if p.type_name == C::PUSH_TYPE && changer.carries(i, &p.body) {
                carried = Some(p.at);
                break;
            }
        }
        match carried {
            Some(at) => out.record(sent, acked, at),
            None => out
                .tally
                .error(format!("no {} carrying the change in time", C::PUSH_TYPE)),
        }
        tokio::time::sleep_until((round + pace.interval).into()).await;
    }
    out
}

/// Publishes a new content of one config over HTTP (keep-alive, reconnected on errors).
struct ConfigPublisher {
    addr: SocketAddr,
    conn: Option<Conn>,
    data_id: String,
}

impl Changer for ConfigPublisher {
    const PUSH_TYPE: &'static str = "ConfigChangeNotifyRequest";

    async fn change(&mut self, i: u64) -> Result<(), String> {
        let conn = match self.conn.as_mut() {
            Some(c) => c,
            None => self.conn.insert(Conn::connect(self.addr).await?),
        };
        let request = publish(&self.data_id, &format!("v{i}"));
        match conn.exchange(request.as_bytes()).await {
            Ok(200) => Ok(()),
            Ok(status) => Err(format!("publish: HTTP {status}")),
            Err(e) => {
                self.conn = None;
                Err(format!("publish: {e}"))
            }
        }
    }

    fn carries(&self, _i: u64, body: &Value) -> bool {
        body.get("dataId").and_then(Value::as_str) == Some(self.data_id.as_str())
    }
}

/// Config push: a gRPC connection listens to one key (`ConfigBatchListenRequest`), an HTTP
/// client publishes a new content every interval; latency = publish answered 200 →
/// `ConfigChangeNotifyRequest` for the key received.
pub async fn config(sides: &Sides, pace: &Pace) -> Result<Report, String> {
    let mut publisher = ConfigPublisher {
        addr: sides.publish,
        conn: None,
        data_id: fresh_name("bench.push"),
    };
    publisher.change(0).await?;
    let mut listener = GrpcConn::open(grpc_addr(sides.listen)?, "config").await?;
    let listen = json!({
        "listen": true,
        "configListenContexts": [
            {"dataId": publisher.data_id, "group": "bench", "tenant": "", "md5": ""}
        ],
    });
    listener
        .call("ConfigBatchListenRequest", listen)
        .await
        .map_err(|f| format!("ConfigBatchListenRequest: {}", f.kind))?;
    let started = now();
    let out = measure(&mut listener, &mut publisher, pace).await;
    let name = "config push (publish → notify)";
    Ok(finish("push-config", name, sides, pace, started, out))
}

/// Registers one gRPC connection's instance of a service, a new port per change (replacing the
/// previous instance: one connection holds one instance per service).
struct Registrar {
    addr: SocketAddr,
    conn: Option<GrpcConn>,
    service: String,
}

/// The port of change `i`.
fn change_port(i: u64) -> u16 {
    2_000 + (i % 60_000) as u16
}

impl Changer for Registrar {
    const PUSH_TYPE: &'static str = "NotifySubscriberRequest";

    async fn change(&mut self, i: u64) -> Result<(), String> {
        let conn = match self.conn.as_mut() {
            Some(c) => c,
            None => self.conn.insert(GrpcConn::open(self.addr, "naming").await?),
        };
        let register = register_request(&self.service, "10.254.0.1", change_port(i));
        conn.call("InstanceRequest", register)
            .await
            .map(|_| ())
            .map_err(|f| {
                if f.reopen {
                    self.conn = None;
                }
                format!("register: {}", f.kind)
            })
    }

    fn carries(&self, i: u64, body: &Value) -> bool {
        pushed_ports(body).contains(&u64::from(change_port(i)))
    }
}

/// The ports a `NotifySubscriberRequest` lists.
fn pushed_ports(body: &Value) -> Vec<u64> {
    body.pointer("/serviceInfo/hosts")
        .and_then(Value::as_array)
        .map(|hosts| {
            hosts
                .iter()
                .filter_map(|h| h.get("port").and_then(Value::as_u64))
                .collect()
        })
        .unwrap_or_default()
}

/// Naming push: a gRPC connection subscribes to a service (`SubscribeServiceRequest`), another
/// gRPC connection registers its instance there every interval with a new port; latency =
/// register answered → `NotifySubscriberRequest` listing the new port received.
pub async fn naming(sides: &Sides, pace: &Pace) -> Result<Report, String> {
    let mut registrar = Registrar {
        addr: grpc_addr(sides.publish)?,
        conn: None,
        service: fresh_name("bench.push.svc"),
    };
    let mut listener = GrpcConn::open(grpc_addr(sides.listen)?, "naming").await?;
    let subscribe = json!({
        "namespace": "public",
        "groupName": "DEFAULT_GROUP",
        "serviceName": registrar.service,
        "subscribe": true,
        "clusters": "",
    });
    listener
        .call("SubscribeServiceRequest", subscribe)
        .await
        .map_err(|f| format!("SubscribeServiceRequest: {}", f.kind))?;
    let started = now();
    let out = measure(&mut listener, &mut registrar, pace).await;
    let name = "naming push (register → notify)";
    Ok(finish("push-naming", name, sides, pace, started, out))
}

fn finish(
    workload: &str,
    name: &str,
    sides: &Sides,
    pace: &Pace,
    started: Instant,
    out: Outcome,
) -> Report {
    let mut from_send = out.from_send.lat;
    from_send.sort_unstable();
    let from_send_us = json!({
        "p50": pct(&from_send, 0.5),
        "p99": pct(&from_send, 0.99),
        "p999": pct(&from_send, 0.999),
    });
    Report::new(
        workload,
        name,
        sides.target(),
        2,
        started.elapsed(),
        out.tally,
    )
    .with("push_before_ack", out.before_ack)
    .with("from_send_us", from_send_us)
    .with("interval_ms", pace.interval.as_millis() as u64)
    .with("push_timeout_ms", pace.push_timeout.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_pushed_ports() {
        let body =
            json!({"serviceInfo": {"hosts": [{"ip": "1.2.3.4", "port": 2001}, {"port": 7}]}});
        assert_eq!(pushed_ports(&body), vec![2001, 7]);
        assert!(pushed_ports(&json!({})).is_empty());
    }
}
