//! `MemDisk`: an in-memory model of one machine's disk with true fsync semantics, and
//! `MemStorage`, the clonable `Storage` handle over it.
//!
//! Model:
//! - Every file has `current` bytes (what reads see) and `durable` bytes (what survives a
//!   crash). `StorageFile::sync` copies current to durable.
//! - `crash()` reverts every file to its durable bytes: unsynced appends and truncations
//!   are lost, and a file whose bytes were never synced comes back empty.
//! - Directory entries have the same two states: the namespace reads see (`names`, `dirs`)
//!   and the one a crash leaves (`durable_names`, `durable_dirs`). Creating, renaming and
//!   removing a file or directory changes only the first; `sync_dir(dir)` makes the entries
//!   directly inside `dir` durable as they are (POSIX: an entry is durable once its
//!   directory is fsynced). After a crash a file exists only if its entry was made durable
//!   and every directory above it was too; a rename or removal that was never synced is
//!   undone. So a missing directory sync loses data here exactly as it can on a real disk.
//! - Files are inodes: an open handle keeps working after its name is removed or renamed,
//!   as on POSIX. A crash invalidates every open handle (the process died with it):
//!   later calls through an old handle fail instead of writing into the new epoch.
//!
//! Fault hooks: `crash_with` / `crash_torn` decide what each file's unsynced tail becomes (torn writes:
//! a clean prefix, then optionally zeros or garbage where the size reached the disk but the
//! data did not), `corrupt_byte` flips a byte in durable data, `set_capacity_bytes` makes
//! appends fail with `StorageFull` (ENOSPC). Counters in `MemDiskStats` let tests check
//! how often code syncs.

use super::{Storage, StorageFile};
use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

/// Counters of what the disk was asked to do, for tests and fault plans.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MemDiskStats {
    pub appends: u64,
    pub bytes_appended: u64,
    pub file_syncs: u64,
    pub dir_syncs: u64,
    pub crashes: u64,
}

#[derive(Debug, Default)]
struct Inode {
    current: Vec<u8>,
    durable: Vec<u8>,
    /// True while `durable` is a prefix of `current` (only appends since the last sync),
    /// so a sync copies just the new tail instead of the whole file: the lab syncs after
    /// every message, and whole-file copies made long runs quadratic.
    durable_is_prefix: bool,
    /// Current names pointing at this inode (0 or 1: there are no hard links).
    links: u32,
    /// Durable names pointing at this inode (a rename or removal not yet synced leaves the
    /// old durable name in place).
    durable_links: u32,
    /// Open handles of the current generation.
    handles: u32,
}

/// One machine's disk. See the module docs for the model.
#[derive(Debug, Default)]
pub struct MemDisk {
    dirs: BTreeSet<PathBuf>,
    names: BTreeMap<PathBuf, u64>,
    /// The directories and file names a crash would leave (see the module docs).
    durable_dirs: BTreeSet<PathBuf>,
    durable_names: BTreeMap<PathBuf, u64>,
    inodes: BTreeMap<u64, Inode>,
    inode_next: u64,
    /// Bumped by every crash; handles from an older generation are dead.
    generation: u64,
    capacity_bytes: Option<u64>,
    /// What every file or directory sync costs (the slow-fsync fault); zero by default.
    sync_delay: std::time::Duration,
    /// Accumulated by syncs, taken by `take_sync_delay`.
    sync_delay_owed: std::time::Duration,
    stats: MemDiskStats,
}

fn not_found(path: &Path) -> io::Error {
    io::Error::new(
        io::ErrorKind::NotFound,
        format!("{}: no such file or directory", path.display()),
    )
}

fn is_root(dir: &Path) -> bool {
    dir.as_os_str().is_empty() || dir == Path::new("/")
}

impl MemDisk {
    pub fn new() -> MemDisk {
        MemDisk::default()
    }

    /// Make every later sync cost `delay` of simulated time (see `Storage::take_sync_delay`).
    pub fn set_sync_delay(&mut self, delay: std::time::Duration) {
        self.sync_delay = delay;
    }

