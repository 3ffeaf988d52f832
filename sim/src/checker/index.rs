//! What the checkers look up, built once per history: each send with its invoke and
//! completion, and what the reads saw, per partition and per value, sorted so that every
//! question is a binary search. Building it is O(n log n); it borrows every string from
//! the history.
//!
//! Every value string is interned once into a dense id, in order of first appearance
//! (sends first), so the hot paths compare and sort integers, not strings. Sent values
//! are told apart by 64-bit hashes (strings are compared only where hashes may collide);
//! a read value is first checked against the value acknowledged at its offset, which is
//! what a read almost always returns. No hash map is ever iterated, and where the order
//! of values reaches output (several values read at one offset) it is still the
//! strings' order.

use std::collections::{BTreeMap, HashMap};
use std::hash::{BuildHasherDefault, Hasher};

use crate::history::{History, Op, OpKind, Phase};

/// A topic-partition: the unit of order.
pub(crate) type Key<'a> = (&'a str, i32);

pub(crate) fn key_of(op: &Op) -> Key<'_> {
    (op.topic.as_str(), op.partition)
}

/// A dense id for a value string of the history: an index into [`Index::values`].
pub(crate) type ValueId = u32;

/// Everything the checkers share.
#[derive(Debug)]
pub(crate) struct Index<'a> {
    /// Every send, in invoke order (completion order for a completion without invoke).
    pub sends: Vec<Send<'a>>,
    /// The (process, partition) of each send, ok poll and completed seek.
    pub lanes: Lanes<'a>,
    /// What the reads of each partition saw; partitions no read returned a record of are
    /// absent.
    pub reads: BTreeMap<Key<'a>, PartitionReads<'a>>,
    /// Every distinct value sent or read, by id.
    pub values: Vec<&'a str>,
    /// The ids of every send's values, each send's a run starting at `Send::ids_at`.
    send_ids: Vec<ValueId>,
    /// Every distinct (value, partition, offset) a read returned, grouped by value id,
    /// each group sorted by partition then offset, with the first read that returned it.
    positions: Vec<Position<'a>>,
    /// Where each value id's group starts in `positions`; one more entry than `values`.
    position_starts: Vec<u32>,
}

/// One send: its invoke and its completion. Either may be missing: a history cut short
/// leaves an invoke without completion.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Send<'a> {
    pub invoke: Option<&'a Op>,
    pub completion: Option<&'a Op>,
    /// Its (process, partition): see [`Lanes`].
    pub lane: u32,
    /// Whether the completion is ok (the broker acknowledged the send), and the offset
    /// the acknowledgement gave.
    acked: bool,
    acked_offset: Option<i64>,
    /// Where the ids of [`Send::values`] start in the index's send ids, and how many.
    ids_at: u32,
    ids_len: u32,
}

/// What the reads of one partition saw.
#[derive(Debug, Default)]
pub(crate) struct PartitionReads<'a> {
    /// Each distinct (offset, value) returned, sorted by offset then value, with the first
    /// read (lowest index) that returned it.
    pub seen: Vec<Seen<'a>>,
    /// Each distinct offset returned, ascending, with the first read that returned it.
    pub offsets: Vec<(i64, &'a Op)>,
    /// The reads, in history order, that raised the highest offset read so far, each with
    /// its highest offset: ascending in both, so "the first read past i" is a search.
    pub reach: Vec<(&'a Op, i64)>,
}

/// One (offset, value) a read returned, and the first read that returned it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Seen<'a> {
    pub offset: i64,
    pub value: &'a str,
    pub id: ValueId,
    pub read: &'a Op,
}

/// Where a value was read, and the first read that returned it there.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Position<'a> {
    pub key: Key<'a>,
    pub offset: i64,
    pub read: &'a Op,
}

/// A small, fast hasher for the checkers' lookup-only maps (never iterated, so their
/// order cannot reach output) and for interning. Multiply-rotate over 8-byte words, then
/// a final mix so both the low and the high bits depend on every input bit.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct WordHasher(u64);

const MIX: u64 = 0x9e37_79b9_7f4a_7c15;

impl WordHasher {
    #[inline]
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(23) ^ word).wrapping_mul(MIX);
    }
}

