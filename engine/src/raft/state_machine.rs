//! The Raft state machine: the CP tables in memory, snapshotted to disk.
//!
//! Applying an entry mutates `CpState`, which the node also reads for local (Nacos-style) reads.
//! A snapshot is an `SnapshotImage`: versioned, framed with a CRC (wire::frame), and carrying a
//! digest of the state it holds. It is validated when it is built, when it is read back from
//! disk on start, and when it is received from a leader, so a corrupted snapshot is refused,
//! never installed (DESIGN §4).
//!
//! Every applied change of a config (its key and new md5, `""` once removed; for a gray item
//! also the clients it may concern) is published on a bounded broadcast channel after the
//! apply, in apply order, for the config listeners (wire reference §2.4). An installed snapshot
//! publishes the md5 differences it made. A receiver that lags behind the channel's capacity
//! gets `Lagged` and must re-check all its keys.

use std::io::Cursor;
use std::sync::{Arc, Mutex, RwLock};

use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{AnyError, EntryPayload, RaftSnapshotBuilder, StorageIOError};
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

use super::command::{CommandResult, Op};
use super::log_store::entry_digest;
use super::type_config::{Entry, LogId, SnapshotMeta, StorageError, StoredMembership, TypeConfig};
use crate::config::listen::{ConfigChange, CONFIG_CHANGES_CAPACITY};
use crate::config::ConfigStore;
use crate::error::{DecodeError, Fatal};
use crate::namespace::NamespaceTable;
use crate::naming::persistent::NamingTable;
use crate::ports::{Disk, DiskFile, RaftObserver};
use crate::wire::frame::{decode_msg, encode_msg};

/// The snapshot format's version: 2 added the naming tables, 3 the namespace table, 4 the gray
/// config table. Other versions are refused.
pub const SNAPSHOT_VERSION: u32 = 4;

/// The replicated CP state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CpState {
    pub last_applied: Option<LogId>,
    pub membership: StoredMembership,
    pub configs: ConfigStore,
    /// Service metadata and persistent instances.
    pub naming: NamingTable,
    /// Custom namespaces.
    pub namespaces: NamespaceTable,
}

impl CpState {
    /// A digest of the data (not of the Raft bookkeeping), equal on converged replicas.
    pub fn digest(&self) -> u64 {
        if self.naming.is_empty() && self.namespaces.is_empty() {
            return self.configs.digest();
        }
        let mut h = crate::digest::Fnv64::default();
        h.write_u64(self.configs.digest());
        h.write_u64(self.naming.digest());
        if !self.namespaces.is_empty() {
            h.write_u64(self.namespaces.digest());
        }
        h.finish()
    }

    /// Applies one entry; the config changes listeners must hear go to `changes`.
    fn apply_entry(&mut self, entry: &Entry, changes: &mut Vec<ConfigChange>) -> CommandResult {
        self.last_applied = Some(entry.log_id);
        let index = entry.log_id.index;
        match &entry.payload {
            EntryPayload::Blank => CommandResult::None,
            EntryPayload::Membership(m) => {
                self.membership = StoredMembership::new(Some(entry.log_id), m.clone());
                CommandResult::None
            }
            EntryPayload::Normal(cmd) => match &cmd.op {
                Op::Config(c) => {
                    let (applied, change) = self.configs.apply_with_change(index, cmd.now_ms, c);
                    changes.extend(change);
                    CommandResult::Config(applied)
                }
                Op::Batch(batch) => CommandResult::Batch(
                    batch
                        .iter()
                        .map(|b| {
                            let (applied, change) =
                                self.configs.apply_with_change(index, b.now_ms, &b.command);
                            changes.extend(change);
                            applied
                        })
                        .collect(),
                ),
                Op::PurgeHistory { retention_ms } => {
                    let rows = self.configs.purge_history(cmd.now_ms, *retention_ms);
                    CommandResult::Purged { rows: rows as u64 }
                }
                Op::Naming(n) => CommandResult::Naming(self.naming.apply(n)),
                Op::Namespace(n) => CommandResult::Namespace(self.namespaces.apply(cmd.now_ms, n)),
            },
        }
    }
}

/// What a snapshot file and a snapshot transfer contain.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SnapshotImage {
    pub version: u32,
    pub meta: SnapshotMeta,
    pub state: CpState,
    pub state_digest: u64,
}

impl SnapshotImage {
    /// Encodes the image as one framed, checksummed byte string.
    pub fn encode(&self) -> Vec<u8> {
        encode_msg(self)
    }

