//! Gray configs: Nacos 2.x's "beta" and "tag" items, as the 2.x servers keep them before the
//! 2.5 gray model (`config_info_beta`, `config_info_tag`; wire reference §2.4, §4.8). Pure: time
//! arrives as `now_ms`, revisions are Raft log indexes.
//!
//! - A config has at most one beta item (content served to the client IPs of its `betaIps`) and
//!   one item per tag (content served to clients asking with that tag). Neither touches the
//!   main item, and removing the main item leaves them (Nacos's tables keep them too; its memory
//!   cache drops them until the next full dump, which we do not copy).
//! - A publish with non-blank `betaIps` writes the beta item (a tag is then ignored), else one
//!   with a non-blank tag writes that tag's item, else the main item (`ConfigOperationService`).
//!   CAS compares with the md5 of the item written; an absent item is inserted whatever the
//!   CAS md5 says (`insertOrUpdateBetaCas`, `insertOrUpdateTagCas`).
//! - A remove with a tag removes that tag's item only; "stop beta" removes the beta item.
//! - No history rows: Nacos 2.x before 2.5 records no history for beta or tag writes.
//! - Serving (`ConfigStore::effective`): the beta item when the client's IP is in its list,
//!   whatever tag was asked; else with a `tag` parameter that tag's item or nothing; else with
//!   a `Vipserver-Tag` header that tag's item if it exists; else the main item. The type served
//!   is the main item's (`text` without one), as Nacos reads it from its cache entry.
//!
//! What must stay true: no gray is stored under a blank name, a gray sits under its own key and
//! name, and its md5 is its content's.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::listen::{ConfigChange, GrayAudience};
use super::{md5_hex, ConfigApplied, ConfigItem, ConfigKey, ConfigStore, PublishConfig};

/// Java `StringUtils.isBlank`: empty or only whitespace.
pub(crate) fn is_blank(s: &str) -> bool {
    s.chars().all(char::is_whitespace)
}

/// Whether `client_ip` is one of the comma-separated `ips`, compared as Nacos does
/// (`Arrays.asList(betaIps.split(",")).contains(ip)`: no trimming).
pub fn beta_contains(ips: &str, client_ip: &str) -> bool {
    !client_ip.is_empty() && ips.split(',').any(|ip| ip == client_ip)
}

/// Which gray item of a config.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum GrayName {
    /// The beta item (one per config).
    Beta,
    /// The item of one tag.
    Tag(String),
}

impl GrayName {
    fn is_blank(&self) -> bool {
        matches!(self, GrayName::Tag(t) if is_blank(t))
    }
}

/// Nacos's gray name: `beta`, or `tag_<tag>`.
impl std::fmt::Display for GrayName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            GrayName::Beta => f.write_str("beta"),
            GrayName::Tag(tag) => write!(f, "tag_{tag}"),
        }
    }
}

/// Whom a gray item is served to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum GrayRule {
    /// Clients whose IP is one of the comma-separated `ips` (the `betaIps` value, kept as sent).
    Beta { ips: String },
    /// Clients asking with this tag.
    Tag { tag: String },
}

impl GrayRule {
    /// The name of the item this rule belongs to.
    pub fn name(&self) -> GrayName {
        match self {
            GrayRule::Beta { .. } => GrayName::Beta,
            GrayRule::Tag { tag } => GrayName::Tag(tag.clone()),
        }
    }

    /// Nacos's dispatch of a publish: non-blank `betaIps` gives the beta rule (the tag is then
    /// ignored), else a non-blank `tag` gives that tag's rule, else `None` (the main item).
    pub fn from_publish(beta_ips: Option<&str>, tag: Option<&str>) -> Option<GrayRule> {
        match (
            beta_ips.filter(|b| !is_blank(b)),
            tag.filter(|t| !is_blank(t)),
        ) {
            (Some(ips), _) => Some(GrayRule::Beta { ips: ips.into() }),
            (None, Some(tag)) => Some(GrayRule::Tag { tag: tag.into() }),
            (None, None) => None,
        }
    }

    /// Whether this rule names no gray (blank IPs or tag): a command with it is a plain one.
    pub fn is_blank(&self) -> bool {
        match self {
            GrayRule::Beta { ips } => is_blank(ips),
            GrayRule::Tag { tag } => is_blank(tag),
        }
    }