impl Hasher for WordHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut words = bytes.chunks_exact(8);
        for word in &mut words {
            self.add(u64::from_le_bytes(word.try_into().expect("8 bytes")));
        }
        let rest = words.remainder();
        if !rest.is_empty() {
            let (head, tail) = short_words(rest);
            self.add(head ^ (tail << 32) ^ ((rest.len() as u64) << 59));
        }
    }

    #[inline]
    fn write_u8(&mut self, i: u8) {
        self.add(u64::from(i));
    }

    #[inline]
    fn write_u32(&mut self, i: u32) {
        self.add(u64::from(i));
    }

    #[inline]
    fn write_i32(&mut self, i: i32) {
        self.add(u64::from(i as u32));
    }

    #[inline]
    fn write_u64(&mut self, i: u64) {
        self.add(i);
    }

    #[inline]
    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }

    #[inline]
    fn finish(&self) -> u64 {
        let h = self.0 ^ (self.0 >> 32);
        let h = h.wrapping_mul(MIX);
        h ^ (h >> 29)
    }
}

/// A map for lookups only: see [`WordHasher`]. Never iterate one into output.
pub(crate) type LookupMap<K, V> = HashMap<K, V, BuildHasherDefault<WordHasher>>;

/// A string's hash for interning (not [`WordHasher`]'s `Hash` of a `str`).
#[inline]
fn hash_str(value: &str) -> u64 {
    let bytes = value.as_bytes();
    let mut hasher = WordHasher::default();
    if bytes.len() <= INLINE_MAX {
        let (head, tail) = short_words(bytes);
        hasher.add(head);
        hasher.add(tail ^ ((bytes.len() as u64) << 56));
    } else {
        hasher.write(bytes);
    }
    hasher.finish()
}

/// At most 16 bytes as two words, read without a copy loop: with the length, they
/// determine the bytes (8 to 16 bytes: the first and the last eight, overlapping; 4 to 7:
/// the first and the last four; fewer: each byte).
#[inline]
fn short_words(bytes: &[u8]) -> (u64, u64) {
    let len = bytes.len();
    debug_assert!(len <= INLINE_MAX);
    let word = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"));
    let half = |at: usize| {
        u64::from(u32::from_le_bytes(
            bytes[at..at + 4].try_into().expect("4 bytes"),
        ))
    };
    match len {
        8.. => (word(0), word(len - 8)),
        4..=7 => (half(0), half(len - 4)),
        1..=3 => (
            u64::from(bytes[0]) | u64::from(bytes[len / 2]) << 8 | u64::from(bytes[len - 1]) << 16,
            0,
        ),
        0 => (0, 0),
    }
}

/// Values up to this many bytes are kept inline in an [`Inline`], so checking a read
/// against a sent value touches no other memory.
const INLINE_MAX: usize = 16;

/// A value's length, and when it fits ([`INLINE_MAX`]) its bytes as [`short_words`].
#[derive(Debug, Clone, Copy)]
struct Inline {
    len: u32,
    words: (u64, u64),
}

impl Inline {
    #[inline]
    fn new(value: &str) -> Self {
        let bytes = value.as_bytes();
        Inline {
            len: u32::try_from(bytes.len()).unwrap_or(u32::MAX),
            words: if bytes.len() <= INLINE_MAX {
                short_words(bytes)
            } else {
                (0, 0)
            },
        }
    }

    /// Whether `value` is this value, `stored` (the value itself) deciding long ones.
    #[inline]
    fn holds(&self, value: &str, stored: &str) -> bool {
        let bytes = value.as_bytes();
        if bytes.len() != self.len as usize {
            false
        } else if bytes.len() <= INLINE_MAX {
            short_words(bytes) == self.words
        } else {
            stored == value
        }
    }
}

/// A set of hashes that may answer yes wrongly (rarely) but never no wrongly: one bit per
/// hash, indexed by its top bits, about 16 bits per expected member.
struct HashBits {
    words: Vec<u64>,
    shift: u32,
}

impl HashBits {
    fn for_count(count: usize) -> Self {
        let bits = (count.saturating_mul(16)).next_power_of_two().max(1024);
        HashBits {
            words: vec![0; bits / 64],
            shift: 64 - bits.trailing_zeros(),
        }
    }

    #[inline]
    fn slot(&self, hash: u64) -> (usize, u64) {
        let bit = (hash >> self.shift) as usize;
        (bit / 64, 1 << (bit % 64))
    }

    /// Adds `hash`; false if its bit was already set.
    #[inline]
    fn insert(&mut self, hash: u64) -> bool {
        let (word, mask) = self.slot(hash);
        let fresh = self.words[word] & mask == 0;
        self.words[word] |= mask;
        fresh
    }

