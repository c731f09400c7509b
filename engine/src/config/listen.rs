//! Config listeners: the wire format of the v1 long-polling protocol and the comparison that
//! decides what a poll answers (wire reference §2.4 "POST /v1/cs/configs/listener", §1.3
//! groupKey and md5). Pure: no I/O, no clock; the server holds the request and feeds changes in.
//!
//! Inputs and effects:
//! - `parse_listening_configs` takes the `Listening-Configs` value **after** the HTTP form
//!   decoding and performs Nacos's second `URLDecoder.decode` itself, then splits records as
//!   `MD5Util.getClientMd5Map` does: `dataId` 0x02 `group` 0x02 `md5` [0x02 `tenant`] 0x01.
//! - `changed` compares each client md5 with the server's (a missing config has md5 `""`).
//! - `encode_changed` builds the answer body: `URLEncoder.encode(joined)` plus a line break.
//! - `hold_ms` turns the `Long-Pulling-Timeout` header into the hold time.
//! - `Watch::on_change` decides whether one applied change answers a held poll;
//!   `Watch::on_change_with` does so exactly for a client that may be served gray items,
//!   comparing with the md5 it is served (`ConfigStore::effective_md5`).
//! - `ConfigChange::concerns` says whether a change may alter what one client is served: a
//!   main change concerns every listener of the key, a beta change the IPs of the old and new
//!   beta lists, a tag change the clients listening with that `Vipserver-Tag`
//!   (`LongPollingService.DataChangeTask`, `RpcConfigChangeNotifier` filter by tag; Nacos
//!   wakes every listener on a beta change, where we wake only its IPs).
//!
//! What must stay true: parsing never panics (any input gives entries or a `Reject`); at most
//! `LISTEN_RECORDS_MAX` distinct keys are accepted; a change whose md5 equals the client's does
//! not wake the client (Nacos only notifies after the dumped md5 changed).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::ConfigKey;
use crate::error::Reject;

/// Nacos `WORD_SEPARATOR` (between the fields of one record).
pub const WORD_SEPARATOR: char = '\u{2}';
/// Nacos `LINE_SEPARATOR` (after each record).
pub const LINE_SEPARATOR: char = '\u{1}';
/// Most word separators in one record (`MD5Util`: more is "too much key").
pub const LISTEN_RECORD_SEPARATORS_MAX: usize = 3;
/// Most distinct keys one poll may watch (`MD5Util`: more is "too much listener").
pub const LISTEN_RECORDS_MAX: usize = 10_000;
/// Shortest hold of a long poll (`MIN_LONG_POOLING_TIMEOUT`).
pub const LONG_POLL_HOLD_MIN_MS: u64 = 10_000;
/// Subtracted from the client's timeout so the answer arrives before it gives up
/// (`FIXED_DELAY_TIME`).
pub const LONG_POLL_FIXED_DELAY_MS: u64 = 500;
/// Longest hold, whatever the header says: a held request is a resource (STYLE 6). Nacos has
/// no cap; real clients send 30000.
pub const LONG_POLL_HOLD_MAX_MS: u64 = 300_000;
/// Capacity of the applied-change broadcast; a receiver further behind re-checks all its keys.
pub const CONFIG_CHANGES_CAPACITY: usize = 4096;

const _: () = assert!(LONG_POLL_HOLD_MIN_MS <= LONG_POLL_HOLD_MAX_MS);
const _: () = assert!(LONG_POLL_FIXED_DELAY_MS < LONG_POLL_HOLD_MIN_MS);

/// Nacos's message for a blank or unparseable `Listening-Configs` (`ConfigController`).
pub const INVALID_PROBE_MODIFY: &str = "invalid probeModify";
const TOO_MUCH_KEY: &str = "invalid protocol,too much key";
const TOO_MUCH_LISTENER: &str = "invalid protocol, too much listener";

/// One watched config and the md5 the client holds (`""` when it has no content).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ListenEntry {
    pub key: ConfigKey,
    pub md5: String,
}

/// One applied change of a config: its key and the new md5 of the item that changed (`""` once
/// removed). `gray` is `None` for the main item; for a gray item it names the clients that may
/// be served something different now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigChange {
    pub key: ConfigKey,
    pub md5: String,
    pub gray: Option<GrayAudience>,
}