    /// The simulated time owed by syncs since the last call.
    pub fn take_sync_delay(&mut self) -> std::time::Duration {
        std::mem::take(&mut self.sync_delay_owed)
    }

    /// Appends fail with `StorageFull` once the files' current bytes would exceed this.
    pub fn set_capacity_bytes(&mut self, capacity_bytes: Option<u64>) {
        self.capacity_bytes = capacity_bytes;
    }

    /// Current bytes of all files (removed files still open count too).
    pub fn used_bytes(&self) -> u64 {
        self.inodes.values().map(|i| i.current.len() as u64).sum()
    }

    pub fn stats(&self) -> MemDiskStats {
        self.stats
    }

    /// The bytes a reader sees now, or None if no such file.
    pub fn current_bytes(&self, path: &Path) -> Option<&[u8]> {
        let ino = self.names.get(path)?;
        Some(&self.inodes[ino].current)
    }

    /// The bytes that would survive a crash now, or None if no such file.
    pub fn durable_bytes(&self, path: &Path) -> Option<&[u8]> {
        let ino = self.names.get(path)?;
        Some(&self.inodes[ino].durable)
    }

    /// Every file's path, sorted (for fault injection that picks a file).
    pub fn file_paths(&self) -> Vec<PathBuf> {
        self.names.keys().cloned().collect()
    }

    /// Power loss: every file reverts to its durable bytes and open handles die.
    pub fn crash(&mut self) {
        self.crash_torn(&mut |_, _| TornTail::cut(0));
    }

    /// Power loss where `keep(path, unsynced_bytes)` of each file's unsynced appended tail
    /// survive as written and nothing after them (a clean cut; see `crash_torn`).
    pub fn crash_with(&mut self, keep: &mut dyn FnMut(&Path, usize) -> usize) {
        self.crash_torn(&mut |path, unsynced| TornTail::cut(keep(path, unsynced)));
    }

    /// Power loss with torn writes: the namespace reverts to its durable entries (see the
    /// module docs), and for each surviving file whose unsynced change is a pure append
    /// (durable bytes are a prefix of current bytes), `tear(path, unsynced_bytes)` says
    /// what became of the unsynced tail (clamped to it); other unsynced changes
    /// (truncations, rewrites) are lost whole. Calls come in path order, so a seeded
    /// random `tear` is deterministic.
    pub fn crash_torn(&mut self, tear: &mut dyn FnMut(&Path, usize) -> TornTail) {
        self.stats.crashes += 1;
        self.generation += 1;
        // The namespace a crash leaves: durable entries whose every ancestor is durable.
        let dirs: BTreeSet<PathBuf> = self
            .durable_dirs
            .iter()
            .filter(|d| reachable(d, &self.durable_dirs))
            .cloned()
            .collect();
        let names: BTreeMap<PathBuf, u64> = self
            .durable_names
            .iter()
            .filter(|(p, _)| p.parent().is_none_or(|d| is_root(d) || dirs.contains(d)))
            .map(|(p, ino)| (p.clone(), *ino))
            .collect();
        self.dirs.clone_from(&dirs);
        self.durable_dirs = dirs;
        self.names.clone_from(&names);
        self.durable_names = names;
        for inode in self.inodes.values_mut() {
            inode.links = 0;
            inode.durable_links = 0;
            inode.handles = 0;
        }
        for ino in self.names.values() {
            let inode = self.inodes.get_mut(ino).expect("every name has an inode");
            inode.links += 1;
            inode.durable_links += 1;
        }
        // Files with no surviving name only lived on through handles, which are now gone.
        self.inodes.retain(|_, inode| inode.links > 0);
        for (path, ino) in &self.names {
            let inode = self.inodes.get_mut(ino).expect("every name has an inode");
            let durable_len = inode.durable.len();
            let is_pure_append = inode.current.len() > durable_len
                && (inode.durable_is_prefix || inode.current[..durable_len] == inode.durable[..]);
            if is_pure_append {
                let unsynced = inode.current.len() - durable_len;
                let torn = tear(path, unsynced);
                let kept = torn.kept.min(unsynced);
                inode.current.truncate(durable_len + kept);
                if let Some(flip) = torn.flip.filter(|&i| i < kept) {
                    inode.current[durable_len + flip] ^= 0xff;
                }
                let fill_len = torn.fill.len().min(unsynced - kept);
                match torn.fill {
                    Fill::Nothing => {}
                    Fill::Zeros(_) => inode.current.resize(durable_len + kept + fill_len, 0),
                    Fill::Garbage { seed, .. } => {
                        let mut rng = crate::mix::SplitMix64::new(seed);
                        inode
                            .current
                            .extend((0..fill_len).map(|_| rng.next_u64() as u8));
                    }
                }
                inode.durable.clone_from(&inode.current);
            } else {
                inode.current.clone_from(&inode.durable);
            }
            inode.durable_is_prefix = true;
        }
    }

