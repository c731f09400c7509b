//! The config table: the CP state machine's data for Nacos configuration (wire reference §1.3,
//! §2.4). Pure and deterministic: time arrives as `now_ms`, revisions are Raft log indexes.
//!
//! - Publish creates or overwrites; a CAS publish (`cas_md5`) of an existing config whose md5
//!   differs changes nothing, and a CAS publish of an absent config inserts it (Nacos).
//! - Every change appends a history row (`I`, `U`, `D`), bounded per key.
//! - The md5 is the lowercase hex MD5 of the UTF-8 content, as Nacos computes it.
//! - Gray items (beta, tag) live in their own table beside the main items (`gray.rs`).
//! - Every change that listeners may need to hear is reported with the result of its apply
//!   (`apply_with_change`), main and gray alike.

pub mod gray;
pub mod listen;
pub mod validate;

use std::collections::{BTreeMap, VecDeque};

use md5::{Digest, Md5};
use serde::{Deserialize, Serialize};

use crate::digest::Fnv64;
pub use gray::{beta_contains, Effective, EffectiveConfig, GrayItem, GrayName, GrayRule, TagQuery};
use listen::ConfigChange;

/// History rows kept per config (the oldest are dropped first).
pub const HISTORY_PER_KEY_MAX: usize = 64;
/// Largest page a search returns.
pub const PAGE_SIZE_MAX: u64 = 500;
/// Largest content accepted (Nacos `maxContent`).
pub const CONTENT_BYTES_MAX: usize = 10 * 1024 * 1024;

/// The identity of a config: namespace (tenant), group, dataId.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ConfigKey {
    pub tenant: String,
    pub group: String,
    pub data_id: String,
}

impl ConfigKey {
    /// A key from its parts.
    pub fn new(tenant: &str, group: &str, data_id: &str) -> ConfigKey {
        ConfigKey {
            tenant: tenant.into(),
            group: group.into(),
            data_id: data_id.into(),
        }
    }

    /// Nacos's `groupKey`: `dataId+group(+tenant)`, with `+` and `%` escaped.
    pub fn group_key(&self) -> String {
        let esc = |s: &str| s.replace('%', "%25").replace('+', "%2B");
        let mut k = format!("{}+{}", esc(&self.data_id), esc(&self.group));
        if !self.tenant.is_empty() {
            k.push('+');
            k.push_str(&esc(&self.tenant));
        }
        k
    }
}

/// One stored config.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigItem {
    pub id: u64,
    pub key: ConfigKey,
    pub content: String,
    pub md5: String,
    pub config_type: String,
    pub desc: String,
    pub tags: String,
    pub app_name: String,
    pub encrypted_data_key: String,
    pub src_user: String,
    pub src_ip: String,
    pub created_ms: u64,
    pub modified_ms: u64,
    /// The Raft log index of the last change.
    pub revision: u64,
}

/// The kind of a history row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum OpType {
    Insert,
    Update,
    Delete,
}

impl OpType {
    /// Nacos's one-letter code.
    pub fn as_str(self) -> &'static str {
        match self {
            OpType::Insert => "I",
            OpType::Update => "U",
            OpType::Delete => "D",
        }
    }
}

/// One history row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryEntry {
    pub nid: u64,
    pub id: u64,
    pub key: ConfigKey,
    pub content: String,
    pub md5: String,
    pub app_name: String,
    pub src_user: String,
    pub src_ip: String,
    pub op_type: OpType,
    pub encrypted_data_key: String,
    pub created_ms: u64,
    pub modified_ms: u64,
}

/// A publish request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublishConfig {
    pub key: ConfigKey,
    pub content: String,
    pub cas_md5: Option<String>,
    pub config_type: String,
    pub desc: String,
    pub tags: String,
    pub app_name: String,
    pub encrypted_data_key: String,
    pub src_user: String,
    pub src_ip: String,
}

impl PublishConfig {
    /// A plain publish of `content` under `key`: no CAS, type `text`, no metadata.
    pub fn new(key: ConfigKey, content: impl Into<String>) -> PublishConfig {
        PublishConfig {
            key,
            content: content.into(),
            cas_md5: None,
            config_type: String::new(),
            desc: String::new(),
            tags: String::new(),
            app_name: String::new(),
            encrypted_data_key: String::new(),
            src_user: String::new(),
            src_ip: String::new(),
        }
    }
}