/// The clients a gray change may concern.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum GrayAudience {
    /// The beta item changed (published, its IPs changed, or stopped): the clients whose IP is
    /// in `ips`, the union of its old and new IP lists.
    Beta { ips: Vec<String> },
    /// The item of `tag` changed: the clients listening with this `Vipserver-Tag`.
    Tag { tag: String },
}

impl ConfigChange {
    /// Whether this change may alter what a client at `client_ip` listening with
    /// `vipserver_tag` is served for the key (the caller checks that it listens to the key).
    pub fn concerns(&self, client_ip: &str, vipserver_tag: Option<&str>) -> bool {
        match &self.gray {
            None => true,
            Some(GrayAudience::Beta { ips }) => {
                !client_ip.is_empty() && ips.iter().any(|ip| ip == client_ip)
            }
            Some(GrayAudience::Tag { tag }) => vipserver_tag == Some(tag.as_str()),
        }
    }
}

fn invalid(message: &str) -> Reject {
    Reject::InvalidParam(message.into())
}

/// Java `URLDecoder.decode(s, "UTF-8")`: `+` is a space, `%XX` a byte; the bytes are read as
/// UTF-8 (invalid sequences replaced). A `%` not followed by two hex digits is rejected.
pub fn java_url_decode(s: &str) -> Result<String, Reject> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = bytes
                    .get(i + 1..i + 3)
                    .filter(|h| h.iter().all(u8::is_ascii_hexdigit))
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                let byte = hex.ok_or_else(|| {
                    invalid("URLDecoder: Illegal hex characters in escape (%) pattern")
                })?;
                out.push(byte);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    Ok(String::from_utf8_lossy(&out).into_owned())
}

