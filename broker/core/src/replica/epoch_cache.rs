//! Kafka's leader epoch cache for one partition (KIP-101, KIP-279): which leader epoch
//! wrote which offsets of the log, and the OffsetForLeaderEpoch answer built on it.
//!
//! The cache is a list of `(epoch, start_offset)` entries, strictly increasing in both
//! columns: entry `i` says "offsets from `start_offset` up to the next entry's start
//! offset (or the log end offset, for the last entry) were written by leader `epoch`".
//! Replicas compare these histories to find where their logs diverge, instead of
//! truncating to a high watermark that may lag (KIP-101, bug class 1), and a new leader
//! records its epoch before it writes anything so that followers holding entries from a
//! later epoch than anything in its log still truncate at the right point (KIP-279, bug
//! class 3).
//!
//! Pure state: no I/O. The shell persists [`LeaderEpochCache::encode`] (atomically, with
//! fsync) whenever a mutating call reports a change, and decodes it on start.
//!
//! **Architecture invariant:** this module does not know the log. It trusts the caller to
//! keep it in step: `assign` for every appended batch whose epoch is set, `truncate_from_end`
//! whenever the log is truncated (including after recovery, when the checkpoint may be
//! ahead of a log that lost its unsynced tail), `truncate_from_start` when the log start
//! moves. What it checks itself: its own ordering invariant, after every change.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Kafka's `UNDEFINED_EPOCH`: the epoch half of "no answer" on the wire, and the epoch a
/// requester sends when it knows none.
pub const UNDEFINED_EPOCH: i32 = -1;

/// Kafka's `UNDEFINED_EPOCH_OFFSET`: the offset half of "no answer" on the wire.
pub const UNDEFINED_EPOCH_OFFSET: i64 = -1;

/// First line of the checkpoint file. Kafka's `leader-epoch-checkpoint` is version 0 with
/// the same layout, so a Kafka engineer can read ours.
pub const CHECKPOINT_VERSION: u32 = 0;

/// One entry: leader `epoch` wrote the log from `start_offset` on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct EpochEntry {
    pub epoch: i32,
    pub start_offset: i64,
}

impl fmt::Display for EpochEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.epoch, self.start_offset)
    }
}

/// A defined OffsetForLeaderEpoch answer: `epoch` is the largest epoch the answerer knows
/// that is at most the requested one, `end_offset` is where that epoch's data ends
/// (exclusive). "No answer" is `None` and goes on the wire as
/// `(UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET)`, see [`EpochEndOffset::to_wire`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct EpochEndOffset {
    pub epoch: i32,
    pub end_offset: i64,
}

impl EpochEndOffset {
    /// The `(leader_epoch, end_offset)` pair for an OffsetForLeaderEpoch response.
    pub fn to_wire(answer: Option<EpochEndOffset>) -> (i32, i64) {
        match answer {
            Some(a) => (a.epoch, a.end_offset),
            None => (UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET),
        }
    }
}

/// What [`LeaderEpochCache::assign`] did. Anything but `Unchanged` means the checkpoint
/// must be rewritten.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AssignOutcome {
    /// The epoch is already the latest, starting at or before this offset.
    Unchanged,
    /// The entry was recorded as the new latest. `removed` are the entries it displaced
    /// (oldest first). `conflict` is false when nothing was removed, or when exactly one
    /// entry was removed at the same start offset: a leader recorded its epoch on election,
    /// wrote nothing, and a newer epoch now starts at the same place. Anything else means
    /// the cache held history the log no longer agrees with; worth a warning in the log.
    Recorded {
        removed: Vec<EpochEntry>,
        conflict: bool,
    },
}

impl AssignOutcome {
    pub fn changed(&self) -> bool {
        !matches!(self, AssignOutcome::Unchanged)
    }
}

/// Where a follower truncates after the leader told it where their histories diverge
/// (Fetch's diverging epoch, or an OffsetForLeaderEpoch answer). See
/// [`LeaderEpochCache::follower_truncation`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FollowerTruncation {
    /// Truncate the log (and this cache) to this offset.
    pub offset: i64,
    /// False when the follower does not know the epoch the leader answered with: it
    /// truncates to the end of its own nearest older epoch and must ask again.
    pub complete: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EpochCacheError {
    #[error(
        "invalid epoch entry {epoch}@{start_offset}: epoch and start offset must be non-negative"
    )]
    InvalidEntry { epoch: i32, start_offset: i64 },
    #[error(
        "epoch entries must increase strictly in epoch and start offset: {previous} then {next}"
    )]
    NotIncreasing {
        previous: EpochEntry,
        next: EpochEntry,
    },
    #[error("leader epoch checkpoint, line {line}: {message}")]
    Checkpoint { line: usize, message: String },
}