    #[inline]
    fn may_hold(&self, hash: u64) -> bool {
        let (word, mask) = self.slot(hash);
        self.words[word] & mask != 0
    }
}

/// The value acknowledged at one offset of a partition.
#[derive(Debug, Clone, Copy)]
struct Hint {
    offset: i64,
    id: ValueId,
}

/// Each operation's lane: the (process, partition) it belongs to, for the operations the
/// checkers follow per process and partition (sends, ok polls, completed seeks).
#[derive(Debug)]
pub(crate) struct Lanes<'a> {
    /// Per operation (by position in the history): its lane, or [`Lanes::NONE`].
    pub of_op: Vec<u32>,
    /// Per lane: the process and partition.
    pub lanes: Vec<(&'a str, Key<'a>)>,
}

impl<'a> Lanes<'a> {
    pub const NONE: u32 = u32::MAX;

    pub fn new(history: &'a History) -> Self {
        // Looked up only, never iterated.
        let mut ids: LookupMap<(&str, &str, i32), u32> = LookupMap::default();
        let mut lanes = Vec::new();
        let of_op = history
            .ops
            .iter()
            .map(|op| {
                let followed = match op.kind {
                    OpKind::Send => true,
                    OpKind::Poll => op.phase == Phase::Ok,
                    OpKind::Seek => op.phase != Phase::Invoke,
                    // Group operations are checked by the group checkers; a member's
                    // position moves are recorded as seeks.
                    OpKind::Join
                    | OpKind::Assign
                    | OpKind::Revoke
                    | OpKind::Commit
                    | OpKind::Process
                    | OpKind::Reset => false,
                };
                if !followed {
                    return Self::NONE;
                }
                let slot = (op.process.as_str(), op.topic.as_str(), op.partition);
                *ids.entry(slot).or_insert_with(|| {
                    lanes.push((op.process.as_str(), key_of(op)));
                    u32::try_from(lanes.len() - 1).expect("fewer than 2^32 lanes")
                })
            })
            .collect();
        Lanes { of_op, lanes }
    }

    pub fn len(&self) -> usize {
        self.lanes.len()
    }

    /// The operations of `history` (the one these lanes are of) with their lanes.
    pub fn ops<'s>(&'s self, history: &'a History) -> impl Iterator<Item = (&'a Op, usize)> + 's
    where
        'a: 's,
    {
        debug_assert_eq!(history.ops.len(), self.of_op.len());
        history
            .ops
            .iter()
            .zip(self.of_op.iter().map(|&lane| lane as usize))
    }
}

/// One partition while the index is built.
struct Part<'a> {
    key: Key<'a>,
    /// Whether a read of it completed ok (only those partitions are in [`Index::reads`]).
    read: bool,
    seen: Vec<Seen<'a>>,
    reach: Vec<(&'a Op, i64)>,
    /// The values acknowledged at each offset, sorted by offset (an offset may repeat).
    hints: Vec<Hint>,
    /// How many records its reads returned.
    read_count: usize,
}

impl<'a> Part<'a> {
    fn new(key: Key<'a>) -> Self {
        Part {
            key,
            read: false,
            seen: Vec::new(),
            reach: Vec::new(),
            hints: Vec::new(),
            read_count: 0,
        }
    }
}

/// A read value that was not the one acknowledged at its offset, looked up once all reads
/// are in.
struct Unresolved {
    part: u32,
    at: u32,
}

impl<'a> Index<'a> {
    pub fn new(history: &'a History) -> Self {
        let lanes = Lanes::new(history);
        let mut sends = pair_sends(history, &lanes);
        let sent = flatten_sent(&mut sends);
        let Interned {
            ids: send_ids,
            hashes: send_hashes,
            mut values,
            inline,
        } = intern_sent(sent);

        let mut building = Parts::new(lanes.len());
        building.add_hints(&lanes, &sends, &send_ids);
        let unresolved = building.add_reads(history, &lanes, &inline, &values);
        drop(inline);
        let mut parts = building.parts;
        resolve(&mut parts, unresolved, &send_hashes, &send_ids, &mut values);

        let (parts, position_starts) = sort_seen(parts, values.len());
        let (reads, positions) = group_positions(parts, &position_starts, values.len());
        Index {
            sends,
            lanes,
            reads,
            values,
            send_ids,
            positions,
            position_starts,
        }
    }

    /// Where the value `id` was read, by partition then offset; empty if no read returned
    /// it.
    #[inline]
    pub fn positions_of_id(&self, id: ValueId) -> &[Position<'a>] {
        let at = id as usize;
        &self.positions[self.position_starts[at] as usize..self.position_starts[at + 1] as usize]
    }