/// A replicated config command. Variants are encoded by their index in the Raft log: new ones
/// go at the end.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ConfigCommand {
    Publish(PublishConfig),
    Remove {
        key: ConfigKey,
        src_user: String,
        src_ip: String,
    },
    /// Writes the gray item of `rule` (beta or tag); the main item is untouched. CAS compares
    /// with that gray item's md5. A blank rule makes this a plain `Publish` (Nacos's dispatch).
    PublishGray {
        rule: GrayRule,
        publish: PublishConfig,
    },
    /// Removes one gray item: a remove with a tag, or "stop beta". A blank tag makes this a
    /// plain `Remove` (Nacos's dispatch).
    RemoveGray {
        key: ConfigKey,
        name: GrayName,
        src_user: String,
        src_ip: String,
    },
}

impl ConfigCommand {
    /// The command a Nacos publish makes: non-blank `betaIps` writes the beta item (a tag is
    /// then ignored), else a non-blank `tag` writes that tag's item, else the main item.
    pub fn publish_with(
        publish: PublishConfig,
        beta_ips: Option<&str>,
        tag: Option<&str>,
    ) -> ConfigCommand {
        match GrayRule::from_publish(beta_ips, tag) {
            Some(rule) => ConfigCommand::PublishGray { rule, publish },
            None => ConfigCommand::Publish(publish),
        }
    }

    /// The command a Nacos delete makes: with a non-blank `tag` it removes that tag's item
    /// only, else the main item (gray items stay).
    pub fn remove_with(
        key: ConfigKey,
        tag: Option<&str>,
        src_user: impl Into<String>,
        src_ip: impl Into<String>,
    ) -> ConfigCommand {
        let (src_user, src_ip) = (src_user.into(), src_ip.into());
        match tag.filter(|t| !gray::is_blank(t)) {
            Some(tag) => ConfigCommand::RemoveGray {
                key,
                name: GrayName::Tag(tag.into()),
                src_user,
                src_ip,
            },
            None => ConfigCommand::Remove {
                key,
                src_user,
                src_ip,
            },
        }
    }

    /// Nacos's "stop beta" (`DELETE /v1/cs/configs?beta=true`): removes the beta item.
    pub fn stop_beta(
        key: ConfigKey,
        src_user: impl Into<String>,
        src_ip: impl Into<String>,
    ) -> ConfigCommand {
        ConfigCommand::RemoveGray {
            key,
            name: GrayName::Beta,
            src_user: src_user.into(),
            src_ip: src_ip.into(),
        }
    }

    /// An estimate of the command's encoded size for batching decisions: its potentially
    /// large strings plus a fixed allowance for the rest.
    pub fn approx_bytes(&self) -> usize {
        let publish = |p: &PublishConfig| {
            p.content.len() + p.desc.len() + p.tags.len() + p.encrypted_data_key.len() + 512
        };
        match self {
            ConfigCommand::Publish(p) => publish(p),
            ConfigCommand::PublishGray { rule, publish: p } => {
                let rule_bytes = match rule {
                    GrayRule::Beta { ips } => ips.len(),
                    GrayRule::Tag { tag } => tag.len(),
                };
                publish(p) + rule_bytes
            }
            ConfigCommand::Remove { .. } | ConfigCommand::RemoveGray { .. } => 256,
        }
    }
}

/// What applying a config command did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ConfigApplied {
    Published { md5: String },
    CasMismatch { current_md5: String },
    Removed { existed: bool },
}

/// Search mode of the config list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SearchMode {
    /// Empty fields match anything, others match exactly.
    Accurate,
    /// `*` is a wildcard; empty matches anything.
    Blur,
}

/// A config search.
#[derive(Debug, Clone)]
pub struct SearchQuery {
    pub tenant: String,
    pub data_id: String,
    pub group: String,
    pub app_name: Option<String>,
    pub mode: SearchMode,
    pub page_no: u64,
    pub page_size: u64,
}

/// One page of results (Nacos `Page`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<T> {
    pub total_count: u64,
    pub page_number: u64,
    pub pages_available: u64,
    pub page_items: Vec<T>,
}

/// The config table.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigStore {
    items: BTreeMap<ConfigKey, ConfigItem>,
    history: BTreeMap<ConfigKey, VecDeque<HistoryEntry>>,
    next_id: u64,
    next_nid: u64,
    /// Gray items (beta, tags) per config; never an empty inner map.
    grays: BTreeMap<ConfigKey, BTreeMap<GrayName, GrayItem>>,
    next_gray_id: u64,
}

