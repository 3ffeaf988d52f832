//! Where a controller keeps what Raft asks it to make durable: the term and vote in
//! `quorum-state` (replaced atomically), the metadata log in `metadata.log` (appended,
//! truncated only when the leader overwrites an uncommitted suffix). Every write is synced
//! before `persist` returns, which is the contract the Raft core relies on.
//!
//! Log layout: one record per entry, `[u32 length][u32 CRC-32C of the body][JSON body]`.
//! On open, a torn or corrupt tail is cut off (it was never acknowledged to anyone: a
//! fetch or vote only goes out after `persist` returned).

use crate::raft::{Entry, HardState, PersistRequest, PersistentState};
use crate::storage::{read_to_vec, write_file_atomic, Storage, StorageFile};
use std::path::PathBuf;
use std::sync::Arc;

const STATE_FILE: &str = "quorum-state";
const LOG_FILE: &str = "metadata.log";
/// One entry's body is bounded like a frame.
const ENTRY_BYTES_MAX: usize = super::FRAME_BYTES_MAX;

pub struct QuorumStore {
    storage: Arc<dyn Storage>,
    dir: PathBuf,
    log: Box<dyn StorageFile>,
    /// Byte position where each entry ends; entry `i` (1-based) ends at `ends[i - 1]`.
    ends: Vec<u64>,
}

impl QuorumStore {
    /// Open (or create) the store and return what it holds.
    pub fn open(
        storage: Arc<dyn Storage>,
        dir: PathBuf,
    ) -> Result<(QuorumStore, PersistentState), String> {
        crate::storage::create_dir_all_durable(storage.as_ref(), &dir)
            .map_err(|e| format!("create {}: {e}", dir.display()))?;
        let state_path = dir.join(STATE_FILE);
        let hard_state = if storage.exists(&state_path) {
            let file = storage
                .open(&state_path, false)
                .map_err(|e| format!("{STATE_FILE}: {e}"))?;
            let bytes = read_to_vec(file.as_ref()).map_err(|e| format!("{STATE_FILE}: {e}"))?;
            serde_json::from_slice::<HardState>(&bytes).map_err(|e| format!("{STATE_FILE}: {e}"))?
        } else {
            HardState::default()
        };
        let mut log = crate::storage::open_durable(storage.as_ref(), &dir.join(LOG_FILE))
            .map_err(|e| format!("{LOG_FILE}: {e}"))?;
        let bytes = read_to_vec(log.as_ref()).map_err(|e| format!("{LOG_FILE}: {e}"))?;
        let (entries, ends) = decode_log(&bytes);
        let valid = ends.last().copied().unwrap_or(0);
        if valid < bytes.len() as u64 {
            tracing::warn!(
                dropped = bytes.len() as u64 - valid,
                "metadata log: cutting a torn or corrupt tail"
            );
            log.truncate(valid)
                .and_then(|_| log.sync())
                .map_err(|e| format!("{LOG_FILE}: {e}"))?;
        }
        // A term in the log above the saved term cannot happen with a synced store; if the
        // state file was lost, the log's last term is the least we may have voted in.
        let mut hard_state = hard_state;
        if let Some(last) = entries.last() {
            if last.term > hard_state.term {
                hard_state = HardState {
                    term: last.term,
                    voted_for: None,
                };
            }
        }
        Ok((
            QuorumStore {
                storage,
                dir,
                log,
                ends,
            },
            PersistentState {
                hard_state,
                log: entries,
            },
        ))
    }

    /// Make `request` durable: hard state first, then the log.
    pub fn persist(&mut self, request: &PersistRequest) -> std::io::Result<()> {
        if let Some(hard_state) = request.hard_state {
            let bytes = serde_json::to_vec(&hard_state).map_err(std::io::Error::other)?;
            write_file_atomic(
                self.storage.as_ref(),
                &self.dir.join(STATE_FILE),
                &bytes,
                true,
            )?;
        }
        if let Some(write) = &request.log_write {
            let keep = write.after_index as usize;
            if keep < self.ends.len() {
                let at = if keep == 0 { 0 } else { self.ends[keep - 1] };
                self.log.truncate(at)?;
                self.ends.truncate(keep);
            }
            let mut position = self.ends.last().copied().unwrap_or(0);
            let mut buffer = Vec::new();
            for entry in &write.entries {
                let body = serde_json::to_vec(entry).map_err(std::io::Error::other)?;
                buffer.extend_from_slice(&(body.len() as u32).to_be_bytes());
                buffer.extend_from_slice(&crc32c::crc32c(&body).to_be_bytes());
                buffer.extend_from_slice(&body);
                position += 8 + body.len() as u64;
                self.ends.push(position);
            }
            self.log.append(&buffer)?;
            self.log.sync()?;
        }
        Ok(())
    }
}