    /// Where `value` was read, by partition then offset; empty if no read returned it.
    #[cfg(test)]
    pub fn positions_of(&self, value: &str) -> &[Position<'a>] {
        match self.values.iter().position(|v| *v == value) {
            Some(id) => self.positions_of_id(id as ValueId),
            None => &[],
        }
    }

    /// The ids of `send`'s values, in batch order.
    #[inline]
    pub fn ids_of(&self, send: &Send<'a>) -> &[ValueId] {
        let at = send.ids_at as usize;
        &self.send_ids[at..at + send.ids_len as usize]
    }
}

/// Every sent value, flat, in send order; each send learns where its run starts.
fn flatten_sent<'a>(sends: &mut [Send<'a>]) -> Vec<&'a str> {
    let sent_count = sends.iter().map(|send| send.values().len()).sum();
    let mut sent: Vec<&'a str> = Vec::with_capacity(sent_count);
    for send in sends {
        let values = send.values();
        send.ids_at = u32::try_from(sent.len()).expect("fewer than 2^32 sent values");
        send.ids_len = u32::try_from(values.len()).expect("fewer than 2^32 sent values");
        sent.extend(values.iter().map(String::as_str));
    }
    sent
}

/// The partitions while the index is built, in order of first appearance, and each
/// lane's partition.
struct Parts<'a> {
    parts: Vec<Part<'a>>,
    slots: LookupMap<Key<'a>, usize>,
    lane_parts: Vec<Option<usize>>,
}

impl<'a> Parts<'a> {
    fn new(lane_count: usize) -> Self {
        Parts {
            parts: Vec::new(),
            slots: LookupMap::default(),
            lane_parts: vec![None; lane_count],
        }
    }

    /// The partition of `lane`, added at first sight.
    fn slot(&mut self, lanes: &Lanes<'a>, lane: usize) -> usize {
        let (slots, parts) = (&mut self.slots, &mut self.parts);
        *self.lane_parts[lane].get_or_insert_with(|| {
            let key = lanes.lanes[lane].1;
            *slots.entry(key).or_insert_with(|| {
                parts.push(Part::new(key));
                parts.len() - 1
            })
        })
    }

    /// The value acknowledged at each offset, from every acknowledged send.
    fn add_hints(&mut self, lanes: &Lanes<'a>, sends: &[Send<'a>], send_ids: &[ValueId]) {
        for send in sends {
            let Some(first) = send.acked_offset() else {
                continue;
            };
            let slot = self.slot(lanes, send.lane as usize);
            let at = send.ids_at as usize;
            let ids = &send_ids[at..at + send.ids_len as usize];
            let hints = &mut self.parts[slot].hints;
            hints.extend(ids.iter().enumerate().map(|(position, &id)| Hint {
                offset: first + position as i64,
                id,
            }));
        }
        for part in &mut self.parts {
            part.hints.sort_by_key(|hint| hint.offset);
        }
    }

    /// What every ok read saw, in history order, and how far each partition's reads
    /// reached; the read values that are not the one acknowledged at their offset, to
    /// resolve once all reads are in.
    fn add_reads(
        &mut self,
        history: &'a History,
        lanes: &Lanes<'a>,
        inline: &[Inline],
        values: &[&'a str],
    ) -> Vec<Unresolved> {
        let reads_in_order = || lanes.ops(history).filter(|(op, _)| is_read(op));
        for (read, lane) in reads_in_order() {
            let slot = self.slot(lanes, lane);
            self.parts[slot].read = true;
            self.parts[slot].read_count += read.records.len();
        }
        for part in &mut self.parts {
            part.seen.reserve_exact(part.read_count);
        }

        let mut unresolved: Vec<Unresolved> = Vec::new();
        for (read, lane) in reads_in_order() {
            let slot = self.slot(lanes, lane);
            let part = &mut self.parts[slot];
            let mut cursor = 0;
            for (offset, value) in &read.records {
                // Most reads return what was acknowledged at that offset: check that value
                // first, and look the string up later only when it is something else.
                let id = match hint_at(&part.hints, &mut cursor, *offset) {
                    Some(hint)
                        if inline[hint.id as usize].holds(value, values[hint.id as usize]) =>
                    {
                        hint.id
                    }
                    _ => {
                        unresolved.push(Unresolved {
                            part: slot as u32,
                            at: part.seen.len() as u32,
                        });
                        ValueId::MAX
                    }
                };
                part.seen.push(Seen {
                    offset: *offset,
                    value: value.as_str(),
                    id,
                    read,
                });
            }
            if let Some(highest) = read.records.iter().map(|(offset, _)| *offset).max() {
                if part
                    .reach
                    .last()
                    .is_none_or(|&(_, before)| highest > before)
                {
                    part.reach.push((read, highest));
                }
            }
        }
        unresolved
    }
}