/// Lowercase hex MD5 of the UTF-8 bytes of `content`.
pub fn md5_hex(content: &str) -> String {
    hex::encode(Md5::digest(content.as_bytes()))
}

fn paginate<T: Clone>(all: Vec<T>, page_no: u64, page_size: u64) -> Page<T> {
    let size = page_size.clamp(1, PAGE_SIZE_MAX);
    let page = page_no.max(1);
    let total = all.len() as u64;
    let start = ((page - 1) * size).min(total) as usize;
    let end = (start as u64 + size).min(total) as usize;
    Page {
        total_count: total,
        page_number: page,
        pages_available: total.div_ceil(size),
        page_items: all[start..end].to_vec(),
    }
}

/// `*`-wildcard match, as Nacos's blur search (SQL LIKE with `*` as `%`).
fn wildcard(pattern: &str, s: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == s;
    }
    let mut rest = s;
    for (i, part) in parts.iter().enumerate() {
        if i == 0 {
            let Some(r) = rest.strip_prefix(part) else {
                return false;
            };
            rest = r;
        } else if i == parts.len() - 1 {
            return rest.ends_with(part);
        } else if let Some(at) = rest.find(part) {
            rest = &rest[at + part.len()..];
        } else {
            return false;
        }
    }
    true
}

impl ConfigStore {
    /// An empty table.
    pub fn new() -> ConfigStore {
        ConfigStore::default()
    }

    /// Applies one command at log index `revision`.
    pub fn apply(&mut self, revision: u64, now_ms: u64, cmd: &ConfigCommand) -> ConfigApplied {
        self.apply_with_change(revision, now_ms, cmd).0
    }

    /// Applies one command at log index `revision`; also the change listeners must hear, if any
    /// (a main change, or a gray change with the clients it may concern).
    pub fn apply_with_change(
        &mut self,
        revision: u64,
        now_ms: u64,
        cmd: &ConfigCommand,
    ) -> (ConfigApplied, Option<ConfigChange>) {
        match cmd {
            ConfigCommand::Publish(p) => self.publish(revision, now_ms, p),
            ConfigCommand::PublishGray { rule, publish } if rule.is_blank() => {
                self.publish(revision, now_ms, publish)
            }
            ConfigCommand::PublishGray { rule, publish } => {
                self.publish_gray(revision, now_ms, rule, publish)
            }
            ConfigCommand::Remove {
                key,
                src_user,
                src_ip,
            } => self.remove(now_ms, key, src_user, src_ip),
            ConfigCommand::RemoveGray {
                key,
                name: GrayName::Tag(tag),
                src_user,
                src_ip,
            } if gray::is_blank(tag) => self.remove(now_ms, key, src_user, src_ip),
            ConfigCommand::RemoveGray { key, name, .. } => self.remove_gray(key, name),
        }
    }

    fn publish(
        &mut self,
        revision: u64,
        now_ms: u64,
        p: &PublishConfig,
    ) -> (ConfigApplied, Option<ConfigChange>) {
        let existing = self.items.get(&p.key);
        if let (Some(cas), Some(cur)) = (&p.cas_md5, existing) {
            if *cas != cur.md5 {
                let current_md5 = cur.md5.clone();
                return (ConfigApplied::CasMismatch { current_md5 }, None);
            }
        }
        let (id, created_ms, op) = match existing {
            Some(cur) => (cur.id, cur.created_ms, OpType::Update),
            None => {
                self.next_id += 1;
                (self.next_id, now_ms, OpType::Insert)
            }
        };
        let item = Self::item_of(p, id, created_ms, now_ms, revision);
        let md5 = item.md5.clone();
        self.record(&item, op, now_ms);
        self.items.insert(p.key.clone(), item);
        let change = ConfigChange {
            key: p.key.clone(),
            md5: md5.clone(),
            gray: None,
        };
        (ConfigApplied::Published { md5 }, Some(change))
    }

