//! The CP naming tables of the Raft state machine (DESIGN §2): service metadata and persistent
//! (`ephemeral=false`) instances, with the rules and messages of wire reference §2.1–2.2.
//! Pure and deterministic like the config table.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::digest::Fnv64;
use crate::naming::{Instance, ServiceKey, ServiceMeta};

/// Largest accepted instance weight (HTTP v1 range check).
pub const WEIGHT_MAX: f64 = 10_000.0;

/// A change of the CP naming tables.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum NamingCommand {
    /// `POST /v1/ns/service`: creates a (persistent) service with metadata.
    CreateService { key: ServiceKey, meta: ServiceMeta },
    /// `PUT /v1/ns/service`: replaces threshold, selector and metadata; keeps `ephemeral`. A
    /// service without a record is refused unless `meta.ephemeral` says that it exists through
    /// ephemeral instances, which then get their first metadata record.
    UpdateService { key: ServiceKey, meta: ServiceMeta },
    /// `DELETE /v1/ns/service`: only an empty service.
    DeleteService { key: ServiceKey },
    /// Registers (or replaces) a persistent instance, keyed by ip, port and cluster.
    RegisterPersistent {
        service: ServiceKey,
        instance: Instance,
    },
    /// Removes the persistent instances of `ip:port` in a service, whatever their cluster.
    DeregisterPersistent {
        service: ServiceKey,
        ip: String,
        port: u16,
    },
}

/// What applying a naming command did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum NamingApplied {
    Done,
    /// Refused with Nacos's message (an HTTP 400).
    Refused(String),
}

/// Service metadata and persistent instances.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NamingTable {
    pub services: BTreeMap<ServiceKey, ServiceMeta>,
    /// Persistent instances per service, keyed by `ip:port:cluster`.
    pub instances: BTreeMap<ServiceKey, BTreeMap<String, Instance>>,
}

fn instance_key(i: &Instance) -> String {
    format!("{}:{}:{}", i.ip, i.port, i.cluster)
}

impl NamingTable {
    /// True when nothing was ever stored.
    pub fn is_empty(&self) -> bool {
        self.services.is_empty() && self.instances.is_empty()
    }

    /// Applies one command.
    pub fn apply(&mut self, cmd: &NamingCommand) -> NamingApplied {
        use NamingApplied::{Done, Refused};
        match cmd {
            NamingCommand::CreateService { key, meta } => {
                if self.services.contains_key(key) {
                    return Refused(format!(
                        "specified service {} already exists!",
                        key.grouped_name()
                    ));
                }
                if !meta.protect_threshold.is_finite() {
                    return Refused("protectThreshold must be a number".into());
                }
                let meta = ServiceMeta {
                    ephemeral: false,
                    ..meta.clone()
                };
                self.services.insert(key.clone(), meta);
                Done
            }
            NamingCommand::UpdateService { key, meta } => {
                if !self.services.contains_key(key) && meta.ephemeral {
                    // A service created by ephemeral registrations gets its first metadata
                    // record (the caller checked that the service has instances).
                    if !meta.protect_threshold.is_finite() {
                        return Refused("protectThreshold must be a number".into());
                    }
                    self.services.insert(key.clone(), meta.clone());
                    return Done;
                }
                let Some(current) = self.services.get_mut(key) else {
                    return Refused(format!("service {} not found!", key.grouped_name()));
                };
                if !meta.protect_threshold.is_finite() {
                    return Refused("protectThreshold must be a number".into());
                }
                let ephemeral = current.ephemeral;
                *current = ServiceMeta {
                    ephemeral,
                    ..meta.clone()
                };
                Done
            }
            NamingCommand::DeleteService { key } => {
                if !self.services.contains_key(key) {
                    return Refused(format!("service {} not found!", key.grouped_name()));
                }
                if self.instances.get(key).is_some_and(|m| !m.is_empty()) {
                    return Refused(format!(
                        "Service {} is not empty, can't be delete. Please unregister instance first",
                        key.grouped_name()
                    ));
                }
                self.services.remove(key);
                self.instances.remove(key);
                Done
            }
            NamingCommand::RegisterPersistent { service, instance } => {
                if !(0.0..=WEIGHT_MAX).contains(&instance.weight) {
                    return Refused(
                        "instance format invalid: The weights range from 0.0 to 10000.0".into(),
                    );
                }
                if self.services.get(service).is_some_and(|m| m.ephemeral) {
                    return Refused(format!(
                        "Current service {} is ephemeral service, can't register persistent instance.",
                        service.grouped_name()
                    ));
                }
                let stored = Instance {
                    ephemeral: false,
                    ..instance.clone()
                };
                self.instances
                    .entry(service.clone())
                    .or_default()
                    .insert(instance_key(&stored), stored);
                Done
            }
            NamingCommand::DeregisterPersistent { service, ip, port } => {
                if let Some(m) = self.instances.get_mut(service) {
                    m.retain(|_, i| !(i.ip == *ip && i.port == *port));
                    if m.is_empty() {
                        self.instances.remove(service);
                    }
                }
                Done // an unknown instance is silently fine (Nacos)
            }
        }
    }