/// The partitions a read returned records of, by key, each one's `seen` sorted by offset
/// and value with repeats dropped; and where each value id's group of positions starts
/// (`value_count` + 1 entries).
fn sort_seen(parts: Vec<Part<'_>>, value_count: usize) -> (Vec<Part<'_>>, Vec<u32>) {
    let mut parts: Vec<Part<'_>> = parts.into_iter().filter(|part| part.read).collect();
    parts.sort_unstable_by(|a, b| a.key.cmp(&b.key));

    // How many positions each value id has, then where its group starts.
    let mut position_starts = vec![0u32; value_count + 1];
    for part in &mut parts {
        let seen = &mut part.seen;
        // Pushed in history order, so a stable sort keeps the first read first within
        // an (offset, value).
        seen.sort_by_key(|s| (s.offset, s.id));
        seen.dedup_by(|later, kept| later.offset == kept.offset && later.id == kept.id);
        // Ids are not in string order; where several values share an offset, put
        // them in string order (distinct ids, so distinct strings).
        for run in seen.chunk_by_mut(|a, b| a.offset == b.offset) {
            if run.len() > 1 {
                run.sort_unstable_by(|a, b| a.value.cmp(b.value));
            }
        }
        for s in seen.iter() {
            position_starts[s.id as usize + 1] += 1;
        }
    }
    for at in 1..position_starts.len() {
        position_starts[at] += position_starts[at - 1];
    }
    (parts, position_starts)
}

/// Each partition's reads (what was seen, the first read of each offset, the reach), and
/// every position grouped by value id, keeping the (partition, offset) order within each
/// group: every slot is written once.
fn group_positions<'a>(
    parts: Vec<Part<'a>>,
    position_starts: &[u32],
    value_count: usize,
) -> (BTreeMap<Key<'a>, PartitionReads<'a>>, Vec<Position<'a>>) {
    let mut reads = BTreeMap::new();
    let mut positions = match parts.iter().find_map(|part| part.seen.first()) {
        Some(any) => vec![
            Position {
                key: ("", 0),
                offset: 0,
                read: any.read,
            };
            position_starts[value_count] as usize
        ],
        None => Vec::new(),
    };
    let mut next: Vec<u32> = position_starts[..value_count].to_vec();
    for Part {
        key, seen, reach, ..
    } in parts
    {
        let mut offsets: Vec<(i64, &Op)> = Vec::new();
        for s in &seen {
            match offsets.last_mut() {
                Some((offset, first)) if *offset == s.offset => {
                    if s.read.index < first.index {
                        *first = s.read;
                    }
                }
                _ => offsets.push((s.offset, s.read)),
            }
            let slot = &mut next[s.id as usize];
            positions[*slot as usize] = Position {
                key,
                offset: s.offset,
                read: s.read,
            };
            *slot += 1;
        }
        reads.insert(
            key,
            PartitionReads {
                seen,
                offsets,
                reach,
            },
        );
    }
    (reads, positions)
}

/// Gives the [`Unresolved`] read values their ids: a value sent elsewhere (or never
/// acknowledged), or a new id for a value never sent. These are few, so one pass over the
/// sent values' hashes picks the candidates.
fn resolve<'a>(
    parts: &mut [Part<'a>],
    unresolved: Vec<Unresolved>,
    send_hashes: &[u64],
    send_ids: &[ValueId],
    values: &mut Vec<&'a str>,
) {
    if unresolved.is_empty() {
        return;
    }
    let hashed: Vec<u64> = unresolved
        .iter()
        .map(|u| hash_str(parts[u.part as usize].seen[u.at as usize].value))
        .collect();
    let mut wanted = HashBits::for_count(hashed.len());
    for &hash in &hashed {
        wanted.insert(hash);
    }
    let mut sorted = hashed.clone();
    sorted.sort_unstable();
    let mut candidates: Vec<(u64, ValueId)> = send_hashes
        .iter()
        .zip(send_ids)
        .filter(|&(&hash, _)| wanted.may_hold(hash) && sorted.binary_search(&hash).is_ok())
        .map(|(&hash, &id)| (hash, id))
        .collect();
    candidates.sort_unstable();
    candidates.dedup();
    // Looked up only, never iterated.
    let mut unsent: LookupMap<&'a str, ValueId> = LookupMap::default();
    for (Unresolved { part, at }, hash) in unresolved.into_iter().zip(hashed) {
        let seen = &mut parts[part as usize].seen[at as usize];
        let value = seen.value;
        let start = candidates.partition_point(|&(h, _)| h < hash);
        let found = candidates[start..]
            .iter()
            .take_while(|&&(h, _)| h == hash)
            .map(|&(_, id)| id)
            .find(|&id| values[id as usize] == value);
        seen.id = found.unwrap_or_else(|| {
            let next = ValueId::try_from(values.len()).expect("fewer than 2^32 values");
            *unsent.entry(value).or_insert_with(|| {
                values.push(value);
                next
            })
        });
    }
}

