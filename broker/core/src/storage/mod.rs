//! The broker's only door to the disk: a small synchronous storage trait whose one
//! durability point is an explicit `sync`, and its in-memory model (`MemStorage`, which can
//! crash). The real backend (`FileStorage`) and, under `--cfg madsim`, the per-node
//! simulated one (`SimStorage`) live in the shell crate, which owns the file system.
//!
//! Everything above this module uses `Arc<dyn Storage>`, so the same log code runs on a
//! real disk, in unit tests that crash a model disk, and inside the deterministic
//! simulator where killing a node drops its unsynced writes.

use std::io;
use std::path::Path;

pub mod mem;

pub use mem::{Fill, MemDisk, MemStorage, TornTail};

/// A file system: directories, whole-file operations and opening files.
pub trait Storage: Send + Sync + 'static {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()>;
    /// Entry names (files and directories) directly inside `dir`, sorted.
    fn list_dir(&self, dir: &Path) -> io::Result<Vec<String>>;
    /// Opens `path` for reading and appending. Fails with `NotFound` if it is missing and
    /// `create` is false.
    fn open(&self, path: &Path, create: bool) -> io::Result<Box<dyn StorageFile>>;
    fn remove_file(&self, path: &Path) -> io::Result<()>;
    fn remove_dir_all(&self, dir: &Path) -> io::Result<()>;
    /// Atomically replaces `to` (if present) by `from`.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    fn exists(&self, path: &Path) -> bool;
    /// Makes the directory's entries (creations, renames, removals) durable.
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;

    /// Simulated time owed by the syncs made since the last call. A real disk spends that
    /// time inside `sync` itself (zero here); the simulated disk's syncs return at once and
    /// report what they would have cost, and the async shell waits it out before it
    /// acknowledges, so a slow-fsync fault shows up where a producer feels it.
    fn take_sync_delay(&self) -> std::time::Duration {
        std::time::Duration::ZERO
    }
}

/// One open file. Writes only ever append (or truncate); reads are positional so a
/// reader never disturbs the append position.
pub trait StorageFile: Send {
    fn len(&self) -> io::Result<u64>;
    /// Reads into `buf` from `offset`; returns fewer bytes than `buf.len()` only at EOF.
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize>;
    fn append(&mut self, data: &[u8]) -> io::Result<()>;
    fn truncate(&mut self, len: u64) -> io::Result<()>;
    /// The durability point (fsync): until it returns, appended or truncated data may be
    /// lost by a crash.
    fn sync(&mut self) -> io::Result<()>;

    fn is_empty(&self) -> io::Result<bool> {
        Ok(self.len()? == 0)
    }

    /// Fills `buf` from `offset`, failing with `UnexpectedEof` if the file is too short.
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        let read = self.read_at(buf, offset)?;
        if read < buf.len() {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!(
                    "short read: wanted {} bytes at {offset}, got {read}",
                    buf.len()
                ),
            ));
        }
        Ok(())
    }
}

/// Reads a whole (small) file: checkpoints and indexes.
pub fn read_to_vec(file: &dyn StorageFile) -> io::Result<Vec<u8>> {
    let len = file.len()?;
    let len = usize::try_from(len)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "file too large to read"))?;
    let mut buf = vec![0; len];
    let read = file.read_at(&mut buf, 0)?;
    buf.truncate(read);
    Ok(buf)
}

/// Create `dir` and every missing directory above it so that they survive a crash: each
/// directory created is made durable by syncing the directory that holds it (Kafka flushes
/// the parent of every log directory it creates). Existing directories are left alone.
pub fn create_dir_all_durable(storage: &dyn Storage, dir: &Path) -> io::Result<()> {
    let missing: Vec<&Path> = dir
        .ancestors()
        .take_while(|a| !a.as_os_str().is_empty() && *a != Path::new("/") && !storage.exists(a))
        .collect();
    storage.create_dir_all(dir)?;
    for created in missing.iter().rev() {
        storage.sync_dir(created.parent().unwrap_or(Path::new("")))?;
    }
    Ok(())
}

/// Create (or open) a file so that its name survives a crash: the directory holding it is
/// synced when the file is new. Its bytes still need `StorageFile::sync`.
pub fn open_durable(storage: &dyn Storage, path: &Path) -> io::Result<Box<dyn StorageFile>> {
    let existed = storage.exists(path);
    let file = storage.open(path, true)?;
    if !existed {
        storage.sync_dir(path.parent().unwrap_or(Path::new("")))?;
    }
    Ok(file)
}

/// Replaces `path` with `data` so that a crash leaves either the old or the new
/// contents, never a mix: write a temporary file, sync it, rename it over `path`.
/// With `sync_dir` the rename itself is made durable too; without it a crash may bring
/// back the old file, which callers use for checkpoints where an older value is safe.
pub fn write_file_atomic(
    storage: &dyn Storage,
    path: &Path,
    data: &[u8],
    sync_dir: bool,
) -> io::Result<()> {
    let mut tmp_name = path.as_os_str().to_owned();
    tmp_name.push(".tmp");
    let tmp = Path::new(&tmp_name);
    {
        let mut file = storage.open(tmp, true)?;
        file.truncate(0)?;
        file.append(data)?;
        file.sync()?;
    }
    storage.rename(tmp, path)?;
    if sync_dir {
        if let Some(dir) = path.parent() {
            storage.sync_dir(dir)?;
        }
    }
    Ok(())
}
