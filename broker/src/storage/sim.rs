//! `SimDisk`, a madsim plugin giving every simulated node its own `MemDisk` that loses
//! unsynced writes when the node is killed, and `SimStorage`, the `Storage` node code
//! uses to reach the disk of whichever node it runs on.

use super::{MemStorage, Storage, StorageFile};
use madsim::plugin::{self, Simulator};
use madsim::rand::GlobalRng;
use madsim::task::NodeId;
use madsim::time::TimeHandle;
use madsim::Config;
use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::Path;
use std::sync::{Arc, Mutex};

/// One disk per node. Register with `Runtime::add_simulator::<SimDisk>()` before
/// creating nodes.
pub struct SimDisk {
    disks: Mutex<BTreeMap<NodeId, MemStorage>>,
    /// Nodes whose next kill is a process crash: the operating system survives, so its
    /// page cache (every unsynced write) does too.
    process_crash: Mutex<BTreeSet<NodeId>>,
}

impl SimDisk {
    /// The disk of `node`, for fault injection and inspection by a test harness.
    pub fn disk(&self, node: NodeId) -> MemStorage {
        let mut disks = self.disks.lock().unwrap_or_else(|e| e.into_inner());
        disks.entry(node).or_default().clone()
    }

    /// Make the next kill of `node` a process crash (kill -9) rather than a power loss:
    /// its disk keeps unsynced writes.
    pub fn keep_page_cache_on_next_kill(&self, node: NodeId) {
        let mut nodes = self.process_crash.lock().unwrap_or_else(|e| e.into_inner());
        nodes.insert(node);
    }
}

impl Simulator for SimDisk {
    fn new(_rand: &GlobalRng, _time: &TimeHandle, _config: &Config) -> Self {
        SimDisk {
            disks: Mutex::new(BTreeMap::new()),
            process_crash: Mutex::new(BTreeSet::new()),
        }
    }

    fn create_node(&self, id: NodeId) {
        // Idempotent: a disk outlives restarts of its node.
        self.disk(id);
    }

    fn reset_node(&self, id: NodeId) {
        // Called when the node is killed: power loss for its disk, unless only the
        // process died.
        let process_only = {
            let mut nodes = self.process_crash.lock().unwrap_or_else(|e| e.into_inner());
            nodes.remove(&id)
        };
        if !process_only {
            // BUGGIFY: the operating system wrote some files' dirty pages back before the
            // power went and not others' (independent writes complete in any order), so
            // a file may keep all or part of its unsynced tail while its neighbours lose
            // theirs.
            self.disk(id).with_disk(|disk| {
                disk.crash_with(&mut |_, unsynced| {
                    if faultline_core::buggify!(0.5) {
                        (faultline_core::buggify::between(0.0, 1.0) * unsynced as f64).round()
                            as usize
                    } else {
                        0
                    }
                })
            });
        }
    }
}

/// `Storage` for code running inside a simulated node: every call goes to the disk of
/// the node the calling task belongs to. Open files stay bound to the disk they were
/// opened on.
#[derive(Debug, Clone, Copy, Default)]
pub struct SimStorage;

impl SimStorage {
    pub fn new() -> SimStorage {
        SimStorage
    }

    pub fn shared() -> Arc<dyn Storage> {
        Arc::new(SimStorage)
    }

    fn disk(&self) -> MemStorage {
        plugin::simulator::<SimDisk>().disk(plugin::node())
    }
}