/// What [`intern_sent`] finds.
struct Interned<'a> {
    /// Per sent value (flat, in send order): its id.
    ids: Vec<ValueId>,
    /// Per sent value: its hash ([`hash_str`]).
    hashes: Vec<u64>,
    /// Per id: the value.
    values: Vec<&'a str>,
    /// Per id: the value, inline.
    inline: Vec<Inline>,
}

/// Ids for the sent values (flat, in send order): equal strings get one id, ids go in
/// order of first appearance. Values are meant to be unique, so equal ones are found
/// among the few whose hashes share a bit of a [`HashBits`], sorted by hash.
fn intern_sent(sent: Vec<&str>) -> Interned<'_> {
    let count = u32::try_from(sent.len()).expect("fewer than 2^32 sent values");
    let mut hashes: Vec<u64> = Vec::with_capacity(sent.len());
    let mut inline_at: Vec<Inline> = Vec::with_capacity(sent.len());
    for value in &sent {
        hashes.push(hash_str(value));
        inline_at.push(Inline::new(value));
    }
    let mut once = HashBits::for_count(sent.len());
    let mut twice = HashBits::for_count(sent.len());
    for &hash in &hashes {
        if !once.insert(hash) {
            twice.insert(hash);
        }
    }
    drop(once);
    let mut shared: Vec<(u64, u32)> = hashes
        .iter()
        .zip(0..count)
        .filter(|&(&hash, _)| twice.may_hold(hash))
        .map(|(&hash, at)| (hash, at))
        .collect();
    shared.sort_unstable();
    // Each later position holding the same string as an earlier one, with the first.
    let mut repeats: Vec<(u32, u32)> = Vec::new();
    let mut kept: Vec<u32> = Vec::new();
    for run in shared.chunk_by(|a, b| a.0 == b.0) {
        if run.len() < 2 {
            continue;
        }
        // Positions ascend within a run: the first of each distinct string is kept.
        kept.clear();
        for &(_, at) in run {
            let value = sent[at as usize];
            match kept.iter().find(|&&k| sent[k as usize] == value) {
                Some(&k) => repeats.push((at, k)),
                None => kept.push(at),
            }
        }
    }
    if repeats.is_empty() {
        return Interned {
            ids: (0..count).collect(),
            hashes,
            values: sent,
            inline: inline_at,
        };
    }
    repeats.sort_unstable();
    let mut repeats = repeats.into_iter().peekable();
    let mut ids: Vec<ValueId> = Vec::with_capacity(sent.len());
    let mut values = Vec::with_capacity(sent.len());
    let mut inline: Vec<Inline> = Vec::with_capacity(sent.len());
    for (at, &value) in (0..count).zip(&sent) {
        match repeats.next_if(|&(repeat, _)| repeat == at) {
            Some((_, first)) => ids.push(ids[first as usize]),
            None => {
                ids.push(values.len() as ValueId);
                values.push(value);
                inline.push(inline_at[at as usize]);
            }
        }
    }
    Interned {
        ids,
        hashes,
        values,
        inline,
    }
}

/// The first value acknowledged at `offset`, if any. `cursor` is where the previous
/// look-up ended: a read's offsets mostly go up by one, so the answer is usually there.
#[inline]
fn hint_at<'h>(hints: &'h [Hint], cursor: &mut usize, offset: i64) -> Option<&'h Hint> {
    let at = lower_bound_near(hints, *cursor, offset, |hint| hint.offset);
    match hints.get(at) {
        Some(hint) if hint.offset == offset => {
            *cursor = at + 1;
            Some(hint)
        }
        _ => {
            *cursor = at;
            None
        }
    }
}

