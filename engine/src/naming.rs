//! The naming model (wire reference §1.3, §2.1): namespace → group → service → cluster →
//! instance, service metadata, and the selection rules every query path applies.
//!
//! Ephemeral instances live in Distro (`distro`), replicated asynchronously between members;
//! this module holds the pure data types and the selection rules shared by every read path.

pub mod distro;
pub mod java_hash;
pub mod persistent;
pub mod runner;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The default namespace of the naming APIs (literally `public`, no normalisation).
pub const DEFAULT_NAMESPACE: &str = "public";
/// The default group.
pub const DEFAULT_GROUP: &str = "DEFAULT_GROUP";
/// The default cluster of an instance.
pub const DEFAULT_CLUSTER: &str = "DEFAULT";
/// Separator of a grouped service name (`group@@service`).
pub const GROUP_SEPARATOR: &str = "@@";
/// Instance metadata key: the client's beat period in ms (wire reference §1.3).
pub const META_BEAT_INTERVAL: &str = "preserved.heart.beat.interval";
/// Instance metadata key: no beat for this long (ms) marks the instance unhealthy.
pub const META_BEAT_TIMEOUT: &str = "preserved.heart.beat.timeout";
/// Instance metadata key: no beat for this long (ms) deletes the instance.
pub const META_DELETE_TIMEOUT: &str = "preserved.ip.delete.timeout";
/// Instance metadata key: the instance id generator (only `simple` is produced here).
pub const META_ID_GENERATOR: &str = "preserved.instance.id.generator";

/// The identity of a service: namespace, group and name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ServiceKey {
    pub namespace: String,
    pub group: String,
    pub name: String,
}

impl ServiceKey {
    /// A key from its parts.
    pub fn new(namespace: &str, group: &str, name: &str) -> ServiceKey {
        ServiceKey {
            namespace: namespace.into(),
            group: group.into(),
            name: name.into(),
        }
    }

    /// `group@@name`, as v1 HTTP responses show it.
    pub fn grouped_name(&self) -> String {
        format!("{}{GROUP_SEPARATOR}{}", self.group, self.name)
    }
}

/// One instance of a service.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Instance {
    pub ip: String,
    pub port: u16,
    pub weight: f64,
    pub healthy: bool,
    pub enabled: bool,
    pub ephemeral: bool,
    pub cluster: String,
    pub metadata: BTreeMap<String, String>,
}

// Weights are checked to lie in 0..=10000 before they are stored (never NaN), so equality is
// total on stored instances; the replicated command and state types need `Eq`.
impl Eq for Instance {}

impl Instance {
    /// An enabled, healthy, ephemeral instance of weight 1 in the default cluster.
    pub fn new(ip: &str, port: u16) -> Instance {
        Instance {
            ip: ip.into(),
            port,
            weight: 1.0,
            healthy: true,
            enabled: true,
            ephemeral: true,
            cluster: DEFAULT_CLUSTER.into(),
            metadata: BTreeMap::new(),
        }
    }

    /// Nacos's `simple` instance id: `ip#port#cluster#group@@service`.
    pub fn instance_id(&self, service: &ServiceKey) -> String {
        format!(
            "{}#{}#{}#{}",
            self.ip,
            self.port,
            self.cluster,
            service.grouped_name()
        )
    }

    /// A timing from the preserved metadata keys (ms), or `default` when absent or not a
    /// number.
    pub fn meta_ms(&self, key: &str, default: u64) -> u64 {
        self.metadata
            .get(key)
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or(default)
    }

    /// `ip:port`, the tag of an HTTP-registered instance's client.
    pub fn address(&self) -> String {
        format!("{}:{}", self.ip, self.port)
    }
}

/// How a service's instances are filtered by label (Nacos `selector`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum Selector {
    #[default]
    None,
    /// A label expression, kept verbatim (evaluated by consumers that understand it).
    Label(String),
}

/// Service metadata, created explicitly through the service API (and replicated through Raft).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServiceMeta {
    pub protect_threshold: f32,
    pub selector: Selector,
    pub metadata: BTreeMap<String, String>,
    pub ephemeral: bool,
}

// Protect thresholds are checked to be finite before they are stored (never NaN).
impl Eq for ServiceMeta {}

impl Default for ServiceMeta {
    fn default() -> Self {
        ServiceMeta {
            protect_threshold: 0.0,
            selector: Selector::None,
            metadata: BTreeMap::new(),
            ephemeral: true,
        }
    }
}