    /// The persistent instances of a service.
    pub fn instances(&self, service: &ServiceKey) -> Vec<Instance> {
        self.instances
            .get(service)
            .map(|m| m.values().cloned().collect())
            .unwrap_or_default()
    }

    /// A digest of the tables, equal on converged replicas.
    pub fn digest(&self) -> u64 {
        let mut h = Fnv64::default();
        h.write(&postcard::to_allocvec(self).unwrap_or_default());
        h.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> ServiceKey {
        ServiceKey::new("public", "DEFAULT_GROUP", "orders")
    }

    fn persistent(ip: &str, cluster: &str) -> Instance {
        Instance {
            ephemeral: false,
            cluster: cluster.into(),
            ..Instance::new(ip, 8080)
        }
    }

    #[test]
    fn services_are_created_once_updated_and_deleted_only_when_empty() {
        let mut t = NamingTable::default();
        let meta = ServiceMeta {
            protect_threshold: 0.5,
            ..ServiceMeta::default()
        };
        let create = NamingCommand::CreateService {
            key: key(),
            meta: meta.clone(),
        };
        assert_eq!(t.apply(&create), NamingApplied::Done);
        assert!(
            !t.services[&key()].ephemeral,
            "created services are persistent"
        );
        assert_eq!(
            t.apply(&create),
            NamingApplied::Refused(
                "specified service DEFAULT_GROUP@@orders already exists!".into()
            )
        );
        let reg = NamingCommand::RegisterPersistent {
            service: key(),
            instance: persistent("10.0.0.9", "A"),
        };
        assert_eq!(t.apply(&reg), NamingApplied::Done);
        let del = NamingCommand::DeleteService { key: key() };
        assert!(matches!(t.apply(&del), NamingApplied::Refused(m) if m.contains("is not empty")));
        let dereg = NamingCommand::DeregisterPersistent {
            service: key(),
            ip: "10.0.0.9".into(),
            port: 8080,
        };
        assert_eq!(t.apply(&dereg), NamingApplied::Done);
        assert_eq!(t.apply(&del), NamingApplied::Done);
        assert!(t.is_empty());
        let update = NamingCommand::UpdateService {
            key: key(),
            meta: ServiceMeta {
                ephemeral: false,
                ..meta.clone()
            },
        };
        assert_eq!(
            t.apply(&update),
            NamingApplied::Refused("service DEFAULT_GROUP@@orders not found!".into())
        );
        // A service that exists through ephemeral instances gets its first record.
        let first = NamingCommand::UpdateService { key: key(), meta };
        assert_eq!(t.apply(&first), NamingApplied::Done);
        assert!(t.services[&key()].ephemeral);
        assert_eq!(t.services[&key()].protect_threshold, 0.5);
    }

    #[test]
    fn persistent_instances_are_keyed_by_ip_port_cluster_and_checked() {
        let mut t = NamingTable::default();
        for c in ["A", "B", "A"] {
            let cmd = NamingCommand::RegisterPersistent {
                service: key(),
                instance: persistent("10.0.0.9", c),
            };
            assert_eq!(t.apply(&cmd), NamingApplied::Done);
        }
        assert_eq!(t.instances(&key()).len(), 2);
        let heavy = Instance {
            weight: 10_000.5,
            ..persistent("10.0.0.8", "A")
        };
        let cmd = NamingCommand::RegisterPersistent {
            service: key(),
            instance: heavy,
        };
        assert!(matches!(t.apply(&cmd), NamingApplied::Refused(m) if m.contains("weights range")));
        // Deregistration removes the ip:port in every cluster.
        let dereg = NamingCommand::DeregisterPersistent {
            service: key(),
            ip: "10.0.0.9".into(),
            port: 8080,
        };
        t.apply(&dereg);
        assert!(t.instances(&key()).is_empty());
    }

    #[test]
    fn an_ephemeral_service_refuses_persistent_instances() {
        let mut t = NamingTable::default();
        t.services.insert(key(), ServiceMeta::default()); // ephemeral, as auto-created ones are
        let cmd = NamingCommand::RegisterPersistent {
            service: key(),
            instance: persistent("10.0.0.9", "A"),
        };
        assert_eq!(
            t.apply(&cmd),
            NamingApplied::Refused(
                "Current service DEFAULT_GROUP@@orders is ephemeral service, can't register persistent instance.".into()
            )
        );
    }
}