/// The first position in `items` (sorted by `offset_of`) whose offset is at least
/// `offset`, searched outwards from `guess`: cheap when the answer is near it.
#[inline]
pub(crate) fn lower_bound_near<T>(
    items: &[T],
    guess: usize,
    offset: i64,
    offset_of: impl Fn(&T) -> i64,
) -> usize {
    let len = items.len();
    let guess = guess.min(len);
    if guess < len && offset_of(&items[guess]) < offset {
        // The answer is after `guess`: gallop right. Invariant: items[low - 1] < offset.
        let mut low = guess + 1;
        let mut step = 1;
        while low + step <= len && offset_of(&items[low + step - 1]) < offset {
            low += step;
            step *= 2;
        }
        let high = (low + step).min(len);
        low + items[low..high].partition_point(|item| offset_of(item) < offset)
    } else if guess > 0 && offset_of(&items[guess - 1]) >= offset {
        // The answer is at or before `guess - 1`: gallop left. Invariant:
        // items[high] >= offset.
        let mut high = guess - 1;
        let mut step = 1;
        while high >= step && offset_of(&items[high - step]) >= offset {
            high -= step;
            step *= 2;
        }
        let low = if high >= step { high - step + 1 } else { 0 };
        low + items[low..high].partition_point(|item| offset_of(item) < offset)
    } else {
        guess
    }
}

impl<'a> Send<'a> {
    /// The invoke, or the completion when there is no invoke.
    pub fn first(&self) -> &'a Op {
        self.invoke
            .or(self.completion)
            .expect("a send has an invoke or a completion")
    }

    pub fn key(&self) -> Key<'a> {
        key_of(self.first())
    }

    pub fn process(&self) -> &'a str {
        self.first().process.as_str()
    }

    /// The batch's values (the completion's, if it carries them).
    pub fn values(&self) -> &'a [String] {
        match self.completion {
            Some(done) if !done.values.is_empty() => &done.values,
            _ => &self.first().values,
        }
    }

    /// The completion, if the broker acknowledged the send.
    pub fn ack(&self) -> Option<&'a Op> {
        self.completion.filter(|_| self.acked)
    }

    /// The acknowledged offset of the batch's first record.
    pub fn acked_offset(&self) -> Option<i64> {
        self.acked_offset
    }

    /// The send's operations, most telling first: completion, then invoke.
    pub fn ops(&self) -> Vec<usize> {
        self.completion
            .into_iter()
            .chain(self.invoke)
            .map(|op| op.index)
            .collect()
    }
}

impl<'a> PartitionReads<'a> {
    /// The distinct values read at `offset`, each with the first read that returned it.
    #[cfg(test)]
    pub fn at(&self, offset: i64) -> &[Seen<'a>] {
        let start = self.seen.partition_point(|s| s.offset < offset);
        let end = start + self.seen[start..].partition_point(|s| s.offset == offset);
        &self.seen[start..end]
    }

    /// [`PartitionReads::at`], searching from `cursor` (where the previous look-up ended)
    /// and moving it past the answer: cheap for offsets that mostly go up.
    #[inline]
    pub fn at_near(&self, offset: i64, cursor: &mut usize) -> &[Seen<'a>] {
        let start = lower_bound_near(&self.seen, *cursor, offset, |s| s.offset);
        let end = start
            + self.seen[start..]
                .iter()
                .take_while(|s| s.offset == offset)
                .count();
        *cursor = end;
        &self.seen[start..end]
    }

    /// The first read (in history order) that returned an offset above `offset`, with the
    /// highest offset it returned.
    pub fn first_read_past(&self, offset: i64) -> Option<(&'a Op, i64)> {
        let at = self
            .reach
            .partition_point(|&(_, highest)| highest <= offset);
        self.reach.get(at).copied()
    }

