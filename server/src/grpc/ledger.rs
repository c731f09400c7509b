//! Acknowledgement bookkeeping of the pushes on one connection (wire reference §4.5): every
//! naming and config push waits for its ack (a response on the stream carrying the push's
//! `requestId`); a push not acknowledged successfully within its timeout is due for a retry,
//! up to a bound. A newer push of the same subject replaces an older pending one, so a retry
//! always carries the current state. Pure: time is an argument.

use std::collections::BTreeMap;

use nacre_engine::config::ConfigKey;
use nacre_engine::naming::ServiceKey;

/// A naming push not acknowledged within this is retried (`pushTaskTimeout`).
pub const NAMING_PUSH_TIMEOUT_MS: u64 = 5_000;
/// A config push not acknowledged within this is retried (callback timeout).
pub const CONFIG_PUSH_TIMEOUT_MS: u64 = 3_000;
/// Attempts of one push before it is given up (`nacos.config.push.maxRetryTime` is 50).
pub const PUSH_ATTEMPTS_MAX: u32 = 50;

/// What a push is about; its body is rebuilt from the current state when it is sent.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Subject {
    /// `NotifySubscriberRequest` for a subscribed service.
    Service(ServiceKey),
    /// `ConfigChangeNotifyRequest` for a listened key, with the tenant as the client sent it.
    Config(ConfigKey, String),
}

impl Subject {
    fn timeout_ms(&self) -> u64 {
        match self {
            Subject::Service(_) => NAMING_PUSH_TIMEOUT_MS,
            Subject::Config(..) => CONFIG_PUSH_TIMEOUT_MS,
        }
    }
}

#[derive(Debug, Clone)]
struct Pending {
    subject: Subject,
    sent_ms: u64,
    attempts: u32,
}

/// The pending pushes of one connection, by `requestId`.
#[derive(Debug, Default)]
pub struct Ledger {
    pending: BTreeMap<String, Pending>,
}

impl Ledger {
    /// Records push `id` about `subject` sent at `now`; returns its attempt number (1 for a
    /// fresh push, more when it replaces a pending push of the same subject).
    pub fn sent(&mut self, id: &str, subject: Subject, now: u64, attempts: u32) -> u32 {
        let previous = self
            .pending
            .iter()
            .find(|(_, p)| p.subject == subject)
            .map(|(k, p)| (k.clone(), p.attempts));
        let attempts = match previous {
            Some((old_id, old_attempts)) => {
                self.pending.remove(&old_id);
                attempts.max(old_attempts)
            }
            None => attempts,
        };
        self.pending.insert(
            id.to_string(),
            Pending {
                subject,
                sent_ms: now,
                attempts,
            },
        );
        attempts
    }

    /// An ack for push `id`: a success clears it; a failure leaves it to time out and retry.
    pub fn acked(&mut self, id: &str, success: bool) {
        if success {
            self.pending.remove(id);
        }
    }

    /// Removes and returns the pushes whose timeout has passed at `now`, with the attempt
    /// number of their retry, and whether a push ran out of attempts (it is dropped; the
    /// caller gives the connection up, as Nacos unregisters it).
    pub fn due(&mut self, now: u64) -> (Vec<(Subject, u32)>, bool) {
        let expired: Vec<String> = self
            .pending
            .iter()
            .filter(|(_, p)| now.saturating_sub(p.sent_ms) >= p.subject.timeout_ms())
            .map(|(k, _)| k.clone())
            .collect();
        let mut out = Vec::new();
        let mut gave_up = false;
        for id in expired {
            if let Some(p) = self.pending.remove(&id) {
                if p.attempts < PUSH_ATTEMPTS_MAX {
                    out.push((p.subject, p.attempts + 1));
                } else {
                    gave_up = true;
                    tracing::warn!(
                        "push about {:?} given up after {} attempts",
                        p.subject,
                        p.attempts
                    );
                }
            }
        }
        (out, gave_up)
    }

    /// Number of unacknowledged pushes.
    pub fn len(&self) -> usize {
        self.pending.len()
    }

    /// True when every push was acknowledged.
    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn svc() -> Subject {
        Subject::Service(ServiceKey::new("public", "G", "s"))
    }

    #[test]
    fn acked_pushes_are_cleared_and_silent_ones_retried() {
        let mut l = Ledger::default();
        l.sent("1", svc(), 0, 1);
        let cfg = Subject::Config(ConfigKey::new("", "g", "d"), String::new());
        l.sent("2", cfg.clone(), 0, 1);
        l.acked("1", true);
        assert_eq!(l.len(), 1);
        assert!(l.due(2_999).0.is_empty());
        assert_eq!(
            l.due(3_000),
            (vec![(cfg, 2)], false),
            "config pushes time out after 3 s"
        );
        assert_eq!(l.len(), 0);
        // A failed ack does not clear; the push is retried after its timeout.
        l.sent("3", svc(), 10_000, 1);
        l.acked("3", false);
        assert!(l.due(14_999).0.is_empty());
        assert_eq!(l.due(15_000), (vec![(svc(), 2)], false));
    }

    #[test]
    fn a_newer_push_replaces_the_pending_one_and_attempts_are_bounded() {
        let mut l = Ledger::default();
        l.sent("1", svc(), 0, 3);
        assert_eq!(l.sent("2", svc(), 100, 1), 3, "keeps the attempt count");
        assert_eq!(l.len(), 1);
        l.acked("1", true);
        assert_eq!(l.len(), 1, "the old id no longer counts");
        l.sent("9", svc(), 0, PUSH_ATTEMPTS_MAX);
        assert_eq!(
            l.due(1_000_000),
            (vec![], true),
            "out of attempts: dropped, and said so"
        );
        assert_eq!(l.len(), 0);
    }
}