    /// The item a publish stores.
    fn item_of(
        p: &PublishConfig,
        id: u64,
        created_ms: u64,
        now_ms: u64,
        revision: u64,
    ) -> ConfigItem {
        ConfigItem {
            id,
            key: p.key.clone(),
            content: p.content.clone(),
            md5: md5_hex(&p.content),
            config_type: if p.config_type.is_empty() {
                "text".into()
            } else {
                p.config_type.clone()
            },
            desc: p.desc.clone(),
            tags: p.tags.clone(),
            app_name: p.app_name.clone(),
            encrypted_data_key: p.encrypted_data_key.clone(),
            src_user: p.src_user.clone(),
            src_ip: p.src_ip.clone(),
            created_ms,
            modified_ms: now_ms,
            revision,
        }
    }

    fn remove(
        &mut self,
        now_ms: u64,
        key: &ConfigKey,
        src_user: &str,
        src_ip: &str,
    ) -> (ConfigApplied, Option<ConfigChange>) {
        let Some(mut item) = self.items.remove(key) else {
            return (ConfigApplied::Removed { existed: false }, None);
        };
        item.src_user = src_user.into();
        item.src_ip = src_ip.into();
        self.record(&item, OpType::Delete, now_ms);
        let change = ConfigChange {
            key: key.clone(),
            md5: String::new(),
            gray: None,
        };
        (ConfigApplied::Removed { existed: true }, Some(change))
    }

    fn record(&mut self, item: &ConfigItem, op_type: OpType, now_ms: u64) {
        self.next_nid += 1;
        let rows = self.history.entry(item.key.clone()).or_default();
        // Grown one row at a time: most keys keep few rows, and a deque's first allocation
        // has room for four (about 1 KiB of row structs per key). Bounded by the row limit.
        if rows.len() == rows.capacity() {
            rows.reserve_exact(1);
        }
        rows.push_back(HistoryEntry {
            nid: self.next_nid,
            id: item.id,
            key: item.key.clone(),
            content: item.content.clone(),
            md5: item.md5.clone(),
            app_name: item.app_name.clone(),
            src_user: item.src_user.clone(),
            src_ip: item.src_ip.clone(),
            op_type,
            encrypted_data_key: item.encrypted_data_key.clone(),
            created_ms: item.created_ms,
            modified_ms: now_ms,
        });
        while rows.len() > HISTORY_PER_KEY_MAX {
            rows.pop_front();
        }
    }

    /// One config.
    pub fn get(&self, key: &ConfigKey) -> Option<&ConfigItem> {
        self.items.get(key)
    }

    /// Number of configs.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether there are no configs.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Number of configs in namespace (tenant) `tenant`.
    pub fn count_in(&self, tenant: &str) -> usize {
        self.items.keys().filter(|k| k.tenant == tenant).count()
    }

    /// Lists configs of one namespace matching the query, ordered by key.
    pub fn search(&self, q: &SearchQuery) -> Page<ConfigItem> {
        let matches = |pattern: &str, value: &str| match q.mode {
            _ if pattern.is_empty() => true,
            SearchMode::Accurate => pattern == value,
            SearchMode::Blur => wildcard(pattern, value),
        };
        let all: Vec<ConfigItem> = self
            .items
            .values()
            .filter(|i| i.key.tenant == q.tenant)
            .filter(|i| matches(&q.data_id, &i.key.data_id) && matches(&q.group, &i.key.group))
            .filter(|i| {
                q.app_name
                    .as_ref()
                    .is_none_or(|a| a.is_empty() || *a == i.app_name)
            })
            .cloned()
            .collect();
        paginate(all, q.page_no, q.page_size)
    }

    /// History of one config, newest first.
    pub fn history_list(
        &self,
        key: &ConfigKey,
        page_no: u64,
        page_size: u64,
    ) -> Page<HistoryEntry> {
        let all: Vec<HistoryEntry> = self
            .history
            .get(key)
            .map(|r| r.iter().rev().cloned().collect())
            .unwrap_or_default();
        paginate(all, page_no, page_size)
    }

    /// One history row by its id.
    pub fn history_get(&self, nid: u64) -> Option<&HistoryEntry> {
        self.history
            .values()
            .flat_map(|r| r.iter())
            .find(|h| h.nid == nid)
    }

    /// The row before `nid` of the same config.
    pub fn history_previous(&self, key: &ConfigKey, nid: u64) -> Option<&HistoryEntry> {
        self.history.get(key)?.iter().rev().find(|h| h.nid < nid)
    }