    /// Decodes and validates an image: frame checksum, version, and the state digest.
    pub fn decode(bytes: &[u8]) -> Result<SnapshotImage, DecodeError> {
        let (image, used): (SnapshotImage, usize) = decode_msg(bytes)?;
        if used != bytes.len() {
            return Err(DecodeError::Body(format!(
                "{} trailing bytes",
                bytes.len() - used
            )));
        }
        if image.version != SNAPSHOT_VERSION {
            return Err(DecodeError::Body(format!(
                "snapshot version {}",
                image.version
            )));
        }
        if image.state.digest() != image.state_digest {
            return Err(DecodeError::Body("state digest mismatch".into()));
        }
        if image.state.last_applied != image.meta.last_log_id {
            return Err(DecodeError::Body(
                "snapshot meta does not match its state".into(),
            ));
        }
        Ok(image)
    }
}

/// The latest snapshot: its meta and its encoded image.
type CurrentSnapshot = (SnapshotMeta, Vec<u8>);

/// The state machine store handed to openraft.
#[derive(Clone)]
pub struct StateMachineStore {
    node: u64,
    state: Arc<RwLock<CpState>>,
    disk: Arc<dyn Disk>,
    current: Arc<Mutex<Option<CurrentSnapshot>>>,
    observer: Option<Arc<dyn RaftObserver>>,
    snapshot_seq: Arc<Mutex<u64>>,
    config_changes: broadcast::Sender<ConfigChange>,
}

fn sm_err(e: impl std::fmt::Display) -> StorageError {
    StorageError::from(StorageIOError::write_state_machine(AnyError::error(
        e.to_string(),
    )))
}

impl StateMachineStore {
    /// Opens the store: loads and validates the snapshot on disk, if any.
    pub fn open(
        node: u64,
        disk: Arc<dyn Disk>,
        observer: Option<Arc<dyn RaftObserver>>,
    ) -> Result<Self, Fatal> {
        let mut state = CpState::default();
        let mut current = None;
        if let Some(bytes) = disk.read(DiskFile::Snapshot)? {
            let image = SnapshotImage::decode(&bytes).map_err(|e| Fatal::Corrupt {
                what: "raft snapshot",
                detail: e.to_string(),
            })?;
            state = image.state;
            crate::coverage::hit(crate::coverage::Mark::SnapshotLoadedOnStart);
            current = Some((image.meta, bytes));
        }
        Ok(StateMachineStore {
            node,
            state: Arc::new(RwLock::new(state)),
            disk,
            current: Arc::new(Mutex::new(current)),
            observer,
            snapshot_seq: Arc::new(Mutex::new(0)),
            config_changes: broadcast::channel(CONFIG_CHANGES_CAPACITY).0,
        })
    }

    /// The sender of applied config changes; subscribe to it to hear them.
    pub fn config_changes(&self) -> broadcast::Sender<ConfigChange> {
        self.config_changes.clone()
    }

    /// Publishes changes to the listeners. Having no listener is normal.
    fn publish_changes(&self, changes: Vec<ConfigChange>) {
        for change in changes {
            let _ = self.config_changes.send(change);
        }
    }

    /// The shared state, for local reads.
    pub fn state(&self) -> Arc<RwLock<CpState>> {
        self.state.clone()
    }

    // The error type is openraft's; its size is not ours to change.
    #[allow(clippy::result_large_err)]
    fn build(&self) -> Result<Snapshot<TypeConfig>, StorageError> {
        let state = self.state.read().expect("state lock poisoned").clone();
        let seq = {
            let mut s = self.snapshot_seq.lock().expect("seq lock poisoned");
            *s += 1;
            *s
        };
        let last = state.last_applied;
        let snapshot_id = match last {
            Some(l) => format!(
                "{}-{}-{}-{}",
                l.leader_id.term, l.leader_id.node_id, l.index, seq
            ),
            None => format!("empty-{seq}"),
        };
        let meta = SnapshotMeta {
            last_log_id: last,
            last_membership: state.membership.clone(),
            snapshot_id,
        };
        let image = SnapshotImage {
            version: SNAPSHOT_VERSION,
            meta: meta.clone(),
            state_digest: state.digest(),
            state,
        };
        let bytes = image.encode();
        // Validate what was built before it replaces the previous snapshot.
        SnapshotImage::decode(&bytes).map_err(sm_err)?;
        crate::coverage::hit(crate::coverage::Mark::SnapshotBuilt);
        self.disk
            .replace(DiskFile::Snapshot, &bytes)
            .map_err(sm_err)?;
        *self.current.lock().expect("snapshot lock poisoned") = Some((meta.clone(), bytes.clone()));
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(bytes)),
        })
    }
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachineStore {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError> {
        self.build()
    }
}

