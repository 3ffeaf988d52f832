//! One behavioural test suite every `Storage` implementation must pass, so the model
//! disks cannot drift from what the real file system does.

use super::*;
use std::io;
use std::path::{Path, PathBuf};

/// Exercises every operation under `root` (an existing, empty directory).
pub(crate) fn check_storage(storage: &dyn Storage, root: &Path) {
    let dir = root.join("topic-0");
    let file = dir.join("00000000000000000000.log");

    // Missing things.
    assert!(!storage.exists(&dir));
    let err = storage.open(&file, false).err().expect("missing file");
    assert_eq!(err.kind(), io::ErrorKind::NotFound);
    assert_eq!(
        storage.list_dir(&dir).unwrap_err().kind(),
        io::ErrorKind::NotFound
    );
    assert!(
        storage.open(&file, true).is_err(),
        "parent directory does not exist"
    );

    // Directories.
    storage.create_dir_all(&dir.join("sub/deeper")).unwrap();
    storage.create_dir_all(&dir).unwrap();
    assert!(storage.exists(&dir));
    storage.sync_dir(&dir).unwrap();

    // Append, read, length.
    let mut f = storage.open(&file, true).unwrap();
    assert_eq!(f.len().unwrap(), 0);
    assert!(f.is_empty().unwrap());
    f.append(b"hello ").unwrap();
    f.append(b"world").unwrap();
    assert_eq!(f.len().unwrap(), 11);
    let mut buf = [0u8; 5];
    f.read_exact_at(&mut buf, 6).unwrap();
    assert_eq!(&buf, b"world");
    let mut long = [0u8; 8];
    assert_eq!(f.read_at(&mut long, 6).unwrap(), 5, "short read at EOF");
    assert_eq!(f.read_at(&mut long, 11).unwrap(), 0);
    assert_eq!(f.read_at(&mut long, 100).unwrap(), 0);
    assert_eq!(
        f.read_exact_at(&mut long, 6).unwrap_err().kind(),
        io::ErrorKind::UnexpectedEof
    );
    f.sync().unwrap();

    // A second handle sees the same bytes, and appends always go to the end.
    let mut g = storage.open(&file, false).unwrap();
    assert_eq!(g.len().unwrap(), 11);
    g.append(b"!").unwrap();
    assert_eq!(f.len().unwrap(), 12);
    drop(g);

    // Truncate then append continues at the new end.
    f.truncate(5).unwrap();
    f.append(b"!").unwrap();
    assert_eq!(read_to_vec(&*f).unwrap(), b"hello!");
    f.sync().unwrap();
    drop(f);

    // Listing is sorted, names only, files and directories.
    storage.open(&dir.join("a.index"), true).unwrap();
    assert_eq!(
        storage.list_dir(&dir).unwrap(),
        vec!["00000000000000000000.log", "a.index", "sub"]
    );

    // Rename replaces the target atomically.
    write_file_atomic(storage, &dir.join("recovery-point"), b"one", true).unwrap();
    write_file_atomic(storage, &dir.join("recovery-point"), b"two", false).unwrap();
    let cp = storage.open(&dir.join("recovery-point"), false).unwrap();
    assert_eq!(read_to_vec(&*cp).unwrap(), b"two");
    drop(cp);
    assert!(!storage.exists(&dir.join("recovery-point.tmp")));
    storage
        .rename(&dir.join("a.index"), &dir.join("b.index"))
        .unwrap();
    assert!(!storage.exists(&dir.join("a.index")));
    assert!(storage.exists(&dir.join("b.index")));

    // Removing.
    storage.remove_file(&dir.join("b.index")).unwrap();
    assert!(!storage.exists(&dir.join("b.index")));
    assert_eq!(
        storage
            .remove_file(&dir.join("b.index"))
            .unwrap_err()
            .kind(),
        io::ErrorKind::NotFound
    );

    // Directory rename (topic deletion renames before removing).
    let renamed = root.join("topic-0.deleted");
    storage.rename(&dir, &renamed).unwrap();
    assert!(!storage.exists(&dir));
    let moved = storage.open(&renamed.join("00000000000000000000.log"), false);
    assert_eq!(read_to_vec(&*moved.unwrap()).unwrap(), b"hello!");
    assert!(storage.exists(&renamed.join("sub/deeper")));
    storage.remove_dir_all(&renamed).unwrap();
    assert!(!storage.exists(&renamed));
    assert!(!storage.exists(&renamed.join("sub")));
    assert_eq!(storage.list_dir(root).unwrap(), Vec::<String>::new());
}

#[test]
fn file_storage_conforms() {
    let tmp = tempfile::tempdir().unwrap();
    check_storage(&FileStorage::new(), tmp.path());
}

#[test]
fn mem_storage_conforms() {
    let storage = MemStorage::new();
    let root = PathBuf::from("/disk");
    storage.create_dir_all(&root).unwrap();
    check_storage(&storage, &root);
}

#[cfg(madsim)]
#[test]
fn sim_storage_conforms() {
    let rt = madsim::runtime::Runtime::with_seed_and_config(7, madsim::Config::default());
    rt.add_simulator::<SimDisk>();
    rt.block_on(async {
        let storage = SimStorage::new();
        let root = PathBuf::from("/disk");
        storage.create_dir_all(&root).unwrap();
        check_storage(&storage, &root);
    });
}