    /// Drops history rows modified more than `retention_ms` before `now_ms`.
    pub fn purge_history(&mut self, now_ms: u64, retention_ms: u64) -> usize {
        let cutoff = now_ms.saturating_sub(retention_ms);
        let mut dropped = 0;
        for rows in self.history.values_mut() {
            let before = rows.len();
            rows.retain(|h| h.modified_ms >= cutoff);
            dropped += before - rows.len();
        }
        self.history.retain(|_, r| !r.is_empty());
        dropped
    }

    /// A digest of every config's key, md5 and revision, then of every gray item's key, name,
    /// md5, beta IPs and revision; equal on converged replicas.
    pub fn digest(&self) -> u64 {
        let mut h = Fnv64::default();
        for (k, v) in &self.items {
            for part in [&k.tenant, &k.group, &k.data_id, &v.md5] {
                h.write_u64(part.len() as u64);
                h.write(part.as_bytes());
            }
            h.write_u64(v.revision);
        }
        self.digest_grays(&mut h);
        h.finish()
    }

    /// Checks the table's invariants (O(n): tests and debug builds).
    pub fn check_invariants(&self) {
        for (k, v) in &self.items {
            assert_eq!(*k, v.key, "item stored under another key");
            debug_assert_eq!(v.md5, md5_hex(&v.content), "md5 does not match content");
            assert!(v.id <= self.next_id, "id above the counter");
        }
        for rows in self.history.values() {
            assert!(rows.len() <= HISTORY_PER_KEY_MAX, "history over its bound");
            assert!(
                rows.iter().all(|h| h.nid <= self.next_nid),
                "nid above the counter"
            );
        }
        self.check_gray_invariants();
    }