/// The leader epoch cache of one partition replica (leader or follower).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "Vec<EpochEntry>", into = "Vec<EpochEntry>")]
pub struct LeaderEpochCache {
    /// Strictly increasing in `epoch` and in `start_offset`; every value non-negative.
    entries: Vec<EpochEntry>,
}

impl LeaderEpochCache {
    pub fn new() -> LeaderEpochCache {
        LeaderEpochCache::default()
    }

    /// A cache holding exactly `entries`, which must be valid and strictly increasing.
    pub fn from_entries(entries: Vec<EpochEntry>) -> Result<LeaderEpochCache, EpochCacheError> {
        for entry in &entries {
            if entry.epoch < 0 || entry.start_offset < 0 {
                return Err(EpochCacheError::InvalidEntry {
                    epoch: entry.epoch,
                    start_offset: entry.start_offset,
                });
            }
        }
        for pair in entries.windows(2) {
            if pair[1].epoch <= pair[0].epoch || pair[1].start_offset <= pair[0].start_offset {
                return Err(EpochCacheError::NotIncreasing {
                    previous: pair[0],
                    next: pair[1],
                });
            }
        }
        Ok(LeaderEpochCache { entries })
    }

    pub fn entries(&self) -> &[EpochEntry] {
        &self.entries
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn earliest_entry(&self) -> Option<EpochEntry> {
        self.entries.first().copied()
    }

    pub fn latest_entry(&self) -> Option<EpochEntry> {
        self.entries.last().copied()
    }

    /// The latest epoch; followers send it as `last_fetched_epoch` in Fetch.
    pub fn latest_epoch(&self) -> Option<i32> {
        self.entries.last().map(|e| e.epoch)
    }

    /// Record that leader `epoch` wrote the log from `start_offset` on. Called for every
    /// appended batch whose partition leader epoch is set (leader and follower alike), and
    /// by a new leader with its log end offset before it writes anything (KIP-279).
    ///
    /// Kafka's rule, exactly:
    /// - nothing happens when `epoch` is the latest epoch and `start_offset` is at or after
    ///   its start (the common case: another batch of the current epoch);
    /// - otherwise every entry with `epoch >= new epoch` or `start_offset >= new start` is
    ///   removed (always a suffix, because both columns increase) and the new entry becomes
    ///   the latest.
    ///
    /// So a lower epoch than the latest is *not* ignored: it means the log now holds that
    /// epoch's data at `start_offset`, and newer entries describe data that is gone.
    /// Keeping them would let this replica, once leader, tell followers that an epoch ends
    /// where it does not (bug class 3). In a correct broker this only happens after a
    /// truncation the caller forgot to report; `conflict` in the outcome flags it.
    ///
    /// A negative epoch or offset is refused (Kafka throws): batches written without a
    /// partition leader epoch (-1) must be skipped by the caller, not assigned.
    pub fn assign(
        &mut self,
        epoch: i32,
        start_offset: i64,
    ) -> Result<AssignOutcome, EpochCacheError> {
        if epoch < 0 || start_offset < 0 {
            return Err(EpochCacheError::InvalidEntry {
                epoch,
                start_offset,
            });
        }
        if let Some(latest) = self.latest_entry() {
            if latest.epoch == epoch && latest.start_offset <= start_offset {
                return Ok(AssignOutcome::Unchanged);
            }
        }
        let kept = self
            .entries
            .partition_point(|e| e.epoch < epoch && e.start_offset < start_offset);
        let removed = self.entries.split_off(kept);
        let conflict = removed.len() > 1
            || removed
                .first()
                .is_some_and(|r| r.start_offset != start_offset);
        self.entries.push(EpochEntry {
            epoch,
            start_offset,
        });
        self.assert_invariants();
        assert_eq!(
            self.latest_entry(),
            Some(EpochEntry {
                epoch,
                start_offset
            }),
            "assigned entry must be the latest"
        );
        Ok(AssignOutcome::Recorded { removed, conflict })
    }

    /// Kafka's OffsetForLeaderEpoch answer for `requested_epoch`, given this replica's log
    /// end offset (KIP-101, with KIP-279's "largest epoch at most the requested one"):
    ///
    /// | request                                  | answer                                   |
    /// |------------------------------------------|------------------------------------------|
    /// | negative (`UNDEFINED_EPOCH` and garbage) | none                                     |
    /// | empty cache                              | none                                     |
    /// | the latest epoch                         | (latest, `log_end_offset`)               |
    /// | above the latest epoch                   | none                                     |
    /// | below the first entry's epoch            | (requested, first entry's start offset)  |
    /// | otherwise                                | (largest epoch <= requested, start offset of the next larger epoch) |
    ///
    /// "Below the first entry" does *not* answer none: Kafka answers with the requested
    /// epoch and the first known start offset, because the history before it was removed
    /// from the log by retention and the follower should keep what precedes the leader's
    /// log start rather than truncate to nothing (an undefined answer would send the
    /// follower back to its high watermark: bug class 1). Kafka only special-cases -1;
    /// other negative epochs cannot be real and get none here too.
    ///
    /// The end offset of the latest epoch is the log end offset, which must be at or after
    /// the latest entry's start (the caller keeps the cache truncated with the log).
    pub fn end_offset_for(
        &self,
        requested_epoch: i32,
        log_end_offset: i64,
    ) -> Option<EpochEndOffset> {
        let latest = self.latest_entry()?;
        assert!(
            log_end_offset >= latest.start_offset,
            "log end offset {log_end_offset} is before the latest epoch entry {latest}: \
             the cache was not truncated with the log"
        );
        if requested_epoch < 0 {
            return None;
        }
        if requested_epoch == latest.epoch {
            return Some(EpochEndOffset {
                epoch: latest.epoch,
                end_offset: log_end_offset,
            });
        }
        // Index of the first entry with an epoch above the requested one.
        let higher = self.entries.partition_point(|e| e.epoch <= requested_epoch);
        let next = self.entries.get(higher)?;
        let answer = match higher.checked_sub(1).map(|i| self.entries[i]) {
            Some(floor) => EpochEndOffset {
                epoch: floor.epoch,
                end_offset: next.start_offset,
            },
            None => EpochEndOffset {
                epoch: requested_epoch,
                end_offset: next.start_offset,
            },
        };
        assert!(answer.epoch <= requested_epoch);
        assert!(answer.end_offset <= log_end_offset);
        Some(answer)
    }

    /// The epoch that wrote `offset`: the entry with the largest start offset at or before
    /// it. None before the first entry or when empty. (ListOffsets and Fetch report the
    /// epoch of an offset with this.)
    pub fn epoch_for_offset(&self, offset: i64) -> Option<i32> {
        let covering = self.entries.partition_point(|e| e.start_offset <= offset);
        covering.checked_sub(1).map(|i| self.entries[i].epoch)
    }

    /// The log was truncated to `end_offset` (everything at or after it is gone): drop the
    /// entries that start at or after it. A negative offset is ignored, as in Kafka.
    /// Returns the removed entries (oldest first); non-empty means rewrite the checkpoint.
    pub fn truncate_from_end(&mut self, end_offset: i64) -> Vec<EpochEntry> {
        if end_offset < 0 {
            return Vec::new();
        }
        let kept = self
            .entries
            .partition_point(|e| e.start_offset < end_offset);
        let removed = self.entries.split_off(kept);
        self.assert_invariants();
        assert!(self
            .latest_entry()
            .is_none_or(|e| e.start_offset < end_offset));
        removed
    }

    /// The log start moved to `start_offset` (retention, DeleteRecords): entries that start
    /// at or before it are dropped, except that the epoch covering `start_offset` is kept
    /// with its start moved up to `start_offset`, so the first entry still says which epoch
    /// wrote the first offset of the log. Returns whether anything changed.
    pub fn truncate_from_start(&mut self, start_offset: i64) -> bool {
        let covered = self
            .entries
            .partition_point(|e| e.start_offset <= start_offset);
        let Some(covering) = covered.checked_sub(1).map(|i| self.entries[i]) else {
            return false;
        };
        let changed = covered > 1 || covering.start_offset != start_offset;
        self.entries.drain(..covered);
        self.entries.insert(
            0,
            EpochEntry {
                epoch: covering.epoch,
                start_offset,
            },
        );
        self.assert_invariants();
        assert_eq!(
            self.earliest_entry().map(|e| e.start_offset),
            Some(start_offset)
        );
        changed
    }

    /// Forget everything (the log was deleted or truncated fully).
    pub fn clear(&mut self) {
        self.entries.clear();
    }

    /// Follower side of KIP-101/KIP-279: where to truncate after the leader answered
    /// `leader` (a diverging epoch in a Fetch response, or an OffsetForLeaderEpoch answer),
    /// given this follower's log end offset.
    ///
    /// The follower looks up the leader's epoch in its own cache:
    /// - it knows that epoch: truncate to the smaller of the two end offsets (and never
    ///   beyond its own log end); complete;
    /// - it only knows an older epoch: truncate to that epoch's end and ask again with it
    ///   (not complete), because the leader's end offset says nothing about this follower's
    ///   data from epochs the leader never saw;
    /// - it knows no epoch at or below it: truncate to the leader's end offset; complete.
    ///
    /// The caller must first check that the answer belongs to the leader epoch it is
    /// fetching in now; applying an answer from an older epoch truncates committed data
    /// (KAFKA-18991, bug class 5). That check needs fetcher state this module does not have.
    pub fn follower_truncation(
        &self,
        leader: EpochEndOffset,
        log_end_offset: i64,
    ) -> FollowerTruncation {
        let truncation = match self.end_offset_for(leader.epoch, log_end_offset) {
            Some(own) if own.epoch == leader.epoch => FollowerTruncation {
                offset: own.end_offset.min(leader.end_offset).min(log_end_offset),
                complete: true,
            },
            Some(own) => FollowerTruncation {
                offset: own.end_offset.min(log_end_offset),
                complete: false,
            },
            None => FollowerTruncation {
                offset: leader.end_offset.min(log_end_offset),
                complete: true,
            },
        };
        assert!(truncation.offset <= log_end_offset);
        truncation
    }

    /// The checkpoint file: `"0\n<count>\n<epoch> <start_offset>\n..."`, Kafka's
    /// `leader-epoch-checkpoint` layout.
    pub fn encode(&self) -> Vec<u8> {
        let mut text = format!("{CHECKPOINT_VERSION}\n{}\n", self.entries.len());
        for entry in &self.entries {
            text.push_str(&format!("{} {}\n", entry.epoch, entry.start_offset));
        }
        text.into_bytes()
    }

    /// Read a checkpoint written by [`encode`](Self::encode). Strict: exactly the canonical
    /// text (decimal numbers without sign or leading zeros, single spaces, every line ending
    /// in `\n`, the stated number of entries and nothing after them), and entries that
    /// satisfy the cache invariant. So whatever decodes re-encodes to the same bytes, and
    /// garbage is an error, never a panic or a guess. Kafka also refuses a malformed
    /// checkpoint (the log directory goes offline); recovering from it is the shell's call.
    pub fn decode(bytes: &[u8]) -> Result<LeaderEpochCache, EpochCacheError> {
        let error = |line: usize, message: String| EpochCacheError::Checkpoint { line, message };
        let text = std::str::from_utf8(bytes).map_err(|e| error(0, format!("not UTF-8: {e}")))?;
        let body = text
            .strip_suffix('\n')
            .ok_or_else(|| error(0, "missing final newline".into()))?;
        let mut lines = body.split('\n').enumerate().map(|(i, l)| (i + 1, l));

        let (line, version) = lines.next().ok_or_else(|| error(1, "empty".into()))?;
        match parse_canonical::<u32>(version) {
            Some(CHECKPOINT_VERSION) => {}
            _ => return Err(error(line, format!("unsupported version {version:?}"))),
        }
        let (line, count) = lines
            .next()
            .ok_or_else(|| error(2, "missing entry count".into()))?;
        let count = parse_canonical::<usize>(count)
            .ok_or_else(|| error(line, format!("bad entry count {count:?}")))?;

        // No capacity from `count`: it is untrusted. The file's length bounds the loop.
        let mut entries = Vec::new();
        for index in 0..count {
            let (line, text) = lines.next().ok_or_else(|| {
                error(
                    index + 3,
                    format!("expected {count} entries, found {index}"),
                )
            })?;
            let entry = text
                .split_once(' ')
                .and_then(|(epoch, offset)| {
                    Some(EpochEntry {
                        epoch: parse_canonical(epoch)?,
                        start_offset: parse_canonical(offset)?,
                    })
                })
                .ok_or_else(|| error(line, format!("bad entry {text:?}")))?;
            if let Some(previous) = entries.last() {
                let previous: &EpochEntry = previous;
                if entry.epoch <= previous.epoch || entry.start_offset <= previous.start_offset {
                    return Err(error(
                        line,
                        format!("entry {entry} does not follow {previous}"),
                    ));
                }
            }
            entries.push(entry);
        }
        if let Some((line, _)) = lines.next() {
            return Err(error(line, format!("more lines than the {count} entries")));
        }
        LeaderEpochCache::from_entries(entries).map_err(|e| error(0, e.to_string()))
    }

    fn assert_invariants(&self) {
        for entry in &self.entries {
            assert!(
                entry.epoch >= 0 && entry.start_offset >= 0,
                "negative epoch entry {entry}"
            );
        }
        for pair in self.entries.windows(2) {
            assert!(
                pair[0].epoch < pair[1].epoch && pair[0].start_offset < pair[1].start_offset,
                "epoch entries not strictly increasing: {} then {}",
                pair[0],
                pair[1]
            );
        }
    }
}

impl TryFrom<Vec<EpochEntry>> for LeaderEpochCache {
    type Error = EpochCacheError;