impl RaftStateMachine<TypeConfig> for StateMachineStore {
    type SnapshotBuilder = StateMachineStore;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), StorageError> {
        let s = self.state.read().expect("state lock poisoned");
        Ok((s.last_applied, s.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<CommandResult>, StorageError>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        let mut out = Vec::new();
        let mut changes = Vec::new();
        {
            let mut state = self.state.write().expect("state lock poisoned");
            for entry in entries {
                out.push(state.apply_entry(&entry, &mut changes));
                if let Some(obs) = &self.observer {
                    obs.on_apply(self.node, &entry_digest(&entry));
                }
            }
        }
        // Published once the state holds them, so a listener that re-reads sees them.
        self.publish_changes(changes);
        Ok(out)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError> {
        let bytes = snapshot.into_inner();
        let image = SnapshotImage::decode(&bytes).map_err(sm_err)?;
        if image.meta.last_log_id != meta.last_log_id {
            return Err(sm_err(
                "received snapshot does not match its announced meta",
            ));
        }
        self.disk
            .replace(DiskFile::Snapshot, &bytes)
            .map_err(sm_err)?;
        let digest = image.state_digest;
        let index = image.meta.last_log_id.map(|l| l.index).unwrap_or(0);
        let changes = {
            let mut state = self.state.write().expect("state lock poisoned");
            let changes = state.configs.md5_changes(&image.state.configs);
            *state = image.state;
            changes
        };
        self.publish_changes(changes);
        *self.current.lock().expect("snapshot lock poisoned") = Some((meta.clone(), bytes));
        crate::coverage::hit(crate::coverage::Mark::SnapshotInstalled);
        if let Some(obs) = &self.observer {
            obs.on_snapshot_installed(self.node, index, digest);
        }
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError> {
        let cur = self.current.lock().expect("snapshot lock poisoned");
        Ok(cur.as_ref().map(|(meta, bytes)| Snapshot {
            meta: meta.clone(),
            snapshot: Box::new(Cursor::new(bytes.clone())),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ConfigApplied;
    use crate::naming::persistent::{NamingApplied, NamingCommand};
    use crate::naming::{Instance, ServiceKey};
    use crate::raft::command::Command;
    use openraft::{CommittedLeaderId, LogId as RaftLogId};

    fn entry(index: u64, op: Op) -> Entry {
        Entry {
            log_id: RaftLogId::new(CommittedLeaderId::new(1, 1), index),
            payload: EntryPayload::Normal(Command { now_ms: 7, op }),
        }
    }

    /// Applies one entry that carries at most one config change.
    fn apply1(state: &mut CpState, e: &Entry) -> (CommandResult, Option<ConfigChange>) {
        let mut changes = Vec::new();
        let result = state.apply_entry(e, &mut changes);
        assert!(changes.len() <= 1);
        (result, changes.pop())
    }

    #[test]
    fn a_batch_applies_each_command_in_order_at_its_entry_index() {
        use crate::config::{ConfigCommand, ConfigKey, PublishConfig};
        use crate::raft::command::BatchedConfig;
        let a = ConfigKey::new("", "DEFAULT_GROUP", "a");
        let b = ConfigKey::new("", "DEFAULT_GROUP", "b");
        let batched = |now_ms, key: &ConfigKey, content: &str, cas: Option<&str>| {
            let mut p = PublishConfig::new(key.clone(), content);
            p.cas_md5 = cas.map(str::to_string);
            BatchedConfig {
                now_ms,
                command: ConfigCommand::Publish(p),
            }
        };
        let mut state = CpState::default();
        apply1(
            &mut state,
            &entry(4, Op::Config(batched(0, &b, "zero", None).command)),
        );
        let mut changes = Vec::new();
        let result = state.apply_entry(
            &entry(
                5,
                Op::Batch(vec![
                    batched(100, &a, "one", None),
                    batched(200, &b, "two", Some("wrong md5")),
                ]),
            ),
            &mut changes,
        );
        assert_eq!(
            result,
            CommandResult::Batch(vec![
                ConfigApplied::Published {
                    md5: crate::config::md5_hex("one")
                },
                ConfigApplied::CasMismatch {
                    current_md5: crate::config::md5_hex("zero")
                },
            ])
        );
        assert_eq!(changes.len(), 1, "only the applied publish is a change");
        let item = state.configs.get(&a).expect("published");
        assert_eq!((item.revision, item.modified_ms), (5, 100));
        assert_eq!(state.configs.get(&b).map(|i| i.revision), Some(4));
        // Applying the same entries elsewhere gives the same state.
        let mut other = CpState::default();
        apply1(
            &mut other,
            &entry(4, Op::Config(batched(0, &b, "zero", None).command)),
        );
        let again = entry(
            5,
            Op::Batch(vec![
                batched(100, &a, "one", None),
                batched(200, &b, "two", Some("wrong md5")),
            ]),
        );
        other.apply_entry(&again, &mut Vec::new());
        assert_eq!(other.digest(), state.digest());
    }

    #[test]
    fn naming_tables_apply_and_survive_a_snapshot_round_trip() {
        let mut state = CpState::default();
        let before = state.digest();
        let key = ServiceKey::new("public", "DEFAULT_GROUP", "orders");
        let register = Op::Naming(NamingCommand::RegisterPersistent {
            service: key.clone(),
            instance: Instance {
                ephemeral: false,
                ..Instance::new("10.0.0.9", 8080)
            },
        });
        assert_eq!(
            apply1(&mut state, &entry(1, register)),
            (CommandResult::Naming(NamingApplied::Done), None)
        );
        assert_ne!(
            state.digest(),
            before,
            "the naming tables are part of the digest"
        );
        let back = SnapshotImage::decode(&image_of(&state).encode()).expect("decodes");
        assert_eq!(back.state, state);
        assert_eq!(back.state.naming.instances(&key).len(), 1);
    }

    fn image_of(state: &CpState) -> SnapshotImage {
        SnapshotImage {
            version: SNAPSHOT_VERSION,
            meta: SnapshotMeta {
                last_log_id: state.last_applied,
                last_membership: state.membership.clone(),
                snapshot_id: "t".into(),
            },
            state_digest: state.digest(),
            state: state.clone(),
        }
    }

    #[test]
    fn gray_configs_apply_report_their_audience_and_survive_a_snapshot_round_trip() {
        use crate::config::listen::GrayAudience;
        use crate::config::{
            ConfigCommand, ConfigKey, GrayName, GrayRule, PublishConfig, TagQuery,
        };
        let key = ConfigKey::new("", "DEFAULT_GROUP", "app.yaml");
        let mut state = CpState::default();
        let publish = |content: &str| PublishConfig::new(key.clone(), content);
        apply1(
            &mut state,
            &entry(1, Op::Config(ConfigCommand::Publish(publish("main")))),
        );
        let main_only = state.digest();
        let (result, change) = apply1(
            &mut state,
            &entry(
                2,
                Op::Config(ConfigCommand::publish_with(
                    publish("beta"),
                    Some("10.0.0.1"),
                    None,
                )),
            ),
        );
        assert_eq!(
            result,
            CommandResult::Config(ConfigApplied::Published {
                md5: crate::config::md5_hex("beta")
            })
        );
        assert_eq!(
            change.and_then(|c| c.gray),
            Some(GrayAudience::Beta {
                ips: vec!["10.0.0.1".into()]
            })
        );
        let (_, change) = apply1(
            &mut state,
            &entry(
                3,
                Op::Config(ConfigCommand::publish_with(
                    publish("blue"),
                    None,
                    Some("blue"),
                )),
            ),
        );
        assert_eq!(
            change.and_then(|c| c.gray),
            Some(GrayAudience::Tag { tag: "blue".into() })
        );
        assert_ne!(state.digest(), main_only, "grays are part of the digest");
        let back = SnapshotImage::decode(&image_of(&state).encode()).expect("decodes");
        assert_eq!(back.state, state);
        let configs = &back.state.configs;
        assert_eq!(configs.gray_count(), 2);
        assert!(configs.gray(&key, &GrayName::Beta).is_some());
        let served = configs
            .effective(&key, "10.0.0.1", TagQuery::None)
            .expect("beta");
        assert!(matches!(served.gray, Some(GrayRule::Beta { .. })));
        // A snapshot of another version is refused.
        let mut old = image_of(&state);
        old.version = SNAPSHOT_VERSION - 1;
        assert!(SnapshotImage::decode(&old.encode()).is_err());
        // Stopping the beta tells its IPs.
        let (_, change) = apply1(
            &mut state,
            &entry(4, Op::Config(ConfigCommand::stop_beta(key.clone(), "", ""))),
        );
        assert_eq!(change.map(|c| c.md5), Some(String::new()));
    }
}