/// Java `URLEncoder.encode(s, "UTF-8")`: ASCII letters, digits and `.-*_` stay, a space becomes
/// `+`, every other byte of the UTF-8 form becomes `%XX` (upper-case hex).
pub fn java_url_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for &b in s.as_bytes() {
        match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'.' | b'-' | b'*' | b'_' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// Parses `Listening-Configs` as received after form decoding; performs the second decoding.
/// Keys are deduplicated (the last record wins, as in Nacos's map) and returned in key order.
/// Text after the last line separator is ignored, as in `MD5Util`.
pub fn parse_listening_configs(s: &str) -> Result<Vec<ListenEntry>, Reject> {
    if s.trim().is_empty() {
        return Err(invalid(INVALID_PROBE_MODIFY));
    }
    let decoded = java_url_decode(s)?;
    let mut entries: BTreeMap<ConfigKey, String> = BTreeMap::new();
    let mut words: Vec<&str> = Vec::with_capacity(LISTEN_RECORD_SEPARATORS_MAX);
    let mut start = 0;
    for (i, c) in decoded.char_indices() {
        if c == WORD_SEPARATOR {
            words.push(&decoded[start..i]);
            start = i + 1;
            if words.len() > LISTEN_RECORD_SEPARATORS_MAX {
                return Err(invalid(TOO_MUCH_KEY));
            }
        } else if c == LINE_SEPARATOR {
            let last = &decoded[start..i];
            start = i + 1;
            let (key, md5) = match words.as_slice() {
                [data_id, group] => (ConfigKey::new("", group, data_id), last),
                [data_id, group, md5] => (ConfigKey::new(last, group, data_id), *md5),
                // Java indexes past the end of its list here; the controller reports it so.
                _ => return Err(invalid(INVALID_PROBE_MODIFY)),
            };
            entries.insert(key, md5.to_string());
            words.clear();
            if entries.len() > LISTEN_RECORDS_MAX {
                return Err(invalid(TOO_MUCH_LISTENER));
            }
        }
    }
    Ok(entries
        .into_iter()
        .map(|(key, md5)| ListenEntry { key, md5 })
        .collect())
}

/// The client side of the format, encoded once more so that a form-decoded value decodes back
/// to the records (what a Java client's value looks like after both encodings).
pub fn encode_listening_configs(entries: &[ListenEntry]) -> String {
    let mut joined = String::new();
    for e in entries {
        joined.push_str(&e.key.data_id);
        joined.push(WORD_SEPARATOR);
        joined.push_str(&e.key.group);
        joined.push(WORD_SEPARATOR);
        joined.push_str(&e.md5);
        if !e.key.tenant.is_empty() {
            joined.push(WORD_SEPARATOR);
            joined.push_str(&e.key.tenant);
        }
        joined.push(LINE_SEPARATOR);
    }
    java_url_encode(&joined)
}

/// The entries whose md5 differs from the server's (`lookup_md5` gives `""` for a missing key).
pub fn changed(
    entries: &[ListenEntry],
    lookup_md5: impl Fn(&ConfigKey) -> String,
) -> Vec<ListenEntry> {
    entries
        .iter()
        .filter(|e| e.md5 != lookup_md5(&e.key))
        .cloned()
        .collect()
}

/// The answer body naming `changed` keys (`MD5Util.compareMd5ResultString` then `println`):
/// for each, `dataId` 0x02 `group` [0x02 `tenant`] 0x01, URL-encoded once, plus `\n`.
/// Empty when nothing changed (a poll that timed out answers an empty body).
pub fn encode_changed(changed: &[ListenEntry]) -> String {
    if changed.is_empty() {
        return String::new();
    }
    let mut joined = String::new();
    for e in changed {
        joined.push_str(&e.key.data_id);
        joined.push(WORD_SEPARATOR);
        joined.push_str(&e.key.group);
        if !e.key.tenant.is_empty() {
            joined.push(WORD_SEPARATOR);
            joined.push_str(&e.key.tenant);
        }
        joined.push(LINE_SEPARATOR);
    }
    let mut body = java_url_encode(&joined);
    body.push('\n');
    body
}

/// Reads an answer body back into keys, as the Java client's `parseUpdateDataIdResponse` does.
pub fn decode_changed(body: &str) -> Result<Vec<ConfigKey>, Reject> {
    let decoded = java_url_decode(body.trim_end_matches(['\n', '\r']))?;
    let mut keys = Vec::new();
    for record in decoded.split(LINE_SEPARATOR).filter(|r| !r.is_empty()) {
        let words: Vec<&str> = record.split(WORD_SEPARATOR).collect();
        match words.as_slice() {
            [data_id, group] => keys.push(ConfigKey::new("", group, data_id)),
            [data_id, group, tenant] => keys.push(ConfigKey::new(tenant, group, data_id)),
            _ => return Err(invalid(INVALID_PROBE_MODIFY)),
        }
    }
    Ok(keys)
}

/// The hold time of a poll from its `Long-Pulling-Timeout` header: `None` without the header
/// (answer at once), else max(10000, header − 500) ms, capped at `LONG_POLL_HOLD_MAX_MS`. An
/// unparseable value holds for the minimum (Nacos would fail the request instead).
pub fn hold_ms(header: Option<&str>) -> Option<u64> {
    let raw = header?;
    let asked = raw.trim().parse::<i64>().unwrap_or(0);
    let hold = asked.saturating_sub(LONG_POLL_FIXED_DELAY_MS as i64);
    let hold = u64::try_from(hold).unwrap_or(0);
    Some(hold.clamp(LONG_POLL_HOLD_MIN_MS, LONG_POLL_HOLD_MAX_MS))
}

/// The keys one held poll watches, with the md5 its client holds, and who the client is (its
/// IP and `Vipserver-Tag`, to tell which gray changes concern it).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Watch {
    md5s: BTreeMap<ConfigKey, String>,
    client_ip: String,
    vipserver_tag: Option<String>,
}

impl Watch {
    /// A watch over `entries` for a client that no gray change concerns.
    pub fn new(entries: &[ListenEntry]) -> Watch {
        Watch::for_client(entries, "", None)
    }

    /// A watch over `entries` for the client at `client_ip` listening with `vipserver_tag`.
    pub fn for_client(
        entries: &[ListenEntry],
        client_ip: &str,
        vipserver_tag: Option<&str>,
    ) -> Watch {
        Watch {
            md5s: entries
                .iter()
                .map(|e| (e.key.clone(), e.md5.clone()))
                .collect(),
            client_ip: client_ip.to_string(),
            vipserver_tag: vipserver_tag
                .filter(|t| !super::gray::is_blank(t))
                .map(str::to_string),
        }
    }