/// The entries of a log file up to the first torn, corrupt or out-of-sequence record, and
/// where each ends.
fn decode_log(bytes: &[u8]) -> (Vec<Entry>, Vec<u64>) {
    let mut entries: Vec<Entry> = Vec::new();
    let mut ends = Vec::new();
    let mut at = 0usize;
    while bytes.len() - at >= 8 {
        let len = u32::from_be_bytes(bytes[at..at + 4].try_into().expect("4 bytes")) as usize;
        let crc = u32::from_be_bytes(bytes[at + 4..at + 8].try_into().expect("4 bytes"));
        if len > ENTRY_BYTES_MAX || bytes.len() - at - 8 < len {
            break;
        }
        let body = &bytes[at + 8..at + 8 + len];
        if crc32c::crc32c(body) != crc {
            break;
        }
        let Ok(entry) = serde_json::from_slice::<Entry>(body) else {
            break;
        };
        let previous_term = entries.last().map_or(0, |e| e.term);
        if entry.index != entries.len() as u64 + 1 || entry.term < previous_term {
            break;
        }
        at += 8 + len;
        entries.push(entry);
        ends.push(at as u64);
    }
    (entries, ends)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raft::{EntryKind, LogWrite};
    use crate::storage::{MemStorage, Storage};

    fn entry(index: u64, term: u64) -> Entry {
        Entry {
            index,
            term,
            kind: EntryKind::Command,
            payload: format!("e{index}").into_bytes(),
        }
    }

    fn write(after_index: u64, entries: Vec<Entry>) -> PersistRequest {
        PersistRequest {
            hard_state: None,
            log_write: Some(LogWrite {
                after_index,
                entries,
            }),
        }
    }

    #[test]
    fn what_was_persisted_comes_back_after_a_crash() {
        let disk = MemStorage::default();
        let storage: Arc<dyn Storage> = Arc::new(disk.clone());
        let (mut store, state) = QuorumStore::open(storage.clone(), "/c".into()).unwrap();
        assert_eq!(state, PersistentState::default());
        store
            .persist(&PersistRequest {
                hard_state: Some(HardState {
                    term: 3,
                    voted_for: Some(1),
                }),
                log_write: Some(LogWrite {
                    after_index: 0,
                    entries: vec![entry(1, 1), entry(2, 2), entry(3, 2)],
                }),
            })
            .unwrap();
        // The leader overwrote the uncommitted suffix.
        store.persist(&write(2, vec![entry(3, 3)])).unwrap();
        disk.crash();
        let (_, state) = QuorumStore::open(storage, "/c".into()).unwrap();
        assert_eq!(state.hard_state.voted_for, Some(1));
        assert_eq!(state.log, vec![entry(1, 1), entry(2, 2), entry(3, 3)]);
    }

    #[test]
    fn a_torn_tail_is_cut_and_writing_continues_after_it() {
        let disk = MemStorage::default();
        let storage: Arc<dyn Storage> = Arc::new(disk.clone());
        let (mut store, _) = QuorumStore::open(storage.clone(), "/c".into()).unwrap();
        store
            .persist(&write(0, vec![entry(1, 1), entry(2, 1)]))
            .unwrap();
        // Half of a third record reaches the disk, unsynced, then power fails part way.
        let mut file = storage
            .open(&PathBuf::from("/c").join(LOG_FILE), false)
            .unwrap();
        file.append(&[0, 0, 0, 40, 1, 2, 3, 4, b'{']).unwrap();
        file.sync().unwrap();
        let (mut store, state) = QuorumStore::open(storage.clone(), "/c".into()).unwrap();
        assert_eq!(state.log.len(), 2);
        store.persist(&write(2, vec![entry(3, 1)])).unwrap();
        let (_, state) = QuorumStore::open(storage, "/c".into()).unwrap();
        assert_eq!(state.log, vec![entry(1, 1), entry(2, 1), entry(3, 1)]);
    }
}