    /// The IPs of a beta rule as Nacos splits them (empty for a tag rule).
    pub fn beta_ips(&self) -> Vec<&str> {
        match self {
            GrayRule::Beta { ips } => ips.split(',').filter(|ip| !ip.is_empty()).collect(),
            GrayRule::Tag { .. } => Vec::new(),
        }
    }
}

/// One stored gray item: its rule and its content (the `ConfigItem` of the key it grays).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GrayItem {
    pub rule: GrayRule,
    pub item: ConfigItem,
}

/// How a read names the tag it wants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TagQuery<'a> {
    /// No tag.
    None,
    /// The `tag` parameter of a query: that tag's item, or nothing (no fallback).
    Exact(&'a str),
    /// The `Vipserver-Tag` header (a query without `tag`, or a listen): that tag's item if it
    /// exists, else the main item.
    Header(&'a str),
}

impl<'a> TagQuery<'a> {
    /// A query's tag: the `tag` parameter if non-blank, else the `Vipserver-Tag` header if
    /// non-blank, else none (as `ConfigQueryRequestHandler` and `ConfigServletInner` pick it).
    pub fn from_query(tag: Option<&'a str>, vipserver_tag: Option<&'a str>) -> TagQuery<'a> {
        match (tag.filter(|t| !is_blank(t)), vipserver_tag) {
            (Some(t), _) => TagQuery::Exact(t),
            (None, Some(h)) if !is_blank(h) => TagQuery::Header(h),
            _ => TagQuery::None,
        }
    }

    /// A listen's tag: the `Vipserver-Tag` header (or connection label) if non-blank.
    pub fn from_header(vipserver_tag: Option<&'a str>) -> TagQuery<'a> {
        TagQuery::from_query(None, vipserver_tag)
    }
}

/// What one client is served for one config.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Effective<'a> {
    /// The item whose content, md5, modified time and encrypted data key are served.
    pub item: &'a ConfigItem,
    /// The gray that matched (`None`: the main item).
    pub gray: Option<&'a GrayRule>,
    /// The type to report: the main item's, `text` without one (Nacos takes it from the cache
    /// entry, which gray dumps never set).
    pub config_type: &'a str,
}

impl Effective<'_> {
    /// Whether the beta item is served (`isBeta` header, `beta` field).
    pub fn is_beta(&self) -> bool {
        matches!(self.gray, Some(GrayRule::Beta { .. }))
    }

    /// The tag whose item is served.
    pub fn tag(&self) -> Option<&str> {
        match self.gray {
            Some(GrayRule::Tag { tag }) => Some(tag),
            _ => None,
        }
    }

    /// An owned copy (to leave the state lock).
    pub fn to_config(&self) -> EffectiveConfig {
        EffectiveConfig {
            item: self.item.clone(),
            gray: self.gray.cloned(),
            config_type: self.config_type.to_string(),
        }
    }
}

/// An owned `Effective`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EffectiveConfig {
    pub item: ConfigItem,
    pub gray: Option<GrayRule>,
    pub config_type: String,
}

impl EffectiveConfig {
    /// Whether the beta item is served.
    pub fn is_beta(&self) -> bool {
        matches!(self.gray, Some(GrayRule::Beta { .. }))
    }

    /// The tag whose item is served.
    pub fn tag(&self) -> Option<&str> {
        match &self.gray {
            Some(GrayRule::Tag { tag }) => Some(tag),
            _ => None,
        }
    }
}

/// The clients a change of gray `rule` (and of the `previous` rule it replaced) may concern.
fn audience(rule: &GrayRule, previous: Option<&GrayRule>) -> GrayAudience {
    match rule {
        GrayRule::Beta { .. } => {
            let mut ips: Vec<String> = Vec::new();
            for ip in rule
                .beta_ips()
                .into_iter()
                .chain(previous.map(GrayRule::beta_ips).unwrap_or_default())
            {
                if !ips.iter().any(|known| known == ip) {
                    ips.push(ip.to_string());
                }
            }
            GrayAudience::Beta { ips }
        }
        GrayRule::Tag { tag } => GrayAudience::Tag { tag: tag.clone() },
    }
}