/// What a query asks for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Query {
    /// Only instances of these clusters (empty: all).
    pub clusters: Vec<String>,
    pub healthy_only: bool,
}

/// The answer to a query: Nacos's `ServiceInfo` without its transport-specific fields.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Selection {
    pub hosts: Vec<Instance>,
    pub reach_protection_threshold: bool,
}

/// The selection rules of wire reference §2.1: enabled only, cluster filter, `healthyOnly`,
/// then — only when the service has a metadata record — the protect threshold: if the healthy
/// ratio is at or below the threshold, every filtered instance is returned marked healthy.
pub fn select(instances: &[Instance], meta: Option<&ServiceMeta>, query: &Query) -> Selection {
    let mut hosts: Vec<Instance> = instances
        .iter()
        .filter(|i| i.enabled)
        .filter(|i| query.clusters.is_empty() || query.clusters.contains(&i.cluster))
        .filter(|i| !query.healthy_only || i.healthy)
        .cloned()
        .collect();
    let mut reach = false;
    if let Some(meta) = meta {
        if !hosts.is_empty() {
            let healthy = hosts.iter().filter(|i| i.healthy).count() as f64;
            let ratio = healthy / hosts.len() as f64;
            let threshold = f64::from(meta.protect_threshold.max(0.0));
            if ratio <= threshold {
                reach = true;
                for h in &mut hosts {
                    h.healthy = true;
                }
            }
        }
    }
    Selection {
        hosts,
        reach_protection_threshold: reach,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inst(ip: &str, healthy: bool, enabled: bool, cluster: &str) -> Instance {
        Instance {
            healthy,
            enabled,
            cluster: cluster.into(),
            ..Instance::new(ip, 8080)
        }
    }

    #[test]
    fn disabled_instances_are_never_selected_and_clusters_filter() {
        let all = [
            inst("10.0.0.1", true, true, "A"),
            inst("10.0.0.2", true, false, "A"),
            inst("10.0.0.3", false, true, "B"),
        ];
        let s = select(&all, None, &Query::default());
        assert_eq!(s.hosts.len(), 2);
        let q = Query {
            clusters: vec!["B".into()],
            healthy_only: false,
        };
        let s = select(&all, None, &q);
        assert_eq!(s.hosts.len(), 1);
        assert_eq!(s.hosts[0].ip, "10.0.0.3");
        let q = Query {
            clusters: vec![],
            healthy_only: true,
        };
        assert_eq!(select(&all, None, &q).hosts.len(), 1);
    }

    #[test]
    fn protect_threshold_applies_only_with_metadata() {
        let all = [
            inst("10.0.0.1", false, true, "A"),
            inst("10.0.0.2", false, true, "A"),
        ];
        // No metadata record: unhealthy stays unhealthy.
        let s = select(&all, None, &Query::default());
        assert!(!s.reach_protection_threshold);
        assert!(s.hosts.iter().all(|h| !h.healthy));
        // Default threshold 0.0 and every instance unhealthy: all returned as healthy.
        let meta = ServiceMeta::default();
        let s = select(&all, Some(&meta), &Query::default());
        assert!(s.reach_protection_threshold);
        assert!(s.hosts.iter().all(|h| h.healthy));
        // Half healthy with threshold 0.5 fires (ratio <= threshold); 0.4 does not.
        let mixed = [
            inst("10.0.0.1", true, true, "A"),
            inst("10.0.0.2", false, true, "A"),
        ];
        let at = ServiceMeta {
            protect_threshold: 0.5,
            ..ServiceMeta::default()
        };
        assert!(select(&mixed, Some(&at), &Query::default()).reach_protection_threshold);
        let below = ServiceMeta {
            protect_threshold: 0.4,
            ..ServiceMeta::default()
        };
        assert!(!select(&mixed, Some(&below), &Query::default()).reach_protection_threshold);
        // An empty list never triggers protection (0/0).
        assert!(!select(&[], Some(&meta), &Query::default()).reach_protection_threshold);
    }

    #[test]
    fn instance_ids_follow_the_simple_generator() {
        let key = ServiceKey::new("public", "DEFAULT_GROUP", "svc");
        assert_eq!(
            Instance::new("1.2.3.4", 80).instance_id(&key),
            "1.2.3.4#80#DEFAULT#DEFAULT_GROUP@@svc"
        );
    }
}