    /// Media corruption: flips every bit of the byte at `offset`, in both the current and
    /// the durable contents.
    pub fn corrupt_byte(&mut self, path: &Path, offset: u64) -> io::Result<()> {
        let ino = *self.names.get(path).ok_or_else(|| not_found(path))?;
        let inode = self.inodes.get_mut(&ino).expect("every name has an inode");
        let offset = usize::try_from(offset).unwrap_or(usize::MAX);
        let mut hit = false;
        for bytes in [&mut inode.current, &mut inode.durable] {
            if let Some(b) = bytes.get_mut(offset) {
                *b ^= 0xff;
                hit = true;
            }
        }
        if !hit {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{}: offset {offset} is past the end", path.display()),
            ));
        }
        Ok(())
    }

    fn dir_exists(&self, dir: &Path) -> bool {
        is_root(dir) || self.dirs.contains(dir)
    }

    fn parent_exists(&self, path: &Path) -> bool {
        path.parent().is_none_or(|p| self.dir_exists(p))
    }

    fn unlink(&mut self, ino: u64) {
        let inode = self.inodes.get_mut(&ino).expect("every name has an inode");
        inode.links -= 1;
        self.release(ino);
    }

    /// Forget an inode nothing refers to any more (no name, durable or current, and no
    /// open handle).
    fn release(&mut self, ino: u64) {
        let inode = &self.inodes[&ino];
        if inode.links == 0 && inode.durable_links == 0 && inode.handles == 0 {
            self.inodes.remove(&ino);
        }
    }

    fn create_dir_all(&mut self, dir: &Path) -> io::Result<()> {
        for ancestor in dir.ancestors() {
            if is_root(ancestor) {
                break;
            }
            if self.names.contains_key(ancestor) {
                return Err(io::Error::new(
                    io::ErrorKind::NotADirectory,
                    format!("{} is a file", ancestor.display()),
                ));
            }
            self.dirs.insert(ancestor.to_path_buf());
        }
        Ok(())
    }

    fn list_dir(&self, dir: &Path) -> io::Result<Vec<String>> {
        if !self.dir_exists(dir) {
            return Err(not_found(dir));
        }
        let children = self.dirs.iter().chain(self.names.keys());
        let names: BTreeSet<String> = children
            .filter(|p| p.parent() == Some(dir))
            .filter_map(|p| p.file_name())
            .map(|n| n.to_string_lossy().into_owned())
            .collect();
        Ok(names.into_iter().collect())
    }

    fn open(&mut self, path: &Path, create: bool) -> io::Result<(u64, u64)> {
        let ino = match self.names.get(path) {
            Some(&ino) => ino,
            None => {
                if self.dir_exists(path) {
                    return Err(io::Error::new(
                        io::ErrorKind::IsADirectory,
                        format!("{} is a directory", path.display()),
                    ));
                }
                if !create || !self.parent_exists(path) {
                    return Err(not_found(path));
                }
                let ino = self.inode_next;
                self.inode_next += 1;
                self.inodes.insert(
                    ino,
                    Inode {
                        links: 1,
                        durable_is_prefix: true,
                        ..Inode::default()
                    },
                );
                self.names.insert(path.to_path_buf(), ino);
                ino
            }
        };
        self.inodes.get_mut(&ino).expect("named inode").handles += 1;
        Ok((ino, self.generation))
    }

    fn remove_file(&mut self, path: &Path) -> io::Result<()> {
        let ino = self.names.remove(path).ok_or_else(|| not_found(path))?;
        self.unlink(ino);
        Ok(())
    }

    fn remove_dir_all(&mut self, dir: &Path) -> io::Result<()> {
        if is_root(dir) || !self.dirs.contains(dir) {
            return Err(not_found(dir));
        }
        self.dirs.retain(|d| !d.starts_with(dir));
        let doomed: Vec<PathBuf> = self
            .names
            .keys()
            .filter(|p| p.starts_with(dir))
            .cloned()
            .collect();
        for path in doomed {
            let ino = self.names.remove(&path).expect("listed above");
            self.unlink(ino);
        }
        Ok(())
    }

    fn rename(&mut self, from: &Path, to: &Path) -> io::Result<()> {
        if !self.parent_exists(to) {
            return Err(not_found(to));
        }
        if let Some(ino) = self.names.remove(from) {
            if self.dirs.contains(to) {
                self.names.insert(from.to_path_buf(), ino);
                return Err(io::Error::new(
                    io::ErrorKind::IsADirectory,
                    format!("{} is a directory", to.display()),
                ));
            }
            if let Some(old) = self.names.insert(to.to_path_buf(), ino) {
                self.unlink(old);
            }
            return Ok(());
        }
        if is_root(from) || !self.dirs.contains(from) {
            return Err(not_found(from));
        }
        if self.names.contains_key(to) || to.starts_with(from) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("cannot rename {} to {}", from.display(), to.display()),
            ));
        }
        if self.dirs.contains(to) && !self.list_dir(to)?.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::DirectoryNotEmpty,
                format!("{} is not empty", to.display()),
            ));
        }
        let moved = |p: &Path| to.join(p.strip_prefix(from).expect("under from"));
        let dirs: Vec<PathBuf> = self
            .dirs
            .iter()
            .filter(|d| d.starts_with(from))
            .cloned()
            .collect();
        for d in dirs {
            self.dirs.remove(&d);
            self.dirs.insert(moved(&d));
        }
        let files: Vec<PathBuf> = self
            .names
            .keys()
            .filter(|p| p.starts_with(from))
            .cloned()
            .collect();
        for p in files {
            let ino = self.names.remove(&p).expect("listed above");
            self.names.insert(moved(&p), ino);
        }
        Ok(())
    }

    fn exists(&self, path: &Path) -> bool {
        self.names.contains_key(path) || self.dir_exists(path)
    }

    fn sync_dir(&mut self, dir: &Path) -> io::Result<()> {
        if !self.dir_exists(dir) {
            return Err(not_found(dir));
        }
        // The entries directly inside `dir` become durable exactly as they are now.
        let inside = |p: &Path| p.parent() == Some(dir);
        // Names sort by component, so a directory's subtree is one range of each map.
        let subtree = |p: &&PathBuf| p.starts_with(dir);
        let old: Vec<(PathBuf, u64)> = self
            .durable_names
            .range(dir.to_path_buf()..)
            .take_while(|(p, _)| subtree(p))
            .filter(|(p, _)| inside(p))
            .map(|(p, ino)| (p.clone(), *ino))
            .collect();
        for (path, ino) in &old {
            self.durable_names.remove(path);
            self.inodes.get_mut(ino).expect("named inode").durable_links -= 1;
        }
        let new: Vec<(PathBuf, u64)> = self
            .names
            .range(dir.to_path_buf()..)
            .take_while(|(p, _)| subtree(p))
            .filter(|(p, _)| inside(p))
            .map(|(p, ino)| (p.clone(), *ino))
            .collect();
        for (path, ino) in new {
            self.inodes
                .get_mut(&ino)
                .expect("named inode")
                .durable_links += 1;
            self.durable_names.insert(path, ino);
        }
        for (_, ino) in old {
            if self.inodes.contains_key(&ino) {
                self.release(ino);
            }
        }
        self.durable_dirs.retain(|d| !inside(d));
        let subdirs: Vec<PathBuf> = self.dirs.iter().filter(|d| inside(d)).cloned().collect();
        self.durable_dirs.extend(subdirs);
        self.stats.dir_syncs += 1;
        self.sync_delay_owed += self.sync_delay;
        Ok(())
    }

    /// The inode behind a live handle, or an error if a crash killed the handle.
    fn inode(&mut self, ino: u64, generation: u64) -> io::Result<&mut Inode> {
        if generation != self.generation {
            return Err(io::Error::other("stale file handle: the disk crashed"));
        }
        Ok(self.inodes.get_mut(&ino).expect("open handles keep inodes"))
    }

    fn append(&mut self, ino: u64, generation: u64, data: &[u8]) -> io::Result<()> {
        if let Some(capacity) = self.capacity_bytes {
            if self.used_bytes() + data.len() as u64 > capacity {
                return Err(io::Error::new(
                    io::ErrorKind::StorageFull,
                    "no space left on device (simulated)",
                ));
            }
        }
        self.inode(ino, generation)?.current.extend_from_slice(data);
        self.stats.appends += 1;
        self.stats.bytes_appended += data.len() as u64;
        if let Some(capacity) = self.capacity_bytes {
            assert!(
                self.used_bytes() <= capacity,
                "the disk holds more than it can"
            );
        }
        Ok(())
    }

    fn close(&mut self, ino: u64, generation: u64) {
        if generation != self.generation {
            return;
        }
        let inode = self.inodes.get_mut(&ino).expect("open handles keep inodes");
        inode.handles -= 1;
        self.release(ino);
    }
}