impl ConfigStore {
    /// Writes the gray item of `rule` (the rule is not blank).
    pub(super) fn publish_gray(
        &mut self,
        revision: u64,
        now_ms: u64,
        rule: &GrayRule,
        p: &PublishConfig,
    ) -> (ConfigApplied, Option<ConfigChange>) {
        let name = rule.name();
        let existing = self.grays.get(&p.key).and_then(|g| g.get(&name));
        if let (Some(cas), Some(cur)) = (&p.cas_md5, existing) {
            if *cas != cur.item.md5 {
                let current_md5 = cur.item.md5.clone();
                return (ConfigApplied::CasMismatch { current_md5 }, None);
            }
        }
        let previous = existing.map(|g| g.rule.clone());
        let (id, created_ms) = match existing {
            Some(cur) => (cur.item.id, cur.item.created_ms),
            None => {
                self.next_gray_id += 1;
                (self.next_gray_id, now_ms)
            }
        };
        let item = Self::item_of(p, id, created_ms, now_ms, revision);
        let md5 = item.md5.clone();
        self.grays.entry(p.key.clone()).or_default().insert(
            name,
            GrayItem {
                rule: rule.clone(),
                item,
            },
        );
        let change = ConfigChange {
            key: p.key.clone(),
            md5: md5.clone(),
            gray: Some(audience(rule, previous.as_ref())),
        };
        (ConfigApplied::Published { md5 }, Some(change))
    }

    /// Removes the gray item `name` (not blank).
    pub(super) fn remove_gray(
        &mut self,
        key: &ConfigKey,
        name: &GrayName,
    ) -> (ConfigApplied, Option<ConfigChange>) {
        let Some(grays) = self.grays.get_mut(key) else {
            return (ConfigApplied::Removed { existed: false }, None);
        };
        let Some(old) = grays.remove(name) else {
            return (ConfigApplied::Removed { existed: false }, None);
        };
        if grays.is_empty() {
            self.grays.remove(key);
        }
        let change = ConfigChange {
            key: key.clone(),
            md5: String::new(),
            gray: Some(audience(&old.rule, None)),
        };
        (ConfigApplied::Removed { existed: true }, Some(change))
    }

    /// One gray item.
    pub fn gray(&self, key: &ConfigKey, name: &GrayName) -> Option<&GrayItem> {
        self.grays.get(key)?.get(name)
    }

    /// The gray items of one config, beta first, then tags in order.
    pub fn grays(&self, key: &ConfigKey) -> impl Iterator<Item = &GrayItem> {
        self.grays.get(key).into_iter().flat_map(|g| g.values())
    }

    /// Number of gray items of all configs.
    pub fn gray_count(&self) -> usize {
        self.grays.values().map(BTreeMap::len).sum()
    }