    /// The distinct offsets read strictly between `low` and `high`.
    pub fn offsets_between(&self, low: i64, high: i64) -> &[(i64, &'a Op)] {
        let start = self.offsets.partition_point(|&(offset, _)| offset <= low);
        let end = start + self.offsets[start..].partition_point(|&(offset, _)| offset < high);
        &self.offsets[start..end]
    }
}

/// A read that returned something: a poll that completed ok.
pub(crate) fn is_read(op: &Op) -> bool {
    op.kind == OpKind::Poll && op.phase == Phase::Ok
}

/// Pairs each send completion with its process's outstanding send invoke to the same
/// partition that carries the same records (a producer may have several batches of one
/// partition in flight; values are unique, so the first value decides), or with the latest
/// outstanding one when the completion names no records. An invoke no completion matches
/// stays unfinished.
///
/// Sends are placed when their first operation is seen, so they come out in the order of
/// their first operation without a sort.
fn pair_sends<'a>(history: &'a History, lanes: &Lanes<'a>) -> Vec<Send<'a>> {
    // Per lane: the positions in `sends` of its outstanding invokes, oldest first.
    let mut outstanding: Vec<Vec<usize>> = vec![Vec::new(); lanes.len()];
    let mut sends: Vec<Send<'a>> = Vec::new();
    for (op, lane) in lanes.ops(history).filter(|(op, _)| op.kind == OpKind::Send) {
        let waiting = &mut outstanding[lane];
        let acked = op.phase == Phase::Ok;
        let acked_offset = op.offset.filter(|_| acked);
        if op.phase == Phase::Invoke {
            waiting.push(sends.len());
            sends.push(Send {
                invoke: Some(op),
                completion: None,
                lane: lane as u32,
                acked: false,
                acked_offset: None,
                ids_at: 0,
                ids_len: 0,
            });
            continue;
        }
        let matching = match op.values.first() {
            Some(first) => waiting.iter().position(|&at| {
                sends[at]
                    .invoke
                    .is_some_and(|invoke| invoke.values.first() == Some(first))
            }),
            None => waiting.len().checked_sub(1),
        };
        if let Some(i) = matching {
            let at = waiting.remove(i);
            sends[at].completion = Some(op);
            sends[at].acked = acked;
            sends[at].acked_offset = acked_offset;
        } else {
            sends.push(Send {
                invoke: None,
                completion: Some(op),
                lane: lane as u32,
                acked,
                acked_offset,
                ids_at: 0,
                ids_len: 0,
            });
        }
    }
    sends
}

#[cfg(test)]
mod tests {
    use super::super::testkit::Case;
    use super::*;

    #[test]
    fn sends_pair_by_process_across_interleaving() {
        let mut h = Case::new();
        let a = h.send("p1", "t", 0, &["a"]).pending();
        let b = h.send("p2", "t", 0, &["b"]).pending();
        let b_done = h.complete_send(b, Phase::Ok, Some(0));
        let a_done = h.complete_send(a, Phase::Info, None);
        let c = h.send("p1", "t", 0, &["c"]).pending();
        let index = Index::new(&h.history);
        let pairs: Vec<Vec<usize>> = index.sends.iter().map(Send::ops).collect();
        assert_eq!(pairs, vec![vec![a_done, a], vec![b_done, b], vec![c]]);
        assert_eq!(index.sends[1].acked_offset(), Some(0));
        assert_eq!(index.sends[0].acked_offset(), None);
    }

    #[test]
    fn lookups_find_first_reads() {
        let mut h = Case::new();
        let r1 = h.poll("c1", "t", 0, 0).ok(&[(0, "a"), (2, "c")]);
        let r2 = h.poll("c2", "t", 0, 0).ok(&[(0, "a"), (1, "b")]);
        let r3 = h.poll("c2", "t", 0, 2).ok(&[(2, "x"), (5, "e")]);
        let index = Index::new(&h.history);
        let reads = &index.reads[&("t", 0)];
        let at = |offset| -> Vec<(&str, usize)> {
            reads
                .at(offset)
                .iter()
                .map(|s| (s.value, s.read.index))
                .collect()
        };
        assert_eq!(at(0), vec![("a", r1.done)]);
        assert_eq!(at(2), vec![("c", r1.done), ("x", r3.done)]);
        assert_eq!(at(3), vec![]);
        let past = |offset| reads.first_read_past(offset).map(|(op, o)| (op.index, o));
        assert_eq!(past(-1), Some((r1.done, 2)));
        assert_eq!(past(1), Some((r1.done, 2)));
        assert_eq!(past(2), Some((r3.done, 5)));
        assert_eq!(past(5), None);
        let between: Vec<(i64, usize)> = reads
            .offsets_between(0, 5)
            .iter()
            .map(|(o, op)| (*o, op.index))
            .collect();
        assert_eq!(between, vec![(1, r2.done), (2, r1.done)]);
        let where_a: Vec<i64> = index.positions_of("a").iter().map(|p| p.offset).collect();
        assert_eq!(where_a, vec![0]);
        assert!(index.positions_of("zzz").is_empty());
    }
}