    fn try_from(entries: Vec<EpochEntry>) -> Result<Self, Self::Error> {
        LeaderEpochCache::from_entries(entries)
    }
}

impl From<LeaderEpochCache> for Vec<EpochEntry> {
    fn from(cache: LeaderEpochCache) -> Self {
        cache.entries
    }
}

impl fmt::Display for LeaderEpochCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[")?;
        for (i, entry) in self.entries.iter().enumerate() {
            if i > 0 {
                write!(f, " ")?;
            }
            write!(f, "{entry}")?;
        }
        write!(f, "]")
    }
}

/// A non-negative decimal without sign or leading zeros; None for anything else,
/// including values that overflow `T`.
fn parse_canonical<T: std::str::FromStr>(field: &str) -> Option<T> {
    let canonical = !field.is_empty()
        && field.bytes().all(|b| b.is_ascii_digit())
        && (field == "0" || !field.starts_with('0'));
    if canonical {
        field.parse().ok()
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Run a script of cache operations, one per line, and compare the transcript (each
    /// line followed by ` -> result`) with `expected`. Operations:
    /// `assign E S`, `end E LEO`, `epoch_of O`, `truncate_end O`, `truncate_start O`,
    /// `follower E END LEO` (follower truncation after a leader answer), `show`.
    fn check(steps: &str, expected: &str) {
        let mut cache = LeaderEpochCache::new();
        let mut transcript = String::new();
        for line in steps.lines().map(str::trim).filter(|l| !l.is_empty()) {
            let words: Vec<&str> = line.split_whitespace().collect();
            let n = |i: usize| -> i64 { words[i].parse().expect("number in script") };
            let result = match words[0] {
                "assign" => match cache.assign(n(1) as i32, n(2)) {
                    Ok(AssignOutcome::Unchanged) => "unchanged".to_string(),
                    Ok(AssignOutcome::Recorded { removed, conflict }) => {
                        let removed: Vec<String> = removed.iter().map(|e| e.to_string()).collect();
                        format!(
                            "recorded{}{}",
                            if removed.is_empty() {
                                String::new()
                            } else {
                                format!(" removed {}", removed.join(" "))
                            },
                            if conflict { " conflict" } else { "" }
                        )
                    }
                    Err(e) => format!("error: {e}"),
                },
                "end" => match cache.end_offset_for(n(1) as i32, n(2)) {
                    Some(a) => format!("{} {}", a.epoch, a.end_offset),
                    None => "undefined".to_string(),
                },
                "epoch_of" => format!("{:?}", cache.epoch_for_offset(n(1))),
                "truncate_end" => format!("removed {}", cache.truncate_from_end(n(1)).len()),
                "truncate_start" => format!("changed {}", cache.truncate_from_start(n(1))),
                "follower" => {
                    let t = cache.follower_truncation(
                        EpochEndOffset {
                            epoch: n(1) as i32,
                            end_offset: n(2),
                        },
                        n(3),
                    );
                    format!(
                        "truncate to {}{}",
                        t.offset,
                        if t.complete { "" } else { " and ask again" }
                    )
                }
                "show" => cache.to_string(),
                other => panic!("unknown step {other}"),
            };
            transcript.push_str(&format!("{line} -> {result}\n"));
        }
        let expected: String = expected
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(|l| format!("{l}\n"))
            .collect();
        assert_eq!(transcript, expected, "\ntranscript:\n{transcript}");
        // Every state the script reaches survives the checkpoint.
        assert_eq!(LeaderEpochCache::decode(&cache.encode()), Ok(cache));
    }

    #[test]
    fn assign_appends_new_epochs_and_ignores_repeats() {
        check(
            "
            assign 0 0
            assign 0 5
            assign 2 10
            assign 2 12
            assign 5 30
            show
            ",
            "
            assign 0 0 -> recorded
            assign 0 5 -> unchanged
            assign 2 10 -> recorded
            assign 2 12 -> unchanged
            assign 5 30 -> recorded
            show -> [0@0 2@10 5@30]
            ",
        );
    }

    #[test]
    fn assign_replaces_an_epoch_that_wrote_nothing() {
        // KIP-279: leader of epoch 3 recorded 3@10 on election, wrote nothing, and epoch 4
        // starts at the same offset: expected, not a conflict.
        check(
            "
            assign 1 0
            assign 3 10
            assign 4 10
            show
            ",
            "
            assign 1 0 -> recorded
            assign 3 10 -> recorded
            assign 4 10 -> recorded removed 3@10
            show -> [1@0 4@10]
            ",
        );
    }

    #[test]
    fn assign_truncates_entries_the_new_one_does_not_follow() {
        check(
            "
            assign 1 0
            assign 3 10
            assign 5 20
            assign 4 15
            show
            assign 4 12
            show
            assign 2 5
            show
            assign 7 3
            show
            ",
            "
            assign 1 0 -> recorded
            assign 3 10 -> recorded
            assign 5 20 -> recorded
            assign 4 15 -> recorded removed 5@20 conflict
            show -> [1@0 3@10 4@15]
            assign 4 12 -> recorded removed 4@15 conflict
            show -> [1@0 3@10 4@12]
            assign 2 5 -> recorded removed 3@10 4@12 conflict
            show -> [1@0 2@5]
            assign 7 3 -> recorded removed 2@5 conflict
            show -> [1@0 7@3]
            ",
        );
    }

    #[test]
    fn assign_refuses_negative_values() {
        check(
            "
            assign -1 0
            assign 0 -1
            show
            ",
            "
            assign -1 0 -> error: invalid epoch entry -1@0: epoch and start offset must be non-negative
            assign 0 -1 -> error: invalid epoch entry 0@-1: epoch and start offset must be non-negative
            show -> []
            ",
        );
    }

    #[test]
    fn end_offset_for_follows_kafka() {
        check(
            "
            end 0 0
            assign 2 5
            assign 4 10
            assign 7 20
            end 7 25
            end 4 25
            end 5 25
            end 6 25
            end 2 25
            end 3 25
            end 1 25
            end 0 25
            end 8 25
            end -1 25
            end -5 25
            ",
            "
            end 0 0 -> undefined
            assign 2 5 -> recorded
            assign 4 10 -> recorded
            assign 7 20 -> recorded
            end 7 25 -> 7 25
            end 4 25 -> 4 20
            end 5 25 -> 4 20
            end 6 25 -> 4 20
            end 2 25 -> 2 10
            end 3 25 -> 2 10
            end 1 25 -> 1 5
            end 0 25 -> 0 5
            end 8 25 -> undefined
            end -1 25 -> undefined
            end -5 25 -> undefined
            ",
        );
    }

    #[test]
    fn latest_epoch_ends_at_the_log_end_even_when_it_wrote_nothing() {
        check(
            "
            assign 1 0
            assign 2 10
            end 2 10
            end 1 10
            ",
            "
            assign 1 0 -> recorded
            assign 2 10 -> recorded
            end 2 10 -> 2 10
            end 1 10 -> 1 10
            ",
        );
    }

    #[test]
    fn epoch_for_offset_finds_the_covering_entry() {
        check(
            "
            epoch_of 0
            assign 1 5
            assign 3 10
            epoch_of 4
            epoch_of 5
            epoch_of 9
            epoch_of 10
            epoch_of 1000
            ",
            "
            epoch_of 0 -> None
            assign 1 5 -> recorded
            assign 3 10 -> recorded
            epoch_of 4 -> None
            epoch_of 5 -> Some(1)
            epoch_of 9 -> Some(1)
            epoch_of 10 -> Some(3)
            epoch_of 1000 -> Some(3)
            ",
        );
    }

    #[test]
    fn truncate_from_end_drops_entries_at_or_after_the_offset() {
        check(
            "
            assign 1 0
            assign 2 10
            assign 3 20
            truncate_end 21
            truncate_end -1
            truncate_end 20
            show
            truncate_end 5
            show
            truncate_end 0
            show
            ",
            "
            assign 1 0 -> recorded
            assign 2 10 -> recorded
            assign 3 20 -> recorded
            truncate_end 21 -> removed 0
            truncate_end -1 -> removed 0
            truncate_end 20 -> removed 1
            show -> [1@0 2@10]
            truncate_end 5 -> removed 1
            show -> [1@0]
            truncate_end 0 -> removed 1
            show -> []
            ",
        );
    }

    #[test]
    fn truncate_from_start_keeps_the_covering_epoch() {
        check(
            "
            truncate_start 5
            assign 1 0
            assign 2 10
            assign 3 20
            truncate_start 0
            truncate_start 15
            show
            truncate_start 20
            show
            truncate_start 100
            show
            ",
            "
            truncate_start 5 -> changed false
            assign 1 0 -> recorded
            assign 2 10 -> recorded
            assign 3 20 -> recorded
            truncate_start 0 -> changed false
            truncate_start 15 -> changed true
            show -> [2@15 3@20]
            truncate_start 20 -> changed true
            show -> [3@20]
            truncate_start 100 -> changed true
            show -> [3@100]
            ",
        );
    }

    #[test]
    fn follower_truncation_after_fast_double_failover() {
        // Bug class 3 (KIP-279). Epoch 1 wrote 0..12 on B but only 0..10 on C. C became
        // leader in epoch 2, wrote offset 10 and died before anyone fetched it. B became
        // leader in epoch 3 and recorded 3@12 on election. C returns as a follower of B:
        // its latest epoch is 2, B has never seen epoch 2 and answers with the largest
        // epoch below it, 1, ending where epoch 3 starts. C truncates to the end of its own
        // epoch 1 (10), dropping only its uncommitted epoch-2 record, then refetches.
        let mut leader_b = LeaderEpochCache::new();
        leader_b.assign(1, 0).unwrap();
        leader_b.assign(3, 12).unwrap();
        let answer = leader_b.end_offset_for(2, 12).unwrap();
        assert_eq!(
            answer,
            EpochEndOffset {
                epoch: 1,
                end_offset: 12
            }
        );
        check(
            "
            assign 1 0
            assign 2 10
            follower 1 12 11
            truncate_end 10
            show
            ",
            "
            assign 1 0 -> recorded
            assign 2 10 -> recorded
            follower 1 12 11 -> truncate to 10
            truncate_end 10 -> removed 1
            show -> [1@0]
            ",
        );
    }

    #[test]
    fn follower_truncation_cases() {
        check(
            "
            assign 1 0
            assign 3 10
            assign 5 20
            follower 3 15 25
            follower 3 12 25
            follower 4 30 25
            follower 5 40 25
            follower 0 4 25
            ",
            "
            assign 1 0 -> recorded
            assign 3 10 -> recorded
            assign 5 20 -> recorded
            follower 3 15 25 -> truncate to 15
            follower 3 12 25 -> truncate to 12
            follower 4 30 25 -> truncate to 20 and ask again
            follower 5 40 25 -> truncate to 25
            follower 0 4 25 -> truncate to 0
            ",
        );
    }

    #[test]
    fn checkpoint_format_is_kafkas() {
        let mut cache = LeaderEpochCache::new();
        cache.assign(0, 0).unwrap();
        cache.assign(4, 1234).unwrap();
        assert_eq!(cache.encode(), b"0\n2\n0 0\n4 1234\n");
        assert_eq!(LeaderEpochCache::new().encode(), b"0\n0\n");
    }

    #[test]
    fn checkpoint_garbage_is_an_error() {
        let cases: &[(&[u8], &str)] = &[
            (b"", "line 0: missing final newline"),
            (b"\n", "line 1: unsupported version \"\""),
            (b"1\n0\n", "line 1: unsupported version \"1\""),
            (b"0\n", "line 2: missing entry count"),
            (b"0\n-1\n", "line 2: bad entry count \"-1\""),
            (b"0\n99999999999999999999999\n", "line 2: bad entry count"),
            (b"0\n2\n1 0\n", "line 4: expected 2 entries, found 1"),
            (b"0\n1\n1 0\n2 5\n", "line 4: more lines than the 1 entries"),
            (b"0\n1\n1  0\n", "line 3: bad entry \"1  0\""),
            (b"0\n1\n+1 0\n", "line 3: bad entry"),
            (b"0\n1\n01 0\n", "line 3: bad entry"),
            (b"0\n1\n1 0 \n", "line 3: bad entry"),
            (b"0\n1\n3000000000 0\n", "line 3: bad entry"),
            (b"0\n2\n1 5\n1 6\n", "line 4: entry 1@6 does not follow 1@5"),
            (b"0\n2\n1 5\n2 5\n", "line 4: entry 2@5 does not follow 1@5"),
            (b"0\r\n0\r\n", "line 1: unsupported version"),
            (b"0\n0", "line 0: missing final newline"),
            (b"\xff\n", "line 0: not UTF-8"),
        ];
        for (bytes, expected) in cases {
            let error = LeaderEpochCache::decode(bytes).expect_err("garbage decoded");
            assert!(
                error.to_string().contains(expected),
                "{:?}: got {error}, expected {expected}",
                String::from_utf8_lossy(bytes)
            );
        }
    }

    #[test]
    fn serde_refuses_invalid_entries() {
        let entries = vec![
            EpochEntry {
                epoch: 2,
                start_offset: 5,
            },
            EpochEntry {
                epoch: 1,
                start_offset: 6,
            },
        ];
        assert!(LeaderEpochCache::try_from(entries).is_err());
    }

    // ---- properties ----

    #[derive(Debug, Clone)]
    enum Op {
        /// Mostly the normal case: a later epoch at a later offset.
        AssignNext {
            epoch_step: i32,
            offset_step: i64,
        },
        /// Anything, including epochs and offsets below the latest.
        AssignAny {
            epoch: i32,
            start_offset: i64,
        },
        TruncateFromEnd(i64),
        TruncateFromStart(i64),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (0..3i32, 0..20i64).prop_map(|(epoch_step, offset_step)| Op::AssignNext { epoch_step, offset_step }),
            1 => (0..30i32, 0..200i64).prop_map(|(epoch, start_offset)| Op::AssignAny { epoch, start_offset }),
            1 => (-2..200i64).prop_map(Op::TruncateFromEnd),
            1 => (-2..200i64).prop_map(Op::TruncateFromStart),
        ]
    }

    /// The rules restated as naively as possible, over a plain list.
    #[derive(Debug, Default)]
    struct Model {
        entries: Vec<(i32, i64)>,
    }

    impl Model {
        fn assign(&mut self, epoch: i32, start: i64) {
            if let Some(&(e, s)) = self.entries.last() {
                if e == epoch && s <= start {
                    return;
                }
            }
            self.entries.retain(|&(e, s)| e < epoch && s < start);
            self.entries.push((epoch, start));
        }

        fn truncate_from_end(&mut self, end: i64) {
            if end >= 0 {
                self.entries.retain(|&(_, s)| s < end);
            }
        }

        fn truncate_from_start(&mut self, start: i64) {
            let covering = self
                .entries
                .iter()
                .rev()
                .find(|&&(_, s)| s <= start)
                .copied();
            if let Some((epoch, _)) = covering {
                self.entries.retain(|&(_, s)| s > start);
                self.entries.insert(0, (epoch, start));
            }
        }

        fn end_offset_for(&self, requested: i32, log_end: i64) -> Option<(i32, i64)> {
            if requested < 0 || self.entries.is_empty() {
                return None;
            }
            let latest = *self.entries.last().unwrap();
            if requested == latest.0 {
                return Some((latest.0, log_end));
            }
            let next_start = self
                .entries
                .iter()
                .find(|&&(e, _)| e > requested)
                .map(|&(_, s)| s)?;
            let floor = self.entries.iter().rev().find(|&&(e, _)| e <= requested);
            Some(match floor {
                Some(&(e, _)) => (e, next_start),
                None => (requested, next_start),
            })
        }
    }

    proptest! {
        #[test]
        fn operations_keep_the_invariant_and_match_the_model(ops in prop::collection::vec(op(), 0..60)) {
            let mut cache = LeaderEpochCache::new();
            let mut model = Model::default();
            for op in ops {
                match op {
                    Op::AssignNext { epoch_step, offset_step } => {
                        let (epoch, start) = cache
                            .latest_entry()
                            .map(|e| (e.epoch + epoch_step, e.start_offset + offset_step))
                            .unwrap_or((epoch_step, offset_step));
                        let before = model.entries.clone();
                        model.assign(epoch, start);
                        let outcome = cache.assign(epoch, start).unwrap();
                        prop_assert_eq!(outcome.changed(), before != model.entries);
                    }
                    Op::AssignAny { epoch, start_offset } => {
                        let before = model.entries.clone();
                        model.assign(epoch, start_offset);
                        let outcome = cache.assign(epoch, start_offset).unwrap();
                        prop_assert_eq!(outcome.changed(), before != model.entries);
                    }
                    Op::TruncateFromEnd(end) => {
                        let removed = cache.truncate_from_end(end);
                        let before = model.entries.len();
                        model.truncate_from_end(end);
                        prop_assert_eq!(removed.len(), before - model.entries.len());
                    }
                    Op::TruncateFromStart(start) => {
                        let before = model.entries.clone();
                        model.truncate_from_start(start);
                        prop_assert_eq!(cache.truncate_from_start(start), before != model.entries);
                    }
                }
                let entries: Vec<(i32, i64)> =
                    cache.entries().iter().map(|e| (e.epoch, e.start_offset)).collect();
                prop_assert_eq!(&entries, &model.entries);
                for pair in cache.entries().windows(2) {
                    prop_assert!(pair[0].epoch < pair[1].epoch);
                    prop_assert!(pair[0].start_offset < pair[1].start_offset);
                }
                prop_assert_eq!(LeaderEpochCache::decode(&cache.encode()), Ok(cache.clone()));
            }
            // The answer for every epoch, with a few log end offsets.
            let latest_start = cache.latest_entry().map_or(0, |e| e.start_offset);
            let max_epoch = cache.latest_epoch().unwrap_or(0);
            for log_end in [latest_start, latest_start + 1, latest_start + 50] {
                for requested in -2..=max_epoch + 2 {
                    let answer = cache.end_offset_for(requested, log_end).map(|a| (a.epoch, a.end_offset));
                    prop_assert_eq!(answer, model.end_offset_for(requested, log_end));
                    if let Some((epoch, end)) = answer {
                        prop_assert!(epoch <= requested);
                        prop_assert!(end <= log_end);
                        // The answered epoch's data really ends there: no offset at or after
                        // `end` was written by an epoch at or below the requested one.
                        if end < log_end {
                            prop_assert!(cache.epoch_for_offset(end).is_some_and(|e| e > requested));
                        }
                    }
                }
            }
        }

        #[test]
        fn decode_never_panics_on_bytes(bytes in prop::collection::vec(any::<u8>(), 0..64)) {
            let _ = LeaderEpochCache::decode(&bytes);
        }

        #[test]
        fn decode_accepts_only_canonical_text(
            lines in prop::collection::vec(
                prop_oneof![
                    Just("0".to_string()), Just("1".to_string()), Just("2".to_string()),
                    Just("3 7".to_string()), Just("1 0".to_string()), Just("5 9".to_string()),
                    Just("".to_string()), Just(" ".to_string()), Just("00".to_string()),
                    "[0-9 -]{0,8}",
                ],
                0..8,
            ),
            final_newline in any::<bool>(),
        ) {
            let mut text = lines.join("\n");
            if final_newline {
                text.push('\n');
            }
            if let Ok(cache) = LeaderEpochCache::decode(text.as_bytes()) {
                prop_assert_eq!(cache.encode(), text.into_bytes());
            }
        }
    }
}