    /// What a client at `client_ip` asking with `tag` is served for `key` (queries: wire
    /// reference §2.4 GET, §4.8 `ConfigQueryRequest`); `None` is "config data not exist".
    pub fn effective<'a>(
        &'a self,
        key: &ConfigKey,
        client_ip: &str,
        tag: TagQuery<'_>,
    ) -> Option<Effective<'a>> {
        let main = self.items.get(key);
        let config_type = main.map_or("text", |m| m.config_type.as_str());
        let grays = self.grays.get(key);
        let served = |g: &'a GrayItem| Effective {
            item: &g.item,
            gray: Some(&g.rule),
            config_type,
        };
        if let Some(beta) = grays.and_then(|g| g.get(&GrayName::Beta)) {
            if let GrayRule::Beta { ips } = &beta.rule {
                if beta_contains(ips, client_ip) {
                    return Some(served(beta));
                }
            }
        }
        let tagged = |t: &str| grays.and_then(|g| g.get(&GrayName::Tag(t.to_string())));
        match tag {
            TagQuery::Exact(t) if !is_blank(t) => return tagged(t).map(served),
            TagQuery::Header(t) if !is_blank(t) => {
                if let Some(g) = tagged(t) {
                    return Some(served(g));
                }
            }
            _ => {}
        }
        main.map(|item| Effective {
            item,
            gray: None,
            config_type,
        })
    }

    /// The md5 a listening client at `client_ip` (with its `Vipserver-Tag`, if any) is compared
    /// with: its effective item's, `""` when it is served nothing (`isUptodate(groupKey, md5,
    /// ip, tag)`, wire reference §8 item 10).
    pub fn effective_md5(
        &self,
        key: &ConfigKey,
        client_ip: &str,
        vipserver_tag: Option<&str>,
    ) -> String {
        self.effective(key, client_ip, TagQuery::from_header(vipserver_tag))
            .map(|e| e.item.md5.clone())
            .unwrap_or_default()
    }

    /// The gray changes that turn this table into `newer`, in key and name order.
    pub(super) fn gray_changes(&self, newer: &ConfigStore, out: &mut Vec<ConfigChange>) {
        let empty = BTreeMap::new();
        let keys: std::collections::BTreeSet<&ConfigKey> =
            self.grays.keys().chain(newer.grays.keys()).collect();
        for key in keys {
            let old = self.grays.get(key).unwrap_or(&empty);
            let new = newer.grays.get(key).unwrap_or(&empty);
            let names: std::collections::BTreeSet<&GrayName> =
                old.keys().chain(new.keys()).collect();
            for name in names {
                match (old.get(name), new.get(name)) {
                    (before, Some(after))
                        if before.is_none_or(|b| {
                            b.item.md5 != after.item.md5 || b.rule != after.rule
                        }) =>
                    {
                        out.push(ConfigChange {
                            key: key.clone(),
                            md5: after.item.md5.clone(),
                            gray: Some(audience(&after.rule, before.map(|b| &b.rule))),
                        });
                    }
                    (Some(before), None) => out.push(ConfigChange {
                        key: key.clone(),
                        md5: String::new(),
                        gray: Some(audience(&before.rule, None)),
                    }),
                    _ => {}
                }
            }
        }
    }

    /// Feeds the gray table to a digest (nothing when it is empty, so a table without grays
    /// keeps the digest it had before grays existed).
    pub(super) fn digest_grays(&self, h: &mut crate::digest::Fnv64) {
        for (key, grays) in &self.grays {
            for (name, g) in grays {
                let name = name.to_string();
                let ips = match &g.rule {
                    GrayRule::Beta { ips } => ips.as_str(),
                    GrayRule::Tag { .. } => "",
                };
                for part in [
                    &key.tenant,
                    &key.group,
                    &key.data_id,
                    &name,
                    &g.item.md5,
                    ips,
                ] {
                    h.write_u64(part.len() as u64);
                    h.write(part.as_bytes());
                }
                h.write_u64(g.item.revision);
            }
        }
    }

    /// The gray table's invariants.
    pub(super) fn check_gray_invariants(&self) {
        for (key, grays) in &self.grays {
            assert!(!grays.is_empty(), "empty gray set kept");
            for (name, g) in grays {
                assert_eq!(*key, g.item.key, "gray stored under another key");
                assert_eq!(*name, g.rule.name(), "gray stored under another name");
                assert!(!name.is_blank() && !g.rule.is_blank(), "blank gray stored");
                debug_assert_eq!(g.item.md5, md5_hex(&g.item.content), "gray md5");
                assert!(g.item.id <= self.next_gray_id, "gray id above the counter");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ConfigCommand;
    use proptest::prelude::*;

    const BETA_IP: &str = "10.0.0.1";
    const OTHER_IP: &str = "10.0.0.9";

    fn key(d: &str) -> ConfigKey {
        ConfigKey::new("", "DEFAULT_GROUP", d)
    }

    fn main(d: &str, content: &str) -> ConfigCommand {
        ConfigCommand::Publish(PublishConfig {
            config_type: "yaml".into(),
            ..PublishConfig::new(key(d), content)
        })
    }

    fn gray(d: &str, content: &str, rule: GrayRule, cas: Option<&str>) -> ConfigCommand {
        ConfigCommand::PublishGray {
            rule,
            publish: PublishConfig {
                cas_md5: cas.map(Into::into),
                ..PublishConfig::new(key(d), content)
            },
        }
    }

    fn beta(ips: &str) -> GrayRule {
        GrayRule::Beta { ips: ips.into() }
    }

    fn tag(t: &str) -> GrayRule {
        GrayRule::Tag { tag: t.into() }
    }

    fn served<'a>(s: &'a ConfigStore, ip: &str, q: TagQuery<'_>) -> Option<&'a str> {
        s.effective(&key("a"), ip, q)
            .map(|e| e.item.content.as_str())
    }

    #[test]
    fn beta_is_served_to_its_ips_only_and_leaves_the_main_item() {
        let mut s = ConfigStore::new();
        s.apply(1, 100, &main("a", "main"));
        let (applied, change) =
            s.apply_with_change(2, 200, &gray("a", "beta", beta("10.0.0.1,10.0.0.2"), None));
        assert_eq!(
            applied,
            ConfigApplied::Published {
                md5: md5_hex("beta")
            }
        );
        assert_eq!(
            change,
            Some(ConfigChange {
                key: key("a"),
                md5: md5_hex("beta"),
                gray: Some(GrayAudience::Beta {
                    ips: vec!["10.0.0.1".into(), "10.0.0.2".into()]
                }),
            })
        );
        assert_eq!(s.get(&key("a")).expect("main").content, "main");
        let e = s
            .effective(&key("a"), BETA_IP, TagQuery::None)
            .expect("served");
        assert!(e.is_beta());
        assert_eq!((e.item.content.as_str(), e.config_type), ("beta", "yaml"));
        assert_eq!(e.item.revision, 2);
        let e = s
            .effective(&key("a"), OTHER_IP, TagQuery::None)
            .expect("served");
        assert!(!e.is_beta() && e.gray.is_none());
        assert_eq!(e.item.content, "main");
        // IPs compare exactly, as Nacos splits them: no trimming, no prefixes.
        assert!(!beta_contains("10.0.0.1, 10.0.0.2", "10.0.0.2"));
        assert!(!beta_contains("10.0.0.10", BETA_IP));
        assert!(!beta_contains("a,,b", ""));
        // A gray publish writes no history row (Nacos 2.x before the 2.5 gray model).
        assert_eq!(s.history_list(&key("a"), 1, 10).total_count, 1);
        assert_eq!((s.len(), s.gray_count()), (1, 1));
        s.check_invariants();
    }

    #[test]
    fn a_beta_without_a_main_item_is_served_to_its_ips_only() {
        let mut s = ConfigStore::new();
        s.apply(1, 1, &gray("a", "beta", beta(BETA_IP), None));
        assert_eq!(served(&s, BETA_IP, TagQuery::None), Some("beta"));
        let e = s.effective(&key("a"), BETA_IP, TagQuery::None);
        assert_eq!(e.map(|e| e.config_type), Some("text"));
        assert_eq!(served(&s, OTHER_IP, TagQuery::None), None);
        assert_eq!(s.effective_md5(&key("a"), OTHER_IP, None), "");
        assert!(s.is_empty());
    }

    #[test]
    fn tags_exact_without_fallback_header_with_fallback_beta_first() {
        let mut s = ConfigStore::new();
        s.apply(1, 1, &main("a", "main"));
        s.apply(2, 1, &gray("a", "blue", tag("blue"), None));
        let e = s
            .effective(&key("a"), OTHER_IP, TagQuery::Exact("blue"))
            .expect("tag item");
        assert_eq!((e.item.content.as_str(), e.tag()), ("blue", Some("blue")));
        // A `tag` parameter naming no item finds nothing (ConfigQueryRequestHandler).
        assert_eq!(served(&s, OTHER_IP, TagQuery::Exact("red")), None);
        // A `Vipserver-Tag` header falls back to the main item.
        assert_eq!(served(&s, OTHER_IP, TagQuery::Header("blue")), Some("blue"));
        assert_eq!(served(&s, OTHER_IP, TagQuery::Header("red")), Some("main"));
        assert_eq!(served(&s, OTHER_IP, TagQuery::None), Some("main"));
        // The beta item wins over any tag for its IPs.
        s.apply(3, 1, &gray("a", "beta", beta(BETA_IP), None));
        assert_eq!(served(&s, BETA_IP, TagQuery::Exact("blue")), Some("beta"));
        assert_eq!(served(&s, BETA_IP, TagQuery::Exact("red")), Some("beta"));
        assert_eq!(served(&s, OTHER_IP, TagQuery::Exact("blue")), Some("blue"));
        // Listens compare with the served md5, the header tag falling back.
        assert_eq!(
            s.effective_md5(&key("a"), BETA_IP, Some("blue")),
            md5_hex("beta")
        );
        assert_eq!(
            s.effective_md5(&key("a"), OTHER_IP, Some("blue")),
            md5_hex("blue")
        );
        assert_eq!(
            s.effective_md5(&key("a"), OTHER_IP, Some("red")),
            md5_hex("main")
        );
        assert_eq!(s.effective_md5(&key("a"), OTHER_IP, None), md5_hex("main"));
        assert_eq!(s.effective_md5(&key("zz"), OTHER_IP, None), "");
        // Query tags as the handlers pick them.
        assert_eq!(
            TagQuery::from_query(Some("t"), Some("h")),
            TagQuery::Exact("t")
        );
        assert_eq!(
            TagQuery::from_query(Some(" "), Some("h")),
            TagQuery::Header("h")
        );
        assert_eq!(TagQuery::from_query(None, Some("")), TagQuery::None);
        s.check_invariants();
    }

    #[test]
    fn removes_touch_only_their_item() {
        let mut s = ConfigStore::new();
        s.apply(1, 1, &main("a", "main"));
        s.apply(2, 1, &gray("a", "beta", beta(BETA_IP), None));
        s.apply(3, 1, &gray("a", "blue", tag("blue"), None));
        s.apply(4, 1, &gray("a", "green", tag("green"), None));
        let rm_blue = ConfigCommand::remove_with(key("a"), Some("blue"), "u", "1.2.3.4");
        let (applied, change) = s.apply_with_change(5, 1, &rm_blue);
        assert_eq!(applied, ConfigApplied::Removed { existed: true });
        assert_eq!(
            change.map(|c| (c.md5, c.gray)),
            Some((
                String::new(),
                Some(GrayAudience::Tag { tag: "blue".into() })
            ))
        );
        assert_eq!(
            s.apply_with_change(6, 1, &rm_blue),
            (ConfigApplied::Removed { existed: false }, None)
        );
        assert_eq!(
            served(&s, OTHER_IP, TagQuery::Exact("green")),
            Some("green")
        );
        assert_eq!(served(&s, BETA_IP, TagQuery::None), Some("beta"));
        // Stop beta.
        let stop = ConfigCommand::stop_beta(key("a"), "u", "1.2.3.4");
        let (applied, change) = s.apply_with_change(7, 1, &stop);
        assert_eq!(applied, ConfigApplied::Removed { existed: true });
        assert_eq!(
            change.and_then(|c| c.gray),
            Some(GrayAudience::Beta {
                ips: vec![BETA_IP.into()]
            })
        );
        assert_eq!(served(&s, BETA_IP, TagQuery::None), Some("main"));
        assert_eq!(
            s.apply(8, 1, &stop),
            ConfigApplied::Removed { existed: false }
        );
        // Removing the main item leaves the gray items (as Nacos's tables do).
        let rm_main = ConfigCommand::remove_with(key("a"), None, "u", "1.2.3.4");
        assert!(matches!(rm_main, ConfigCommand::Remove { .. }));
        assert_eq!(
            s.apply(9, 1, &rm_main),
            ConfigApplied::Removed { existed: true }
        );
        assert_eq!(served(&s, OTHER_IP, TagQuery::None), None);
        assert_eq!(
            served(&s, OTHER_IP, TagQuery::Exact("green")),
            Some("green")
        );
        let names: Vec<String> = s
            .grays(&key("a"))
            .map(|g| g.rule.name().to_string())
            .collect();
        assert_eq!(names, vec!["tag_green"]);
        s.check_invariants();
    }

    #[test]
    fn cas_compares_with_the_gray_item_written() {
        let mut s = ConfigStore::new();
        s.apply(1, 1, &main("a", "main"));
        // An absent beta is inserted whatever the CAS md5 says (insertOrUpdateBetaCas).
        assert_eq!(
            s.apply(2, 1, &gray("a", "b1", beta(BETA_IP), Some("bogus"))),
            ConfigApplied::Published { md5: md5_hex("b1") }
        );
        // The main md5 is not the beta's.
        assert_eq!(
            s.apply(
                3,
                1,
                &gray("a", "b2", beta(BETA_IP), Some(&md5_hex("main")))
            ),
            ConfigApplied::CasMismatch {
                current_md5: md5_hex("b1")
            }
        );
        let (_, change) = s.apply_with_change(4, 1, &gray("a", "b2", beta(BETA_IP), Some("x")));
        assert_eq!(
            change, None,
            "a refused CAS changes nothing and tells nobody"
        );
        assert_eq!(
            s.apply(5, 1, &gray("a", "b2", beta(BETA_IP), Some(&md5_hex("b1")))),
            ConfigApplied::Published { md5: md5_hex("b2") }
        );
        // Tags: each tag is its own item.
        assert_eq!(
            s.apply(6, 1, &gray("a", "t1", tag("blue"), Some("bogus"))),
            ConfigApplied::Published { md5: md5_hex("t1") }
        );
        assert_eq!(
            s.apply(7, 1, &gray("a", "t2", tag("blue"), Some(&md5_hex("b2")))),
            ConfigApplied::CasMismatch {
                current_md5: md5_hex("t1")
            }
        );
        // A main CAS still compares with the main item only.
        let main_cas = ConfigCommand::Publish(PublishConfig {
            cas_md5: Some(md5_hex("main")),
            ..PublishConfig::new(key("a"), "main2")
        });
        assert_eq!(
            s.apply(8, 1, &main_cas),
            ConfigApplied::Published {
                md5: md5_hex("main2")
            }
        );
        let b = s.gray(&key("a"), &GrayName::Beta).expect("beta");
        assert_eq!((b.item.content.as_str(), b.item.revision), ("b2", 5));
        s.check_invariants();
    }

    #[test]
    fn republishing_a_beta_keeps_its_id_and_tells_old_and_new_ips() {
        let mut s = ConfigStore::new();
        s.apply(1, 100, &gray("a", "v1", beta("10.0.0.1,10.0.0.2"), None));
        let (_, change) =
            s.apply_with_change(2, 200, &gray("a", "v1", beta("10.0.0.2,10.0.0.3"), None));
        assert_eq!(
            change.and_then(|c| c.gray),
            Some(GrayAudience::Beta {
                ips: vec!["10.0.0.2".into(), "10.0.0.3".into(), "10.0.0.1".into()]
            })
        );
        let b = s.gray(&key("a"), &GrayName::Beta).expect("beta");
        assert_eq!(
            (b.item.id, b.item.created_ms, b.item.modified_ms),
            (1, 100, 200)
        );
        assert_eq!(served(&s, "10.0.0.1", TagQuery::None), None);
        assert_eq!(served(&s, "10.0.0.3", TagQuery::None), Some("v1"));
    }

    #[test]
    fn blank_rules_are_plain_commands() {
        let p = PublishConfig::new(key("a"), "x");
        assert!(matches!(
            ConfigCommand::publish_with(p.clone(), Some(" "), Some("")),
            ConfigCommand::Publish(_)
        ));
        assert!(matches!(
            ConfigCommand::publish_with(p.clone(), Some("1.1.1.1"), Some("t")),
            ConfigCommand::PublishGray {
                rule: GrayRule::Beta { .. },
                ..
            }
        ));
        assert!(matches!(
            ConfigCommand::publish_with(p.clone(), None, Some("t")),
            ConfigCommand::PublishGray {
                rule: GrayRule::Tag { .. },
                ..
            }
        ));
        let mut s = ConfigStore::new();
        s.apply(1, 1, &gray("a", "x", beta(""), None));
        s.apply(2, 1, &gray("a", "y", tag(" "), None));
        assert_eq!((s.len(), s.gray_count()), (1, 0));
        assert_eq!(s.get(&key("a")).expect("main").content, "y");
        let rm = ConfigCommand::RemoveGray {
            key: key("a"),
            name: GrayName::Tag(String::new()),
            src_user: String::new(),
            src_ip: String::new(),
        };
        assert_eq!(s.apply(3, 1, &rm), ConfigApplied::Removed { existed: true });
        assert!(s.is_empty());
        assert_eq!(GrayName::Beta.to_string(), "beta");
        assert_eq!(GrayName::Tag("x".into()).to_string(), "tag_x");
        s.check_invariants();
    }

    #[test]
    fn digest_covers_grays_and_is_unchanged_without_them() {
        let mut s = ConfigStore::new();
        s.apply(1, 1, &main("a", "main"));
        // The digest of a table without grays is the one from before grays existed.
        let mut h = crate::digest::Fnv64::default();
        let item = s.get(&key("a")).expect("main");
        for part in ["", "DEFAULT_GROUP", "a", &item.md5] {
            h.write_u64(part.len() as u64);
            h.write(part.as_bytes());
        }
        h.write_u64(1);
        assert_eq!(s.digest(), h.finish());
        let before = s.digest();
        s.apply(2, 1, &gray("a", "b", beta(BETA_IP), None));
        let with_beta = s.digest();
        assert_ne!(with_beta, before);
        let mut other_ips = s.clone();
        other_ips.apply(3, 1, &gray("a", "b", beta(OTHER_IP), None));
        assert_ne!(other_ips.digest(), with_beta);
        let mut tagged = s.clone();
        tagged.apply(3, 1, &gray("a", "b", tag("t"), None));
        assert_ne!(tagged.digest(), with_beta);
        s.apply(3, 1, &ConfigCommand::stop_beta(key("a"), "", ""));
        assert_eq!(s.digest(), before);
    }

    #[test]
    fn a_replaced_table_reports_its_gray_differences() {
        let mut old = ConfigStore::new();
        old.apply(1, 1, &main("a", "main"));
        old.apply(2, 1, &gray("a", "beta", beta("10.0.0.1"), None));
        old.apply(3, 1, &gray("a", "same", tag("same"), None));
        old.apply(4, 1, &gray("b", "gone", tag("gone"), None));
        let mut new = old.clone();
        new.apply(5, 2, &gray("a", "beta", beta("10.0.0.2"), None));
        new.apply(6, 2, &gray("a", "blue", tag("blue"), None));
        new.apply(
            7,
            2,
            &ConfigCommand::remove_with(key("b"), Some("gone"), "", ""),
        );
        new.apply(8, 2, &main("c", "c"));
        let changes: Vec<(String, String, Option<GrayAudience>)> = old
            .md5_changes(&new)
            .into_iter()
            .map(|c| (c.key.data_id, c.md5, c.gray))
            .collect();
        assert_eq!(
            changes,
            vec![
                (
                    "a".into(),
                    md5_hex("beta"),
                    Some(GrayAudience::Beta {
                        ips: vec!["10.0.0.2".into(), "10.0.0.1".into()]
                    })
                ),
                (
                    "a".into(),
                    md5_hex("blue"),
                    Some(GrayAudience::Tag { tag: "blue".into() })
                ),
                (
                    "b".into(),
                    String::new(),
                    Some(GrayAudience::Tag { tag: "gone".into() })
                ),
                ("c".into(), md5_hex("c"), None),
            ]
        );
    }

    fn rule_of(r: u8) -> GrayRule {
        match r {
            0 => beta("10.0.0.1"),
            1 => beta("10.0.0.1,10.0.0.2"),
            2 => tag("t1"),
            _ => tag("t2"),
        }
    }

    proptest! {
        #[test]
        fn random_gray_commands_keep_invariants_and_round_trip(
            cmds in proptest::collection::vec((0u8..6, 0u8..2, 0u8..4, 0u8..3), 1..60)
        ) {
            let mut s = ConfigStore::new();
            for (i, (kind, k, r, v)) in cmds.into_iter().enumerate() {
                let d = format!("k{k}");
                let content = format!("v{v}");
                let cmd = match kind {
                    0 => main(&d, &content),
                    1 | 2 => gray(&d, &content, rule_of(r), None),
                    3 => gray(&d, &content, rule_of(r), Some(&md5_hex(&format!("v{}", (v + 1) % 3)))),
                    4 => ConfigCommand::RemoveGray {
                        key: key(&d),
                        name: rule_of(r).name(),
                        src_user: String::new(),
                        src_ip: String::new(),
                    },
                    _ => ConfigCommand::remove_with(key(&d), None, "", ""),
                };
                let before = s.clone();
                let (applied, change) = s.apply_with_change(i as u64 + 1, i as u64, &cmd);
                s.check_invariants();
                // A change is reported exactly when the table changed.
                prop_assert_eq!(change.is_some(), s != before, "{:?}", applied);
                if let Some(change) = change {
                    let diff = before.md5_changes(&s);
                    // A republish with the same md5 and rule is reported but is no difference.
                    prop_assert!(diff.len() <= 1);
                    if let Some(d) = diff.first() {
                        prop_assert_eq!(&d.key, &change.key);
                        prop_assert_eq!(&d.md5, &change.md5);
                        prop_assert_eq!(&d.gray, &change.gray);
                    }
                }
            }
            let bytes = postcard::to_allocvec(&s).expect("encodes");
            let back: ConfigStore = postcard::from_bytes(&bytes).expect("decodes");
            prop_assert_eq!(back.digest(), s.digest());
            prop_assert_eq!(back, s);
        }
    }
}
