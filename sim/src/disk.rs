//! An in-memory disk per member that survives the member's crash and injects storage faults.
//!
//! Each file holds a synced part and an unsynced part. A crash models power loss: the unsynced
//! part is dropped, or, with torn tails enabled, a random prefix of it survives (a write cut
//! mid-record). `corrupt_synced` flips a bit inside synced data, which recovery must detect by
//! checksum and refuse. The fault RNG is seeded from the run seed (STYLE 2).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use nacre_engine::error::Fatal;
use nacre_engine::ports::{Disk, DiskFile};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

#[derive(Debug, Default, Clone)]
struct FileState {
    synced: Vec<u8>,
    unsynced: Vec<u8>,
}

struct DiskState {
    files: BTreeMap<DiskFile, FileState>,
    rng: ChaCha8Rng,
    torn_tail: bool,
    syncs: u64,
    torn_tails_made: u64,
}

/// A member's simulated disk; clones share it.
#[derive(Clone)]
pub struct SimDisk {
    inner: Arc<Mutex<DiskState>>,
}

impl SimDisk {
    /// A new empty disk whose fault choices come from `seed`.
    pub fn new(seed: u64, torn_tail: bool) -> SimDisk {
        SimDisk {
            inner: Arc::new(Mutex::new(DiskState {
                files: BTreeMap::new(),
                rng: ChaCha8Rng::seed_from_u64(seed),
                torn_tail,
                syncs: 0,
                torn_tails_made: 0,
            })),
        }
    }

    fn lock(&self) -> MutexGuard<'_, DiskState> {
        self.inner.lock().expect("sim disk lock poisoned")
    }

    /// Power loss: unsynced bytes are lost, or a random prefix of them survives as a torn tail.
    pub fn crash(&self) {
        let mut s = self.lock();
        let torn = s.torn_tail;
        let files: Vec<DiskFile> = s.files.keys().copied().collect();
        for f in files {
            let pending = s.files[&f].unsynced.len();
            let keep = if torn && pending > 0 {
                s.rng.gen_range(0..=pending)
            } else {
                0
            };
            if keep > 0 && keep < pending {
                s.torn_tails_made += 1;
            }
            let file = s.files.get_mut(&f).expect("listed above");
            let kept: Vec<u8> = file.unsynced.drain(..).take(keep).collect();
            file.synced.extend_from_slice(&kept);
        }
    }

    /// Flips one bit inside the synced part of the journal, away from its last record, so that
    /// recovery sees corruption followed by intact data. Returns false if the journal is too
    /// short to corrupt meaningfully.
    pub fn corrupt_synced(&self) -> bool {
        let mut s = self.lock();
        let len = s
            .files
            .get(&DiskFile::Journal)
            .map(|f| f.synced.len())
            .unwrap_or(0);
        if len < 256 {
            return false;
        }
        // The first half of the journal: at least one intact record follows.
        let at = s.rng.gen_range(16..len / 2);
        let bit = s.rng.gen_range(0..8u8);
        let file = s.files.get_mut(&DiskFile::Journal).expect("length checked");
        file.synced[at] ^= 1 << bit;
        true
    }

    /// Bytes stored per file (synced + unsynced), for the disk-bound report.
    pub fn sizes(&self) -> BTreeMap<DiskFile, usize> {
        self.lock()
            .files
            .iter()
            .map(|(k, f)| (*k, f.synced.len() + f.unsynced.len()))
            .collect()
    }

    /// Number of syncs and of torn tails produced so far.
    pub fn counters(&self) -> (u64, u64) {
        let s = self.lock();
        (s.syncs, s.torn_tails_made)
    }
}

impl Disk for SimDisk {
    fn append(&self, file: DiskFile, bytes: &[u8]) -> Result<(), Fatal> {
        self.lock()
            .files
            .entry(file)
            .or_default()
            .unsynced
            .extend_from_slice(bytes);
        Ok(())
    }

    fn sync(&self, file: DiskFile) -> Result<(), Fatal> {
        let mut s = self.lock();
        s.syncs += 1;
        let f = s.files.entry(file).or_default();
        let pending = std::mem::take(&mut f.unsynced);
        f.synced.extend_from_slice(&pending);
        Ok(())
    }

    fn read(&self, file: DiskFile) -> Result<Option<Vec<u8>>, Fatal> {
        Ok(self.lock().files.get(&file).map(|f| {
            let mut all = f.synced.clone();
            all.extend_from_slice(&f.unsynced);
            all
        }))
    }

    fn replace(&self, file: DiskFile, bytes: &[u8]) -> Result<(), Fatal> {
        let mut s = self.lock();
        s.syncs += 1;
        s.files.insert(
            file,
            FileState {
                synced: bytes.to_vec(),
                unsynced: Vec::new(),
            },
        );
        Ok(())
    }

    fn truncate(&self, file: DiskFile, len: u64) -> Result<(), Fatal> {
        let mut s = self.lock();
        let f = s.files.entry(file).or_default();
        let mut all = std::mem::take(&mut f.synced);
        all.extend_from_slice(&f.unsynced);
        all.truncate(len as usize);
        *f = FileState {
            synced: all,
            unsynced: Vec::new(),
        };
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crash_drops_unsynced_without_torn_tails() {
        let d = SimDisk::new(1, false);
        d.append(DiskFile::Journal, b"aaaa").expect("append");
        d.sync(DiskFile::Journal).expect("sync");
        d.append(DiskFile::Journal, b"bbbb").expect("append");
        d.crash();
        assert_eq!(
            d.read(DiskFile::Journal).expect("read"),
            Some(b"aaaa".to_vec())
        );
    }

    #[test]
    fn torn_tail_keeps_a_prefix_of_unsynced_bytes() {
        let d = SimDisk::new(7, true);
        d.append(DiskFile::Journal, b"aaaa").expect("append");
        d.sync(DiskFile::Journal).expect("sync");
        d.append(DiskFile::Journal, b"bbbbbbbb").expect("append");
        d.crash();
        let got = d.read(DiskFile::Journal).expect("read").expect("exists");
        assert!(got.starts_with(b"aaaa"));
        assert!(got.len() <= 12);
        assert!(got[4..].iter().all(|b| *b == b'b'));
    }

    #[test]
    fn replace_is_durable() {
        let d = SimDisk::new(1, true);
        d.replace(DiskFile::Snapshot, b"snap").expect("replace");
        d.crash();
        assert_eq!(
            d.read(DiskFile::Snapshot).expect("read"),
            Some(b"snap".to_vec())
        );
    }
}
