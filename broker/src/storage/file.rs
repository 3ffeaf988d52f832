//! `FileStorage`: the real disk, through `std::fs`, with `sync` as `fdatasync`.

use super::{Storage, StorageFile};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;

/// The real file system. Paths are used as given (callers pass absolute partition dirs).
#[derive(Debug, Clone, Copy, Default)]
pub struct FileStorage;

impl FileStorage {
    pub fn new() -> FileStorage {
        FileStorage
    }
}

impl Storage for FileStorage {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        fs::create_dir_all(dir)
    }

    fn list_dir(&self, dir: &Path) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in fs::read_dir(dir)? {
            let name = entry?.file_name();
            // Nothing the broker writes has a non-UTF-8 name; report such entries
            // lossily so they are still visible (and ignored) rather than an error.
            names.push(name.to_string_lossy().into_owned());
        }
        names.sort();
        Ok(names)
    }

    fn open(&self, path: &Path, create: bool) -> io::Result<Box<dyn StorageFile>> {
        // O_APPEND keeps every write at the end even if two handles exist; positional
        // reads (pread) are unaffected by it.
        let file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(create)
            .open(path)?;
        Ok(Box::new(RealFile { file }))
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        fs::remove_file(path)
    }

    fn remove_dir_all(&self, dir: &Path) -> io::Result<()> {
        fs::remove_dir_all(dir)
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        fs::rename(from, to)
    }

    fn exists(&self, path: &Path) -> bool {
        path.exists()
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        // The parent of a relative name at the top ("topic-0") is the working directory.
        let dir = if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        };
        File::open(dir)?.sync_all()
    }
}

struct RealFile {
    file: File,
}

impl StorageFile for RealFile {
    fn len(&self) -> io::Result<u64> {
        Ok(self.file.metadata()?.len())
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        // pread may return short counts before EOF; loop so callers only see a short
        // read at the end of the file.
        let mut filled = 0;
        while filled < buf.len() {
            match self
                .file
                .read_at(&mut buf[filled..], offset + filled as u64)
            {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
        Ok(filled)
    }

    fn append(&mut self, data: &[u8]) -> io::Result<()> {
        self.file.write_all(data)
    }

    fn truncate(&mut self, len: u64) -> io::Result<()> {
        self.file.set_len(len)
    }

    fn sync(&mut self) -> io::Result<()> {
        // fdatasync also persists the file size, which is all the metadata appends and
        // truncations change.
        self.file.sync_data()
    }
}

#[cfg(test)]
mod tests {
    use super::FileStorage;
    use faultline_core::log::storage_checks;
    use std::sync::Arc;

    /// The partition log's backend checks (written once in the core crate) on the real
    /// file system: appends, reads, a clean reopen and deletion.
    #[test]
    fn the_log_round_trips_on_the_real_file_system() {
        let tmp = tempfile::tempdir().unwrap();
        storage_checks::round_trip(Arc::new(FileStorage::new()), tmp.path().join("topic-0"));
    }

    /// A torn last batch, cut at every byte on the real file system, is dropped on reopen.
    #[test]
    fn a_torn_tail_is_truncated_on_the_real_file_system() {
        let tmp = tempfile::tempdir().unwrap();
        storage_checks::torn_tail_at_every_byte(
            Arc::new(FileStorage::new()),
            tmp.path().join("topic-0"),
        );
    }
}