    /// The md5 changes that turn this table into `newer` (`""` for a removed item), in key
    /// order, a key's main change before its gray ones: what listeners must hear when a
    /// snapshot replaces the table. A gray item counts as changed when its md5 or its rule did.
    pub fn md5_changes(&self, newer: &ConfigStore) -> Vec<ConfigChange> {
        let mut out = Vec::new();
        for (key, item) in &newer.items {
            if self.items.get(key).is_none_or(|old| old.md5 != item.md5) {
                out.push(ConfigChange {
                    key: key.clone(),
                    md5: item.md5.clone(),
                    gray: None,
                });
            }
        }
        for key in self.items.keys().filter(|k| !newer.items.contains_key(*k)) {
            out.push(ConfigChange {
                key: key.clone(),
                md5: String::new(),
                gray: None,
            });
        }
        self.gray_changes(newer, &mut out);
        // Stable: a key's gray changes stay in name order after its main change.
        out.sort_by(|a, b| {
            a.key
                .cmp(&b.key)
                .then(a.gray.is_some().cmp(&b.gray.is_some()))
        });
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn key(d: &str) -> ConfigKey {
        ConfigKey::new("", "DEFAULT_GROUP", d)
    }

    fn publish(d: &str, content: &str, cas: Option<&str>) -> ConfigCommand {
        ConfigCommand::Publish(PublishConfig {
            cas_md5: cas.map(Into::into),
            ..PublishConfig::new(key(d), content)
        })
    }

    #[test]
    fn md5_matches_nacos() {
        assert_eq!(md5_hex("helloWorld"), "1a833da63a6b7e20098dae06d06602e1");
        assert_eq!(md5_hex(""), "d41d8cd98f00b204e9800998ecf8427e");
    }

    #[test]
    fn publish_overwrite_cas_and_remove() {
        let mut s = ConfigStore::new();
        assert_eq!(
            s.apply(1, 100, &publish("a", "v1", None)),
            ConfigApplied::Published { md5: md5_hex("v1") }
        );
        assert_eq!(
            s.apply(2, 200, &publish("a", "v2", None)),
            ConfigApplied::Published { md5: md5_hex("v2") }
        );
        let item = s.get(&key("a")).expect("published");
        assert_eq!(
            (
                item.created_ms,
                item.modified_ms,
                item.revision,
                item.config_type.as_str()
            ),
            (100, 200, 2, "text")
        );
        assert_eq!(
            s.apply(3, 300, &publish("a", "v3", Some("bogus"))),
            ConfigApplied::CasMismatch {
                current_md5: md5_hex("v2")
            }
        );
        assert_eq!(s.get(&key("a")).expect("kept").content, "v2");
        assert_eq!(
            s.apply(4, 400, &publish("a", "v3", Some(&md5_hex("v2")))),
            ConfigApplied::Published { md5: md5_hex("v3") }
        );
        // A CAS publish of an absent config inserts it.
        assert_eq!(
            s.apply(5, 500, &publish("b", "x", Some("whatever"))),
            ConfigApplied::Published { md5: md5_hex("x") }
        );
        let rm = ConfigCommand::Remove {
            key: key("a"),
            src_user: String::new(),
            src_ip: String::new(),
        };
        assert_eq!(
            s.apply(6, 600, &rm),
            ConfigApplied::Removed { existed: true }
        );
        assert_eq!(
            s.apply(7, 700, &rm),
            ConfigApplied::Removed { existed: false }
        );
        let hist = s.history_list(&key("a"), 1, 10);
        let ops: Vec<&str> = hist.page_items.iter().map(|h| h.op_type.as_str()).collect();
        assert_eq!(ops, vec!["D", "U", "U", "I"]);
        assert_eq!(hist.page_items[0].content, "v3");
        s.check_invariants();
    }

    #[test]
    fn history_is_bounded_and_searchable() {
        let mut s = ConfigStore::new();
        for i in 0..(HISTORY_PER_KEY_MAX as u64 + 10) {
            s.apply(i + 1, i, &publish("a", &format!("v{i}"), None));
        }
        let all = s.history_list(&key("a"), 1, 500);
        assert_eq!(all.total_count, HISTORY_PER_KEY_MAX as u64);
        let newest = &all.page_items[0];
        assert_eq!(s.history_get(newest.nid), Some(newest));
        assert_eq!(
            s.history_previous(&key("a"), newest.nid),
            Some(&all.page_items[1])
        );
        assert_eq!(s.purge_history(1_000, 1_000 - 70), 70 - 10);
    }

    #[test]
    fn search_pages_and_blur() {
        let mut s = ConfigStore::new();
        for (i, d) in ["app.yaml", "app.json", "db.yaml", "web.props"]
            .iter()
            .enumerate()
        {
            s.apply(i as u64 + 1, 1, &publish(d, "x", None));
        }
        let q = |data_id: &str, mode, page_no, page_size| SearchQuery {
            tenant: String::new(),
            data_id: data_id.into(),
            group: String::new(),
            app_name: None,
            mode,
            page_no,
            page_size,
        };
        let p = s.search(&q("*.yaml", SearchMode::Blur, 1, 10));
        let ids: Vec<&str> = p
            .page_items
            .iter()
            .map(|i| i.key.data_id.as_str())
            .collect();
        assert_eq!(ids, vec!["app.yaml", "db.yaml"]);
        let p = s.search(&q("", SearchMode::Accurate, 2, 3));
        assert_eq!(
            (p.total_count, p.pages_available, p.page_items.len()),
            (4, 2, 1)
        );
        assert_eq!(
            s.search(&q("app.json", SearchMode::Accurate, 1, 10))
                .total_count,
            1
        );
        assert!(wildcard("a*b*c", "axxbyyc") && !wildcard("a*b*c", "axxc"));
    }

    #[test]
    fn group_key_escapes() {
        assert_eq!(ConfigKey::new("", "G", "a+b").group_key(), "a%2Bb+G");
        assert_eq!(ConfigKey::new("ns", "G%", "d").group_key(), "d+G%25+ns");
    }

    proptest! {
        #[test]
        fn random_commands_keep_invariants_and_round_trip(cmds in proptest::collection::vec((0u8..4, 0u8..3, 0u8..5), 1..60)) {
            let mut s = ConfigStore::new();
            for (i, (kind, k, v)) in cmds.into_iter().enumerate() {
                let d = format!("k{k}");
                let cmd = match kind {
                    0 | 1 => publish(&d, &format!("v{v}"), None),
                    2 => publish(&d, &format!("v{v}"), Some(&md5_hex(&format!("v{}", (v + 1) % 5)))),
                    _ => ConfigCommand::Remove { key: key(&d), src_user: String::new(), src_ip: String::new() },
                };
                s.apply(i as u64 + 1, i as u64, &cmd);
                s.check_invariants();
            }
            let bytes = postcard::to_allocvec(&s).expect("encodes");
            let back: ConfigStore = postcard::from_bytes(&bytes).expect("decodes");
            prop_assert_eq!(back.digest(), s.digest());
            prop_assert_eq!(back, s);
        }
    }
}
