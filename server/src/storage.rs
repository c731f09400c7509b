//! `FileDisk`: the engine's `Disk` port over files in the data directory.
//!
//! Appends go to the end of the file and become durable at `sync` (fdatasync). `replace` writes
//! a temporary file, syncs it, renames it over the old one and syncs the directory, so a crash
//! leaves either the old or the new content, never a torn file.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use nacre_engine::error::Fatal;
use nacre_engine::ports::{Disk, DiskFile};

/// Files of one member under `dir`.
pub struct FileDisk {
    dir: PathBuf,
    // Open append handles, one per file, reused across calls: opening a file per append and
    // per fsync cost more than the write itself. The lock serializes appends, replaces and
    // truncations; an fsync runs outside it (on its own reference to the handle), so appends
    // made while a sync is in progress are not held up by it and join the next one (group
    // commit in the journal's flusher depends on that).
    handles: Mutex<BTreeMap<DiskFile, Arc<File>>>,
}

fn io(e: std::io::Error) -> Fatal {
    Fatal::Io(e.to_string())
}

impl FileDisk {
    /// Opens (creates) the data directory.
    pub fn open(dir: PathBuf) -> Result<FileDisk, Fatal> {
        fs::create_dir_all(&dir).map_err(io)?;
        Ok(FileDisk {
            dir,
            handles: Mutex::new(BTreeMap::new()),
        })
    }

    fn path(&self, file: DiskFile) -> PathBuf {
        self.dir.join(file.name())
    }

    fn sync_dir(&self) -> Result<(), Fatal> {
        File::open(&self.dir).and_then(|d| d.sync_all()).map_err(io)
    }

    fn handles(&self) -> std::sync::MutexGuard<'_, BTreeMap<DiskFile, Arc<File>>> {
        self.handles.lock().expect("disk lock poisoned")
    }

    /// The open append handle of `file` in `handles`, opened on first use.
    fn handle_in(
        &self,
        handles: &mut BTreeMap<DiskFile, Arc<File>>,
        file: DiskFile,
    ) -> Result<Arc<File>, Fatal> {
        if let Some(h) = handles.get(&file) {
            return Ok(h.clone());
        }
        let h = Arc::new(
            OpenOptions::new()
                .create(true)
                .append(true)
                .open(self.path(file))
                .map_err(io)?,
        );
        handles.insert(file, h.clone());
        Ok(h)
    }
}

impl Disk for FileDisk {
    fn append(&self, file: DiskFile, bytes: &[u8]) -> Result<(), Fatal> {
        let mut handles = self.handles();
        let h = self.handle_in(&mut handles, file)?;
        (&*h).write_all(bytes).map_err(io)
    }

    fn sync(&self, file: DiskFile) -> Result<(), Fatal> {
        // Everything appended before this call went through the same open file, so syncing
        // it covers them. A replace or truncate meanwhile syncs the new content itself.
        let h = {
            let mut handles = self.handles();
            self.handle_in(&mut handles, file)?
        };
        h.sync_data().map_err(io)
    }

    fn read(&self, file: DiskFile) -> Result<Option<Vec<u8>>, Fatal> {
        let _g = self.handles();
        match fs::read(self.path(file)) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io(e)),
        }
    }

    fn replace(&self, file: DiskFile, bytes: &[u8]) -> Result<(), Fatal> {
        let mut handles = self.handles();
        let tmp = self.dir.join(format!("{}.tmp", file.name()));
        let mut f = File::create(&tmp).map_err(io)?;
        f.write_all(bytes).map_err(io)?;
        f.sync_all().map_err(io)?;
        fs::rename(&tmp, self.path(file)).map_err(io)?;
        // The old handle points at the replaced inode: reopen on next use.
        handles.remove(&file);
        self.sync_dir()
    }

    fn truncate(&self, file: DiskFile, len: u64) -> Result<(), Fatal> {
        let mut handles = self.handles();
        handles.remove(&file);
        let f = OpenOptions::new()
            .write(true)
            .open(self.path(file))
            .map_err(io)?;
        f.set_len(len).map_err(io)?;
        f.sync_all().map_err(io)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn append_sync_replace_truncate_round_trip() {
        let dir = std::env::temp_dir().join(format!("nacre-filedisk-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let d = FileDisk::open(dir.clone()).expect("open");
        assert_eq!(d.read(DiskFile::Journal).expect("read"), None);
        d.append(DiskFile::Journal, b"abc").expect("append");
        d.append(DiskFile::Journal, b"def").expect("append");
        d.sync(DiskFile::Journal).expect("sync");
        assert_eq!(
            d.read(DiskFile::Journal).expect("read"),
            Some(b"abcdef".to_vec())
        );
        d.truncate(DiskFile::Journal, 4).expect("truncate");
        assert_eq!(
            d.read(DiskFile::Journal).expect("read"),
            Some(b"abcd".to_vec())
        );
        d.replace(DiskFile::Snapshot, b"snap").expect("replace");
        assert_eq!(
            d.read(DiskFile::Snapshot).expect("read"),
            Some(b"snap".to_vec())
        );
        let _ = fs::remove_dir_all(&dir);
    }
}
