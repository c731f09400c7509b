//! The journal: the on-disk form of the Raft log, vote and commit point.
//!
//! An append-only sequence of framed records (`wire::frame`). Recovery replays the records in
//! order. A damaged record at the very end is a torn tail from a crash mid-write: it and
//! anything after it are cut off, which loses nothing acknowledged, because an append is
//! acknowledged only after its fsync. A damaged record followed by intact data is corruption of
//! synced data: recovery refuses with `Fatal::Corrupt` rather than silently forgetting entries
//! this member may have promised to a leader (field lessons §4.5).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::type_config::{Entry, LogId, Vote};
use crate::error::{DecodeError, Fatal};
use crate::wire::frame::{decode_frame, FRAME_HEADER_BYTES};

/// One journal record.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum JournalRecord {
    Entries(Vec<Entry>),
    Vote(Vote),
    Committed(Option<LogId>),
    /// Entries at and after this index were removed.
    Truncate(u64),
    /// Entries up to and including this log id were purged behind a snapshot.
    Purge(LogId),
}

/// The log state rebuilt from a journal.
#[derive(Debug, Default)]
pub struct Recovered {
    pub entries: BTreeMap<u64, Entry>,
    pub vote: Option<Vote>,
    pub committed: Option<LogId>,
    pub last_purged: Option<LogId>,
    /// Bytes of intact records; anything after is a torn tail to cut off.
    pub valid_len: u64,
    /// Whether a torn tail was found.
    pub torn_tail: bool,
}

impl Recovered {
    fn apply(&mut self, record: JournalRecord) {
        match record {
            JournalRecord::Entries(entries) => {
                for e in entries {
                    self.entries.insert(e.log_id.index, e);
                }
            }
            JournalRecord::Vote(v) => self.vote = Some(v),
            JournalRecord::Committed(c) => self.committed = c,
            JournalRecord::Truncate(since) => {
                self.entries.split_off(&since);
            }
            JournalRecord::Purge(log_id) => {
                self.entries = self.entries.split_off(&(log_id.index + 1));
                self.last_purged = Some(log_id);
            }
        }
    }
}

/// Replays journal bytes. See the module header for the torn-tail rule.
pub fn replay(bytes: &[u8]) -> Result<Recovered, Fatal> {
    let mut rec = Recovered::default();
    let mut at = 0usize;
    while at < bytes.len() {
        match decode_record(&bytes[at..]) {
            Ok((record, used)) => {
                rec.apply(record);
                at += used;
            }
            Err(err) if is_tail(&bytes[at..], &err) => {
                crate::coverage::hit(crate::coverage::Mark::JournalTornTailCut);
                rec.torn_tail = true;
                break;
            }
            Err(err) => {
                crate::coverage::hit(crate::coverage::Mark::JournalCorruptRefused);
                return Err(Fatal::Corrupt {
                    what: "raft journal",
                    detail: format!("record at byte {at}: {err}"),
                });
            }
        }
    }
    rec.valid_len = at as u64;
    Ok(rec)
}

/// Decodes one record from the front of `buf`.
pub fn decode_record(buf: &[u8]) -> Result<(JournalRecord, usize), DecodeError> {
    crate::wire::frame::decode_msg(buf)
}

/// A bad record is a torn tail only when no intact record starts anywhere after it: the journal
/// is written sequentially, so a crash can only damage its end. Any intact frame behind the
/// damage means synced data was corrupted (even a flipped length field that points past the
/// end of the file, which looks like a tear on its own).
fn is_tail(rest: &[u8], err: &DecodeError) -> bool {
    if matches!(err, DecodeError::Truncated { .. }) && rest.len() < FRAME_HEADER_BYTES {
        return true;
    }
    !(1..rest.len()).any(|i| decode_frame(&rest[i..]).is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::frame::encode_msg;
    use openraft::{CommittedLeaderId, EntryPayload};

    fn entry(index: u64) -> Entry {
        Entry {
            log_id: LogId::new(CommittedLeaderId::new(1, 0), index),
            payload: EntryPayload::Blank,
        }
    }

    fn journal(records: &[JournalRecord]) -> Vec<u8> {
        records.iter().flat_map(encode_msg).collect()
    }

    #[test]
    fn replays_entries_truncate_and_purge() {
        let bytes = journal(&[
            JournalRecord::Entries((1..=5).map(entry).collect()),
            JournalRecord::Truncate(4),
            JournalRecord::Purge(entry(2).log_id),
        ]);
        let rec = replay(&bytes).expect("intact journal");
        assert_eq!(rec.entries.keys().copied().collect::<Vec<_>>(), vec![3]);
        assert_eq!(rec.last_purged, Some(entry(2).log_id));
        assert!(!rec.torn_tail);
        assert_eq!(rec.valid_len, bytes.len() as u64);
    }

    #[test]
    fn torn_tail_is_cut_at_every_length() {
        let first = journal(&[JournalRecord::Entries(vec![entry(1)])]);
        let second = journal(&[JournalRecord::Entries(vec![entry(2)])]);
        for cut in 1..second.len() {
            let mut bytes = first.clone();
            bytes.extend_from_slice(&second[..cut]);
            let rec = replay(&bytes).expect("torn tail is not fatal");
            assert!(rec.torn_tail);
            assert_eq!(rec.valid_len, first.len() as u64);
            assert_eq!(rec.entries.len(), 1);
        }
    }

    #[test]
    fn a_corrupted_length_field_is_not_mistaken_for_a_torn_tail() {
        let mut bytes = journal(&[
            JournalRecord::Entries(vec![entry(1)]),
            JournalRecord::Entries(vec![entry(2)]),
        ]);
        bytes[7] ^= 0x40; // high byte of the first record's length
        assert!(matches!(replay(&bytes), Err(Fatal::Corrupt { .. })));
    }

    #[test]
    fn corruption_before_intact_data_is_fatal() {
        let mut bytes = journal(&[
            JournalRecord::Entries(vec![entry(1)]),
            JournalRecord::Entries(vec![entry(2)]),
        ]);
        bytes[FRAME_HEADER_BYTES + 1] ^= 0x40;
        assert!(matches!(replay(&bytes), Err(Fatal::Corrupt { .. })));
    }
}