impl Storage for SimStorage {
    fn take_sync_delay(&self) -> std::time::Duration {
        self.disk().take_sync_delay()
    }
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        self.disk().create_dir_all(dir)
    }

    fn list_dir(&self, dir: &Path) -> io::Result<Vec<String>> {
        self.disk().list_dir(dir)
    }

    fn open(&self, path: &Path, create: bool) -> io::Result<Box<dyn StorageFile>> {
        self.disk().open(path, create)
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        self.disk().remove_file(path)
    }

    fn remove_dir_all(&self, dir: &Path) -> io::Result<()> {
        self.disk().remove_dir_all(dir)
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.disk().rename(from, to)
    }

    fn exists(&self, path: &Path) -> bool {
        self.disk().exists(path)
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        self.disk().sync_dir(dir)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use madsim::runtime::{Handle, Runtime};
    use std::path::PathBuf;
    use std::time::Duration;

    #[test]
    fn killing_a_node_drops_its_unsynced_writes() {
        let rt = Runtime::with_seed_and_config(1, Config::default());
        rt.add_simulator::<SimDisk>();
        rt.block_on(async {
            let handle = Handle::current();
            let node = handle
                .create_node()
                .name("disk-node")
                .ip("10.0.0.1".parse().unwrap())
                .init(|| async {
                    let storage = SimStorage::shared();
                    let dir = PathBuf::from("/data");
                    let path = dir.join("f");
                    if storage.exists(&path) {
                        // Second life: report what survived, then idle.
                        let f = storage.open(&path, false).unwrap();
                        let bytes = crate::storage::read_to_vec(&*f).unwrap();
                        assert_eq!(bytes, b"synced");
                        crate::storage::create_dir_all_durable(&*storage, &dir.join("checked"))
                            .unwrap();
                    } else {
                        crate::storage::create_dir_all_durable(&*storage, &dir).unwrap();
                        let mut f = crate::storage::open_durable(&*storage, &path).unwrap();
                        f.append(b"synced").unwrap();
                        f.sync().unwrap();
                        f.append(b"-unsynced").unwrap();
                        assert_eq!(f.len().unwrap(), 15);
                    }
                    std::future::pending::<()>().await;
                })
                .build();
            madsim::time::sleep(Duration::from_secs(1)).await;
            let sim = plugin::simulator::<SimDisk>();
            let disk = sim.disk(node.id());
            assert_eq!(disk.with_disk(|d| d.used_bytes()), 15);
            // The supervisor (node 0) has a disk of its own, untouched by the node.
            assert!(!SimStorage.exists(Path::new("/data")));

            handle.kill(node.id());
            assert_eq!(disk.with_disk(|d| d.used_bytes()), 6);
            handle.restart(node.id());
            madsim::time::sleep(Duration::from_secs(1)).await;
            assert!(disk.exists(Path::new("/data/checked")));
        });
    }

    /// The partition log on a simulated node: after kill + restart, exactly the synced
    /// batches are there and appends continue after them.
    #[test]
    fn partition_log_survives_a_node_kill_with_its_synced_prefix() {
        use crate::log::{LogConfig, PartitionLog};
        use crate::record::codec::{encode_batch, BatchOptions, NewRecord};

        let rt = Runtime::with_seed_and_config(2, Config::default());
        rt.add_simulator::<SimDisk>();
        // What each life of the node saw at open: (log end offset, recovery point).
        let seen = Arc::new(Mutex::new(Vec::new()));
        let seen_in_node = seen.clone();
        rt.block_on(async move {
            let handle = Handle::current();
            let node = handle
                .create_node()
                .name("broker")
                .ip("10.0.0.2".parse().unwrap())
                .init(move || {
                    let seen = seen_in_node.clone();
                    async move {
                        let mut log = PartitionLog::open(
                            SimStorage::shared(),
                            PathBuf::from("/data/t-0"),
                            LogConfig::default(),
                            0,
                        )
                        .unwrap();
                        seen.lock()
                            .unwrap()
                            .push((log.log_end_offset(), log.recovery_point()));
                        let record = NewRecord {
                            value: Some(bytes::Bytes::from_static(b"v")),
                            ..Default::default()
                        };
                        for i in 0..10 {
                            let mut batch = encode_batch(
                                std::slice::from_ref(&record),
                                &BatchOptions::default(),
                            );
                            log.append(&mut batch, 0).unwrap();
                            if i == 5 {
                                log.sync().unwrap();
                            }
                        }
                        std::future::pending::<()>().await;
                    }
                })
                .build();
            madsim::time::sleep(Duration::from_secs(1)).await;
            handle.kill(node.id());
            handle.restart(node.id());
            madsim::time::sleep(Duration::from_secs(1)).await;
        });
        // First life: empty. Second life: offsets 0..=5 were synced, 6..=9 were not. The
        // recovery-point file is only rewritten once the synced point leaves the segment
        // it points into, so it still says 0: a lower checkpoint only means more to
        // re-validate at open, never that unsynced data is trusted.
        assert_eq!(*seen.lock().unwrap(), vec![(0, 0), (6, 0)]);
    }
}