    /// The watched entry `change` may concern, if any.
    fn concerned(&self, change: &ConfigChange) -> Option<&String> {
        let md5 = self.md5s.get(&change.key)?;
        change
            .concerns(&self.client_ip, self.vipserver_tag.as_deref())
            .then_some(md5)
    }

    /// The entry to answer with if `change` concerns a watched key and its md5 differs from
    /// the client's. A gray change that concerns the client answers without comparing (its md5
    /// need not be what the client is served; Nacos answers such polls unconditionally).
    pub fn on_change(&self, change: &ConfigChange) -> Option<ListenEntry> {
        let md5 = self.concerned(change)?;
        (change.gray.is_some() || *md5 != change.md5).then(|| ListenEntry {
            key: change.key.clone(),
            md5: md5.clone(),
        })
    }

    /// Like `on_change`, exactly: the entry to answer with if `change` concerns a watched key
    /// and the md5 the client is served now (`served_md5`, e.g. `ConfigStore::effective_md5`
    /// for this watch's client) differs from the client's.
    pub fn on_change_with(
        &self,
        change: &ConfigChange,
        served_md5: impl FnOnce(&ConfigKey) -> String,
    ) -> Option<ListenEntry> {
        let md5 = self.concerned(change)?;
        (*md5 != served_md5(&change.key)).then(|| ListenEntry {
            key: change.key.clone(),
            md5: md5.clone(),
        })
    }

    /// The client's IP and `Vipserver-Tag` (for `ConfigStore::effective_md5`).
    pub fn client(&self) -> (&str, Option<&str>) {
        (&self.client_ip, self.vipserver_tag.as_deref())
    }