/// Whether every directory above `dir` (and `dir` itself) is in `dirs` (the root always is).
fn reachable(dir: &Path, dirs: &BTreeSet<PathBuf>) -> bool {
    dir.ancestors()
        .take_while(|a| !is_root(a))
        .all(|a| dirs.contains(a))
}

/// What a crash leaves of a file's unsynced appended tail: `kept` bytes of it as written
/// (except the byte at `flip`, if any, inverted: a sector that reached the platter
/// garbled, so a batch can be complete and still corrupt), then `fill` where the file's new
/// size reached the disk but its data did not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TornTail {
    pub kept: usize,
    pub flip: Option<usize>,
    pub fill: Fill,
}

impl TornTail {
    /// The first `kept` unsynced bytes survive, nothing after them (a clean cut).
    pub fn cut(kept: usize) -> TornTail {
        TornTail {
            kept,
            flip: None,
            fill: Fill::Nothing,
        }
    }
}

/// What follows the surviving part of a torn tail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fill {
    Nothing,
    /// Blocks allocated but never written read back as zeros.
    Zeros(usize),
    /// Stale or garbage bytes (a seeded stream), as after a reused block.
    Garbage {
        len: usize,
        seed: u64,
    },
}

impl Fill {
    pub fn len(&self) -> usize {
        match *self {
            Fill::Nothing => 0,
            Fill::Zeros(len) | Fill::Garbage { len, .. } => len,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A cheaply clonable handle to one shared `MemDisk`, implementing `Storage`.
#[derive(Debug, Clone, Default)]
pub struct MemStorage {
    disk: Arc<Mutex<MemDisk>>,
}

impl MemStorage {
    pub fn new() -> MemStorage {
        MemStorage::default()
    }

    /// Runs `f` with the disk locked: for fault injection and inspection.
    pub fn with_disk<R>(&self, f: impl FnOnce(&mut MemDisk) -> R) -> R {
        f(&mut self.lock())
    }

    /// Shorthand for `with_disk(|d| d.crash())`.
    pub fn crash(&self) {
        self.lock().crash();
    }

    pub fn stats(&self) -> MemDiskStats {
        self.lock().stats()
    }

    fn lock(&self) -> MutexGuard<'_, MemDisk> {
        // A panic while holding the lock cannot leave the model half-updated in a way
        // that matters to a test that is already failing; keep going.
        self.disk.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Storage for MemStorage {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        self.lock().create_dir_all(dir)
    }

    fn list_dir(&self, dir: &Path) -> io::Result<Vec<String>> {
        self.lock().list_dir(dir)
    }

    fn open(&self, path: &Path, create: bool) -> io::Result<Box<dyn StorageFile>> {
        let (ino, generation) = self.lock().open(path, create)?;
        Ok(Box::new(MemFile {
            storage: self.clone(),
            ino,
            generation,
        }))
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        self.lock().remove_file(path)
    }

    fn remove_dir_all(&self, dir: &Path) -> io::Result<()> {
        self.lock().remove_dir_all(dir)
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.lock().rename(from, to)
    }

    fn exists(&self, path: &Path) -> bool {
        self.lock().exists(path)
    }

    fn take_sync_delay(&self) -> std::time::Duration {
        self.lock().take_sync_delay()
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        self.lock().sync_dir(dir)
    }
}

struct MemFile {
    storage: MemStorage,
    ino: u64,
    generation: u64,
}

impl StorageFile for MemFile {
    fn len(&self) -> io::Result<u64> {
        let mut disk = self.storage.lock();
        Ok(disk.inode(self.ino, self.generation)?.current.len() as u64)
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        let mut disk = self.storage.lock();
        let bytes = &disk.inode(self.ino, self.generation)?.current;
        let start = usize::try_from(offset)
            .unwrap_or(usize::MAX)
            .min(bytes.len());
        let n = buf.len().min(bytes.len() - start);
        buf[..n].copy_from_slice(&bytes[start..start + n]);
        Ok(n)
    }

    fn append(&mut self, data: &[u8]) -> io::Result<()> {
        self.storage.lock().append(self.ino, self.generation, data)
    }

    fn truncate(&mut self, len: u64) -> io::Result<()> {
        let mut disk = self.storage.lock();
        let inode = disk.inode(self.ino, self.generation)?;
        let len = usize::try_from(len).unwrap_or(usize::MAX);
        // Like set_len: shrinking cuts, growing pads with zeros.
        if len < inode.durable.len() {
            inode.durable_is_prefix = false;
        }
        inode.current.resize(len, 0);
        assert!(
            !inode.durable_is_prefix || inode.durable.len() <= inode.current.len(),
            "the durable bytes are marked a prefix of a shorter file"
        );
        Ok(())
    }

    fn sync(&mut self) -> io::Result<()> {
        let mut disk = self.storage.lock();
        let inode = disk.inode(self.ino, self.generation)?;
        if inode.durable_is_prefix && inode.current.len() >= inode.durable.len() {
            let synced = inode.durable.len();
            inode.durable.extend_from_slice(&inode.current[synced..]);
        } else {
            inode.durable.clone_from(&inode.current);
        }
        inode.durable_is_prefix = true;
        assert_eq!(
            inode.durable.len(),
            inode.current.len(),
            "a synced file differs from its durable copy"
        );
        disk.stats.file_syncs += 1;
        let delay = disk.sync_delay;
        disk.sync_delay_owed += delay;
        Ok(())
    }
}

impl Drop for MemFile {
    fn drop(&mut self) {
        self.storage.lock().close(self.ino, self.generation);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(s: &str) -> PathBuf {
        PathBuf::from(s)
    }

    #[test]
    fn crash_keeps_only_synced_bytes() {
        let storage = MemStorage::new();
        storage.create_dir_all(&path("/d")).unwrap();
        let mut f = storage.open(&path("/d/a"), true).unwrap();
        f.append(b"synced").unwrap();
        f.sync().unwrap();
        f.append(b"-lost").unwrap();
        let mut g = storage.open(&path("/d/never-synced"), true).unwrap();
        g.append(b"gone").unwrap();
        storage.sync_dir(&path("/")).unwrap();
        storage.sync_dir(&path("/d")).unwrap();
        let mut h = storage.open(&path("/d/entry-never-synced"), true).unwrap();
        h.append(b"data").unwrap();
        h.sync().unwrap();
        storage.crash();

        assert!(
            f.append(b"zombie").is_err(),
            "old handles die with the crash"
        );
        drop((f, g));
        let f = storage.open(&path("/d/a"), false).unwrap();
        assert_eq!(crate::storage::read_to_vec(&*f).unwrap(), b"synced");
        let g = storage.open(&path("/d/never-synced"), false).unwrap();
        assert_eq!(g.len().unwrap(), 0);
        assert!(
            !storage.exists(&path("/d/entry-never-synced")),
            "a name whose directory was never synced is lost, synced bytes or not"
        );
        drop(h);
    }

    #[test]
    fn unsynced_truncation_is_undone_by_a_crash() {
        let storage = MemStorage::new();
        let mut f = storage.open(&path("f"), true).unwrap();
        storage.sync_dir(&path("")).unwrap();
        f.append(b"0123456789").unwrap();
        f.sync().unwrap();
        f.truncate(3).unwrap();
        f.append(b"x").unwrap();
        storage.crash();
        assert_eq!(
            storage.with_disk(|d| d.current_bytes(&path("f")).unwrap().to_vec()),
            b"0123456789"
        );
    }

    #[test]
    fn crash_with_keeps_a_torn_prefix_of_appends() {
        let storage = MemStorage::new();
        let mut f = storage.open(&path("f"), true).unwrap();
        storage.sync_dir(&path("")).unwrap();
        f.append(b"abc").unwrap();
        f.sync().unwrap();
        f.append(b"defgh").unwrap();
        let mut seen = Vec::new();
        storage.with_disk(|d| {
            d.crash_with(&mut |p, unsynced| {
                seen.push((p.to_path_buf(), unsynced));
                2
            })
        });
        assert_eq!(seen, vec![(path("f"), 5)]);
        assert_eq!(
            storage.with_disk(|d| d.durable_bytes(&path("f")).unwrap().to_vec()),
            b"abcde"
        );
    }

    #[test]
    fn capacity_gives_enospc_and_corrupt_byte_hits_durable_data() {
        let storage = MemStorage::new();
        storage.with_disk(|d| d.set_capacity_bytes(Some(8)));
        let mut f = storage.open(&path("f"), true).unwrap();
        storage.sync_dir(&path("")).unwrap();
        f.append(b"12345678").unwrap();
        let err = f.append(b"9").unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::StorageFull);
        f.sync().unwrap();
        storage
            .with_disk(|d| d.corrupt_byte(&path("f"), 0))
            .unwrap();
        storage.crash();
        let f = storage.open(&path("f"), false).unwrap();
        let mut b = [0u8; 1];
        f.read_exact_at(&mut b, 0).unwrap();
        assert_eq!(b[0], b'1' ^ 0xff);
        assert!(storage
            .with_disk(|d| d.corrupt_byte(&path("f"), 99))
            .is_err());
    }

    #[test]
    fn open_handles_survive_unlink_and_are_reclaimed_on_close() {
        let storage = MemStorage::new();
        let mut f = storage.open(&path("f"), true).unwrap();
        f.append(b"data").unwrap();
        storage.remove_file(&path("f")).unwrap();
        assert!(!storage.exists(&path("f")));
        assert_eq!(f.len().unwrap(), 4);
        assert_eq!(storage.with_disk(|d| d.used_bytes()), 4);
        drop(f);
        assert_eq!(storage.with_disk(|d| d.used_bytes()), 0);
    }

    #[test]
    fn renames_and_removals_last_only_once_their_directory_is_synced() {
        let storage = MemStorage::new();
        crate::storage::create_dir_all_durable(&storage, &path("/d")).unwrap();
        for name in ["a", "b"] {
            let mut f =
                crate::storage::open_durable(&storage, &path(&format!("/d/{name}"))).unwrap();
            f.append(name.as_bytes()).unwrap();
            f.sync().unwrap();
        }
        // Neither change reaches the directory before the crash.
        storage.rename(&path("/d/a"), &path("/d/c")).unwrap();
        storage.remove_file(&path("/d/b")).unwrap();
        storage.create_dir_all(&path("/d/sub")).unwrap();
        storage.crash();
        assert!(
            storage.exists(&path("/d/a")),
            "an unsynced rename is undone"
        );
        assert!(!storage.exists(&path("/d/c")));
        assert!(
            storage.exists(&path("/d/b")),
            "an unsynced removal is undone"
        );
        assert!(
            !storage.exists(&path("/d/sub")),
            "an unsynced mkdir is undone"
        );
        assert_eq!(
            storage.with_disk(|d| d.current_bytes(&path("/d/b")).unwrap().to_vec()),
            b"b"
        );
        // Synced, they stay.
        storage.rename(&path("/d/a"), &path("/d/c")).unwrap();
        storage.remove_file(&path("/d/b")).unwrap();
        storage.sync_dir(&path("/d")).unwrap();
        storage.crash();
        assert!(!storage.exists(&path("/d/a")) && storage.exists(&path("/d/c")));
        assert!(!storage.exists(&path("/d/b")));
        assert_eq!(
            storage.with_disk(|d| d.used_bytes()),
            1,
            "the removed file is gone"
        );
    }

    #[test]
    fn a_file_in_an_unsynced_directory_is_lost_with_it() {
        let storage = MemStorage::new();
        storage.create_dir_all(&path("/x/y")).unwrap();
        let mut f = storage.open(&path("/x/y/f"), true).unwrap();
        f.append(b"data").unwrap();
        f.sync().unwrap();
        storage.sync_dir(&path("/x/y")).unwrap();
        storage.sync_dir(&path("/x")).unwrap();
        // "/x" itself was never made durable in "/".
        storage.crash();
        assert!(!storage.exists(&path("/x")));
        assert!(!storage.exists(&path("/x/y/f")));
    }

    #[test]
    fn torn_tails_can_end_in_zeros_or_garbage() {
        for fill in [Fill::Zeros(3), Fill::Garbage { len: 3, seed: 7 }] {
            let storage = MemStorage::new();
            let mut f = crate::storage::open_durable(&storage, &path("/f")).unwrap();
            f.append(b"abc").unwrap();
            f.sync().unwrap();
            f.append(b"defgh").unwrap();
            storage.with_disk(|d| {
                d.crash_torn(&mut |_, _| TornTail {
                    kept: 1,
                    flip: None,
                    fill,
                })
            });
            let bytes = storage.with_disk(|d| d.current_bytes(&path("/f")).unwrap().to_vec());
            assert_eq!(bytes.len(), 7, "{fill:?}");
            assert_eq!(&bytes[..4], b"abcd");
            match fill {
                Fill::Zeros(_) => assert_eq!(&bytes[4..], [0, 0, 0]),
                _ => assert_ne!(&bytes[4..], b"efg", "garbage, not the written bytes"),
            }
        }
        // The fill never extends past what was appended.
        let storage = MemStorage::new();
        let mut f = crate::storage::open_durable(&storage, &path("/f")).unwrap();
        f.append(b"ab").unwrap();
        storage.with_disk(|d| {
            d.crash_torn(&mut |_, _| TornTail {
                kept: 1,
                flip: Some(0),
                fill: Fill::Zeros(9),
            })
        });
        assert_eq!(
            storage.with_disk(|d| d.current_bytes(&path("/f")).unwrap().to_vec()),
            [b'a' ^ 0xff, 0],
            "the fill never extends past what was appended; flip garbles a kept byte"
        );
    }
}