    /// The watched entries, in key order (to re-check them all after missing changes).
    pub fn entries(&self) -> Vec<ListenEntry> {
        self.md5s
            .iter()
            .map(|(key, md5)| ListenEntry {
                key: key.clone(),
                md5: md5.clone(),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn entry(tenant: &str, group: &str, data_id: &str, md5: &str) -> ListenEntry {
        ListenEntry {
            key: ConfigKey::new(tenant, group, data_id),
            md5: md5.into(),
        }
    }

    #[test]
    fn parses_three_and_four_field_records_after_the_second_decoding() {
        // As received after form decoding: the Java client's separators are still `%02`/`%01`.
        let s = "app.yaml%02DEFAULT_GROUP%02abc%01db%02G%02%02ns1%01";
        assert_eq!(
            parse_listening_configs(s),
            Ok(vec![
                entry("", "DEFAULT_GROUP", "app.yaml", "abc"),
                entry("ns1", "G", "db", ""),
            ])
        );
        // Raw separators (a value that needs no second decoding) parse the same.
        assert_eq!(
            parse_listening_configs("a\u{2}g\u{2}m\u{1}"),
            Ok(vec![entry("", "g", "a", "m")])
        );
        // Text after the last line separator is ignored; a duplicate key keeps the last md5.
        assert_eq!(
            parse_listening_configs("a\u{2}g\u{2}m1\u{1}a\u{2}g\u{2}m2\u{1}tail"),
            Ok(vec![entry("", "g", "a", "m2")])
        );
    }

    #[test]
    fn rejects_with_nacos_messages() {
        let err = |m: &str| Err(Reject::InvalidParam(m.into()));
        assert_eq!(parse_listening_configs(""), err(INVALID_PROBE_MODIFY));
        assert_eq!(parse_listening_configs("  "), err(INVALID_PROBE_MODIFY));
        assert_eq!(
            parse_listening_configs("a%02b%02c%02d%02e%01"),
            err(TOO_MUCH_KEY)
        );
        assert_eq!(
            parse_listening_configs("a%02b%01"),
            err(INVALID_PROBE_MODIFY)
        );
        assert!(parse_listening_configs("a%0").is_err());
        let many: String = (0..=LISTEN_RECORDS_MAX)
            .map(|i| format!("d{i}\u{2}g\u{2}\u{1}"))
            .collect();
        assert_eq!(parse_listening_configs(&many), err(TOO_MUCH_LISTENER));
        let just_enough: String = (0..LISTEN_RECORDS_MAX)
            .map(|i| format!("d{i}\u{2}g\u{2}\u{1}"))
            .collect();
        assert_eq!(
            parse_listening_configs(&just_enough).map(|v| v.len()),
            Ok(LISTEN_RECORDS_MAX)
        );
    }

    #[test]
    fn answer_body_is_byte_exact() {
        // The reference's example: `app.yaml%02DEFAULT_GROUP%01` plus a line break.
        assert_eq!(
            encode_changed(&[entry("", "DEFAULT_GROUP", "app.yaml", "x")]),
            "app.yaml%02DEFAULT_GROUP%01\n"
        );
        assert_eq!(
            encode_changed(&[entry("", "G", "a", ""), entry("ns", "G:1", "b c", "")]),
            "a%02G%01b+c%02G%3A1%02ns%01\n"
        );
        assert_eq!(encode_changed(&[]), "");
    }

    #[test]
    fn changed_compares_with_the_server_md5() {
        let entries = [
            entry("", "g", "same", "m1"),
            entry("", "g", "stale", "old"),
            entry("", "g", "gone", "m2"),
            entry("", "g", "absent", ""),
        ];
        let server = |k: &ConfigKey| match k.data_id.as_str() {
            "same" => "m1".to_string(),
            "stale" => "new".to_string(),
            _ => String::new(),
        };
        assert_eq!(
            changed(&entries, server),
            vec![entries[1].clone(), entries[2].clone()]
        );
    }

    #[test]
    fn hold_time_follows_nacos() {
        assert_eq!(hold_ms(None), None);
        assert_eq!(hold_ms(Some("30000")), Some(29_500));
        assert_eq!(hold_ms(Some("10500")), Some(10_000));
        assert_eq!(hold_ms(Some("3000")), Some(LONG_POLL_HOLD_MIN_MS));
        assert_eq!(hold_ms(Some("-5")), Some(LONG_POLL_HOLD_MIN_MS));
        assert_eq!(hold_ms(Some("junk")), Some(LONG_POLL_HOLD_MIN_MS));
        assert_eq!(hold_ms(Some("99999999999")), Some(LONG_POLL_HOLD_MAX_MS));
    }

    #[test]
    fn watch_wakes_only_on_a_different_md5_of_a_watched_key() {
        let w = Watch::new(&[entry("", "g", "a", "m1")]);
        let change = |d: &str, md5: &str| ConfigChange {
            key: ConfigKey::new("", "g", d),
            md5: md5.into(),
            gray: None,
        };
        assert_eq!(w.on_change(&change("a", "m1")), None);
        assert_eq!(w.on_change(&change("b", "m9")), None);
        assert_eq!(
            w.on_change(&change("a", "")),
            Some(entry("", "g", "a", "m1"))
        );
    }

    #[test]
    fn gray_changes_concern_their_audience_only() {
        let k = ConfigKey::new("", "g", "a");
        let beta = ConfigChange {
            key: k.clone(),
            md5: "mb".into(),
            gray: Some(GrayAudience::Beta {
                ips: vec!["10.0.0.1".into()],
            }),
        };
        let tag = ConfigChange {
            key: k.clone(),
            md5: "mt".into(),
            gray: Some(GrayAudience::Tag { tag: "blue".into() }),
        };
        let main = ConfigChange {
            key: k.clone(),
            md5: "m2".into(),
            gray: None,
        };
        assert!(beta.concerns("10.0.0.1", None) && !beta.concerns("10.0.0.2", Some("blue")));
        assert!(tag.concerns("10.0.0.1", Some("blue")) && !tag.concerns("10.0.0.1", None));
        assert!(main.concerns("", None));
        let entries = [entry("", "g", "a", "m1")];
        // A watch without a client is concerned by main changes only, as before.
        let anonymous = Watch::new(&entries);
        assert_eq!(anonymous.on_change(&beta), None);
        assert_eq!(anonymous.on_change(&tag), None);
        assert_eq!(anonymous.on_change(&main), Some(entries[0].clone()));
        // A beta client: woken by its beta change, exactly when what it is served changed.
        let client = Watch::for_client(&entries, "10.0.0.1", Some(""));
        assert_eq!(client.client(), ("10.0.0.1", None));
        assert_eq!(client.on_change(&beta), Some(entries[0].clone()));
        assert_eq!(client.on_change(&tag), None);
        assert_eq!(client.on_change_with(&beta, |_| "m1".into()), None);
        assert_eq!(
            client.on_change_with(&beta, |_| "mb".into()),
            Some(entries[0].clone())
        );
        // A main change while the client is served its beta item: nothing to answer.
        assert_eq!(client.on_change_with(&main, |_| "m1".into()), None);
        let tagged = Watch::for_client(&entries, "10.0.0.7", Some("blue"));
        assert_eq!(
            tagged.on_change_with(&tag, |_| "mt".into()),
            Some(entries[0].clone())
        );
        assert_eq!(tagged.on_change_with(&beta, |_| "mb".into()), None);
        let unwatched = ConfigChange {
            key: ConfigKey::new("", "g", "b"),
            ..main.clone()
        };
        assert_eq!(tagged.on_change_with(&unwatched, |_| "x".into()), None);
    }

    #[test]
    fn a_replaced_table_reports_its_md5_differences() {
        use crate::config::{md5_hex, ConfigCommand, ConfigStore, PublishConfig};
        let publish = |d: &str, content: &str| {
            ConfigCommand::Publish(PublishConfig::new(ConfigKey::new("", "g", d), content))
        };
        let mut old = ConfigStore::new();
        old.apply(1, 1, &publish("same", "x"));
        old.apply(2, 1, &publish("edited", "v1"));
        old.apply(3, 1, &publish("removed", "r"));
        let mut new = old.clone();
        new.apply(4, 2, &publish("edited", "v2"));
        new.apply(5, 2, &publish("added", "a"));
        new.apply(
            6,
            2,
            &ConfigCommand::Remove {
                key: ConfigKey::new("", "g", "removed"),
                src_user: String::new(),
                src_ip: String::new(),
            },
        );
        let change = |d: &str, md5: String| ConfigChange {
            key: ConfigKey::new("", "g", d),
            md5,
            gray: None,
        };
        assert_eq!(
            old.md5_changes(&new),
            vec![
                change("added", md5_hex("a")),
                change("edited", md5_hex("v2")),
                change("removed", String::new()),
            ]
        );
    }

    fn part() -> impl Strategy<Value = String> {
        // Any text but the two separators: letters, `+`, `%`, spaces and non-ASCII included.
        "[a-zA-Z0-9_.:+% \\-é中]{1,12}"
    }

    proptest! {
        #[test]
        fn listening_configs_round_trip(
            raw in proptest::collection::vec(
                (part(), part(), "[0-9a-f]{0,32}", proptest::option::of(part())),
                1..20,
            )
        ) {
            let mut expected: BTreeMap<ConfigKey, String> = BTreeMap::new();
            let entries: Vec<ListenEntry> = raw
                .iter()
                .map(|(d, g, m, t)| entry(t.as_deref().unwrap_or(""), g, d, m))
                .collect();
            for e in &entries {
                expected.insert(e.key.clone(), e.md5.clone());
            }
            let parsed = parse_listening_configs(&encode_listening_configs(&entries))
                .expect("a well-formed value parses");
            let parsed: BTreeMap<ConfigKey, String> =
                parsed.into_iter().map(|e| (e.key, e.md5)).collect();
            prop_assert_eq!(parsed, expected);
            let body = encode_changed(&entries);
            let keys: Vec<ConfigKey> = entries.iter().map(|e| e.key.clone()).collect();
            prop_assert_eq!(decode_changed(&body).expect("decodes"), keys);
        }

        #[test]
        fn parsing_never_panics(s in "[\\x00-\\x7f%é]{0,64}") {
            let _ = parse_listening_configs(&s);
            let _ = decode_changed(&s);
        }
    }
}
