//! The children of one znode: their slots in the node store, ordered by
//! name. Names are not stored here (each child holds its own); every
//! search is given a function from slot to name.
//!
//! A directory can hold millions of children, and ZooKeeper users make
//! such directories with sequential nodes (ascending names) as often as
//! with random ones. A sorted `Vec` would move megabytes on every insert
//! or delete at its front; a `BTreeSet<Box<str>>` costs a heap allocation
//! and ~50 bytes per child. Sorted blocks of at most [`BLOCK`] children
//! bound every move to one block.
//!
//! Searching must not read the children's names: each name is two
//! dependent cache misses away (slot, then the node's name and data), and
//! a search that compared names read ~20 of them per insert into a large
//! directory, most of the cost of a create there. So each block keeps the
//! bytes all its names begin with (its prefix), and each child the four
//! bytes of its name that follow the prefix (its key). Names that share a
//! long prefix (`lock-0000001234`, `c12-3-45678`) differ in their keys,
//! where the first bytes of the name would tie. Two keys that differ order
//! their names; only equal keys need the names. Memory: 8 bytes per child,
//! plus each block's prefix.
//!
//! Finding the block must not read the blocks either: a search through a
//! directory of 600,000 children visits ~11 of its ~1,500 blocks, and
//! each visit read the block's entries and prefix (two more allocations,
//! two cache misses). So the directory keeps, in one array beside the
//! blocks, each block's fence: the first bytes of its last name and that
//! name's slot; the search reads the fences only, and a name only where
//! its first [`FENCE_HEAD`] bytes are those of a fence.
//!
//! Blocks grow their entries a little at a time (an eighth), not by
//! doubling, and a split gives back the half it moved out: where clients
//! create in many places at once (a block split in the middle fills from
//! a half to full), doubling left blocks holding twice the room they used,
//! and the children of a million-znode directory took 26 MiB instead of 8
//! (a heap profile of a loaded node, docs/benchmarks.md). Only the last
//! block, where ascending names append, still doubles: it fills exactly.
//!
//! Invariants, checked by the property test: every name in a block begins
//! with the block's prefix, every child's key is [`key_at`] its name and
//! the prefix's length, and every block's fence is [`Fence::of`] its last
//! child. A name that does not share a block's prefix
//! shortens it when it joins (rekeying the block); a split lengthens each
//! half's prefix to what its first and last names share.

use std::cmp::Ordering;

/// Most children a block holds before it splits.
const BLOCK: usize = 512;

/// Bytes of a block's last name its fence holds: enough for most names
/// (`lock-0000001234`, `c12-3-456789`, a host and port) to be held whole.
const FENCE_HEAD: usize = 19;

#[derive(Debug, Clone, Default)]
pub(super) struct Children {
    /// Non-empty sorted blocks; every name in a block sorts before every
    /// name in the next one.
    blocks: Vec<Block>,
    /// `fences[i]` is the fence of `blocks[i]`.
    fences: Vec<Fence>,
    len: usize,
}

/// The last child of a block: the first [`FENCE_HEAD`] bytes of its name
/// (zero-padded), and its slot for when those bytes cannot decide.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Fence {
    head: [u8; FENCE_HEAD],
    /// The name's length, or `FENCE_HEAD + 1` for any longer name (its
    /// head is then a proper prefix of it).
    len: u8,
    slot: u32,
}

impl Fence {
    fn of(slot: u32, name: &[u8]) -> Fence {
        let n = name.len().min(FENCE_HEAD);
        let mut head = [0u8; FENCE_HEAD];
        head[..n].copy_from_slice(&name[..n]);
        let len = u8::try_from(name.len().min(FENCE_HEAD + 1)).expect("FENCE_HEAD < 255");
        Fence { head, len, slot }
    }

    /// Whether the fence's name sorts below `name`.
    fn below<'a>(&self, name: &[u8], name_of: &impl Fn(u32) -> &'a [u8]) -> bool {
        let len = usize::from(self.len);
        if len <= FENCE_HEAD {
            // The whole name is here.
            return &self.head[..len] < name;
        }
        // A longer name: the head decides unless `name` begins with it.
        let n = name.len().min(FENCE_HEAD);
        match name[..n].cmp(&self.head[..]) {
            Ordering::Equal => name_of(self.slot) < name,
            // `name` is a prefix of the head or differs within it.
            other => other == Ordering::Greater,
        }
    }
}

/// One child: its slot, and the four bytes of its name after its block's
/// prefix.
#[derive(Debug, Clone, Copy)]
struct Entry {
    key: u32,
    slot: u32,
}

#[derive(Debug, Clone)]
struct Block {
    /// Sorted by name.
    entries: Vec<Entry>,
    /// The bytes every name in the block begins with.
    prefix: Box<[u8]>,
}

/// The four bytes of `name` from `at`, big-endian, zero-padded. Where two
/// names share their first `at` bytes and their keys differ, the keys order
/// the names (a name that ends early reads as zeros, and is a prefix of the
/// other up to where they differ); where keys are equal, the names must be
/// compared.
fn key_at(name: &[u8], at: usize) -> u32 {
    let rest = name.get(at..).unwrap_or_default();
    let mut bytes = [0u8; 4];
    let n = rest.len().min(4);
    bytes[..n].copy_from_slice(&rest[..n]);
    u32::from_be_bytes(bytes)
}

fn common_prefix(a: &[u8], b: &[u8]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

impl Block {
    fn new(slot: u32, name: &[u8]) -> Block {
        // A lone name is its own prefix (and its key is all padding).
        Block {
            entries: vec![Entry { key: 0, slot }],
            prefix: name.into(),
        }
    }

    /// The key of `name` in this block, if it begins with the prefix.
    fn key_of(&self, name: &[u8]) -> Option<u32> {
        name.starts_with(&self.prefix)
            .then(|| key_at(name, self.prefix.len()))
    }

    /// The fence of this block: its last child's.
    fn fence<'a>(&self, name_of: &impl Fn(u32) -> &'a [u8]) -> Fence {
        let slot = self.entries.last().map_or(0, |e| e.slot);
        Fence::of(slot, name_of(slot))
    }

    /// Where `name` is, or would go, in this block.
    fn position<'a>(&self, name: &[u8], name_of: &impl Fn(u32) -> &'a [u8]) -> (usize, bool) {
        let Some(key) = self.key_of(name) else {
            // Before or after every name here.
            let at = if name < &self.prefix[..] {
                0
            } else {
                self.entries.len()
            };
            return (at, false);
        };
        let below = self.entries.partition_point(|e| e.key < key);
        let ties = self.entries[below..].partition_point(|e| e.key == key);
        let run = &self.entries[below..below + ties];
        let within = run.partition_point(|e| name_of(e.slot) < name);
        let found = run.get(within).is_some_and(|e| name_of(e.slot) == name);
        (below + within, found)
    }

    /// Puts `slot`, named `name`, at `at`; shortens the prefix first if
    /// `name` does not begin with it. `appending`: ascending names arrive
    /// at the end of the directory, so this block will fill up.
    fn put<'a>(
        &mut self,
        at: usize,
        slot: u32,
        name: &[u8],
        name_of: &impl Fn(u32) -> &'a [u8],
        appending: bool,
    ) {
        if !name.starts_with(&self.prefix) {
            let shared = common_prefix(&self.prefix, name);
            self.prefix = name[..shared].into();
            self.rekey(name_of);
        }
        let key = key_at(name, self.prefix.len());
        let len = self.entries.len();
        if len == self.entries.capacity() {
            let step = if appending { len } else { len / 8 };
            let room = BLOCK.saturating_sub(len).max(1);
            self.entries.reserve_exact(step.max(4).min(room));
        }
        self.entries.insert(at, Entry { key, slot });
    }

    /// Splits a full block in two and returns the upper half. The split
    /// falls in the middle half of the block where neighbouring names share
    /// the least (where one family of names ends and another begins), so
    /// that each half's names share a long prefix; each half's prefix then
    /// lengthens to what its first and last names share, and is rekeyed.
    fn split<'a>(&mut self, name_of: &impl Fn(u32) -> &'a [u8]) -> Block {
        let names: Vec<&'a [u8]> = self.entries.iter().map(|e| name_of(e.slot)).collect();
        let middle = names.len() / 2;
        let (from, to) = (names.len() / 4, names.len() * 3 / 4);
        let at = (from.max(1)..to.max(2))
            .min_by_key(|&i| {
                let shared = names
                    .get(i - 1)
                    .zip(names.get(i))
                    .map_or(0, |(a, b)| common_prefix(a, b));
                (shared, i.abs_diff(middle))
            })
            .unwrap_or(middle);
        // `split_off` sizes the upper half to fit; the lower half gives
        // back the room the upper one took.
        let upper = self.entries.split_off(at);
        self.entries.shrink_to(at + at / 8);
        let mut upper = Block {
            entries: upper,
            prefix: Box::default(),
        };
        let (lower_names, upper_names) = names.split_at(at);
        self.rekey_from(lower_names);
        upper.rekey_from(upper_names);
        upper
    }

    /// Sets the prefix to what the first and last of `names` (the block's
    /// names, in order) share, and every key from it.
    fn rekey_from(&mut self, names: &[&[u8]]) {
        let (Some(first), Some(last)) = (names.first(), names.last()) else {
            return;
        };
        let shared = common_prefix(first, last);
        self.prefix = first[..shared].into();
        for (entry, name) in self.entries.iter_mut().zip(names) {
            entry.key = key_at(name, shared);
        }
    }

    fn rekey<'a>(&mut self, name_of: &impl Fn(u32) -> &'a [u8]) {
        let at = self.prefix.len();
        for entry in &mut self.entries {
            entry.key = key_at(name_of(entry.slot), at);
        }
    }
}

/// Where a name is, or would go: block and position in it.
struct Place {
    block: usize,
    at: usize,
    found: bool,
}

impl Children {
    pub(super) fn len(&self) -> usize {
        self.len
    }

    fn locate<'a>(&self, name: &[u8], name_of: &impl Fn(u32) -> &'a [u8]) -> Place {
        // The first block whose last name is not below `name`.
        let block = self.fences.partition_point(|f| f.below(name, name_of));
        let Some(target) = self.blocks.get(block) else {
            // Past every name: the end of the last block.
            let block = block.saturating_sub(1);
            let at = self.blocks.get(block).map_or(0, |b| b.entries.len());
            return Place {
                block,
                at,
                found: false,
            };
        };
        let (at, found) = target.position(name, name_of);
        Place { block, at, found }
    }

    /// Adds `slot`, named `name_of(slot)`; false if a child of that name is
    /// already here.
    pub(super) fn insert<'a>(&mut self, slot: u32, name_of: impl Fn(u32) -> &'a [u8]) -> bool {
        let name = name_of(slot);
        // Sequential nodes (locks, queues, elections) arrive in ascending
        // order: one comparison with the last name places them.
        let past_the_end = self.fences.last().is_some_and(|f| f.below(name, &name_of));
        let Place { block, at, found } = if past_the_end {
            let block = self.blocks.len() - 1;
            Place {
                block,
                at: self.blocks[block].entries.len(),
                found: false,
            }
        } else {
            self.locate(name, &name_of)
        };
        if found {
            return false;
        }
        // A name between two blocks (the end of one, the start of the next)
        // joins the one whose prefix it shares more of, so that a run of
        // ascending names in the middle of a directory (one lock's
        // sequential nodes beside another's) keeps to its own block and
        // keeps that block's prefix long.
        let (block, at) = match block.checked_sub(1) {
            Some(before) if at == 0 => {
                let shared = |b: &Block| common_prefix(&b.prefix, name);
                if shared(&self.blocks[before]) > shared(&self.blocks[block]) {
                    (before, self.blocks[before].entries.len())
                } else {
                    (block, at)
                }
            }
            _ => (block, at),
        };
        self.len += 1;
        let last_block = block + 1 == self.blocks.len();
        let Some(target) = self.blocks.get_mut(block) else {
            self.blocks.push(Block::new(slot, name));
            self.fences.push(Fence::of(slot, name));
            return true;
        };
        if target.entries.len() < BLOCK {
            let last = at == target.entries.len();
            target.put(at, slot, name, &name_of, last && last_block);
            if last {
                self.fences[block] = Fence::of(slot, name);
            }
            return true;
        }
        if at == target.entries.len() && last_block {
            // Appending past the last name (sequential nodes): a new block,
            // so that the full one stays full instead of half empty.
            self.blocks.push(Block::new(slot, name));
            self.fences.push(Fence::of(slot, name));
            return true;
        }
        let mut upper = target.split(&name_of);
        let lower_len = target.entries.len();
        if at <= lower_len {
            target.put(at, slot, name, &name_of, false);
        } else {
            upper.put(at - lower_len, slot, name, &name_of, false);
        }
        let lower_fence = target.fence(&name_of);
        let upper_fence = upper.fence(&name_of);
        self.blocks.insert(block + 1, upper);
        self.fences[block] = lower_fence;
        self.fences.insert(block + 1, upper_fence);
        true
    }

    /// Removes the child named `name`; returns its slot.
    pub(super) fn remove<'a>(
        &mut self,
        name: &[u8],
        name_of: impl Fn(u32) -> &'a [u8],
    ) -> Option<u32> {
        let Place { block, at, found } = self.locate(name, &name_of);
        if !found {
            return None;
        }
        let target = &mut self.blocks[block];
        // The prefix stays true of the names that remain.
        let slot = target.entries.remove(at).slot;
        if target.entries.is_empty() {
            self.blocks.remove(block);
            self.fences.remove(block);
        } else {
            if at == target.entries.len() {
                self.fences[block] = target.fence(&name_of);
            }
            if target.entries.len() < BLOCK / 8 && target.entries.capacity() > BLOCK {
                target.entries.shrink_to(BLOCK / 4);
            }
        }
        self.len -= 1;
        Some(slot)
    }

    /// Every child's slot, by name.
    pub(super) fn iter(&self) -> impl Iterator<Item = u32> + '_ {
        self.blocks.iter().flat_map(|b| &b.entries).map(|e| e.slot)
    }

    /// The children named after `after` (all of them for `None`), by name.
    pub(super) fn iter_after<'a>(
        &self,
        after: Option<&[u8]>,
        name_of: impl Fn(u32) -> &'a [u8],
    ) -> impl Iterator<Item = u32> + '_ {
        let (block, at) = match after {
            None => (0, 0),
            Some(name) => {
                let Place { block, at, found } = self.locate(name, &name_of);
                (block, at + usize::from(found))
            }
        };
        self.blocks
            .iter()
            .skip(block)
            .enumerate()
            .flat_map(move |(i, b)| b.entries.iter().skip(if i == 0 { at } else { 0 }))
            .map(|e| e.slot)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use proptest::prelude::*;

    use super::*;

    /// Names by slot; slot `s` is named `names[s]`.
    fn names() -> Vec<Vec<u8>> {
        // A quarter of the names share their first nine bytes, a quarter
        // are names of uneven length that share all but their last few
        // digits, so that prefixes shorten and lengthen and keys tie (one
        // name a prefix of another) as well as differ; and a quarter are
        // longer than a fence's head and share it, or end within a byte
        // of it, so that fences must read names.
        (0..3000u32)
            .map(|s| {
                let n = (s * 7919) % 3000;
                match n % 4 {
                    0 => format!("n{n:05}"),
                    1 => format!("sharedpfx{n:05}"),
                    2 => format!("c12-3-4{}", n / 4),
                    _ => format!("{}{}", "x".repeat(FENCE_HEAD - 1), n / 4),
                }
                .into_bytes()
            })
            .collect()
    }

    #[derive(Debug, Clone)]
    enum Step {
        Insert(u32),
        Remove(u32),
        /// Inserts a run of ascending names, as sequential creates do.
        Run(u32, u32),
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            4 => (0..3000u32).prop_map(Step::Insert),
            3 => (0..3000u32).prop_map(Step::Remove),
            1 => (0..3000u32, 1..1200u32).prop_map(|(s, n)| Step::Run(s, n)),
        ]
    }

    proptest! {
        /// Ordered as a `BTreeSet` of the names through inserts, removals,
        /// splits and emptied blocks; iteration from any name agrees.
        #[test]
        fn behaves_as_an_ordered_set(steps in proptest::collection::vec(step(), 0..60)) {
            let names = names();
            // Slot of each name, to turn ascending names into slots.
            let mut by_name: Vec<(Vec<u8>, u32)> =
                names.iter().cloned().zip(0..).collect();
            by_name.sort();
            let name_of = |s: u32| names[s as usize].as_slice();
            let mut set = Children::default();
            let mut model: BTreeSet<Vec<u8>> = BTreeSet::new();
            for step in steps {
                match step {
                    Step::Insert(s) => {
                        prop_assert_eq!(set.insert(s, name_of), model.insert(names[s as usize].clone()));
                    }
                    Step::Remove(s) => {
                        let name = &names[s as usize];
                        prop_assert_eq!(set.remove(name, name_of), model.remove(name).then_some(s));
                    }
                    Step::Run(start, n) => {
                        let from = by_name.iter().position(|(_, s)| *s == start).unwrap_or(0);
                        for (name, s) in by_name.iter().skip(from).take(n as usize) {
                            prop_assert_eq!(set.insert(*s, name_of), model.insert(name.clone()));
                        }
                    }
                }
                prop_assert_eq!(set.len(), model.len());
                prop_assert!(set.blocks.iter().all(|b| !b.entries.is_empty() && b.entries.len() <= BLOCK));
                prop_assert_eq!(set.fences.len(), set.blocks.len());
                for (b, f) in set.blocks.iter().zip(&set.fences) {
                    prop_assert_eq!(*f, b.fence(&name_of), "every fence is its block's last child");
                }
                for b in &set.blocks {
                    for e in &b.entries {
                        let name = name_of(e.slot);
                        prop_assert!(name.starts_with(&b.prefix), "every name begins with its block's prefix");
                        prop_assert_eq!(e.key, key_at(name, b.prefix.len()), "every key is its name's");
                    }
                }
            }
            let listed: Vec<&[u8]> = set.iter().map(name_of).collect();
            let expected: Vec<&[u8]> = model.iter().map(Vec::as_slice).collect();
            prop_assert_eq!(&listed, &expected);
            for probe in [0u32, 1, 2, 1499, 2999] {
                let after = names[probe as usize].as_slice();
                let got: Vec<&[u8]> = set.iter_after(Some(after), name_of).map(name_of).collect();
                let want: Vec<&[u8]> = model
                    .range::<[u8], _>((std::ops::Bound::Excluded(after), std::ops::Bound::Unbounded))
                    .map(Vec::as_slice)
                    .collect();
                prop_assert_eq!(got, want);
            }
        }
    }

    #[test]
    fn ascending_inserts_fill_their_blocks() {
        let names: Vec<Vec<u8>> = (0..10_000u32)
            .map(|s| format!("n{s:07}").into_bytes())
            .collect();
        let mut set = Children::default();
        for s in 0..10_000 {
            assert!(set.insert(s, |s| names[s as usize].as_slice()));
        }
        let full = set
            .blocks
            .iter()
            .filter(|b| b.entries.len() == BLOCK)
            .count();
        assert_eq!(full, 10_000 / BLOCK, "every block but the last is full");
    }

    /// Entries the blocks have room for, per child.
    fn room_per_child(set: &Children) -> f64 {
        let room: usize = set.blocks.iter().map(|b| b.entries.capacity()).sum();
        room as f64 / set.len() as f64
    }

    #[test]
    fn blocks_keep_little_unused_room() {
        // As a load of 128 clients creates: each its own ascending names
        // (`c{s}-{d}-{i}`, not zero-padded), all interleaved, so most
        // inserts land in the middle of the directory and split blocks.
        let names: Vec<Vec<u8>> = (0..40_000u32)
            .map(|n| format!("c{}-{}", n % 128, n / 128).into_bytes())
            .collect();
        let mut set = Children::default();
        for s in 0..40_000 {
            assert!(set.insert(s, |s| names[s as usize].as_slice()));
        }
        let room = room_per_child(&set);
        // Doubling held ~1.6 entries of room per child here.
        assert!(room < 1.2, "{room} entries of room per child");
        // Ascending names fill their blocks exactly.
        let names: Vec<Vec<u8>> = (0..10_000u32)
            .map(|s| format!("n{s:07}").into_bytes())
            .collect();
        let mut set = Children::default();
        for s in 0..10_000 {
            assert!(set.insert(s, |s| names[s as usize].as_slice()));
        }
        let room = room_per_child(&set);
        assert!(room < 1.06, "{room} entries of room per child");
    }

    #[test]
    fn a_search_reads_few_names_where_names_share_long_prefixes() {
        // Names that share their first nine bytes, inserted in a scattered
        // order, as `tree/create-scattered` makes them: 100,000, then
        // 2,000 more whose reads are counted (splits and rekeying
        // included).
        let (count, more) = (100_000u32, 2_000u32);
        let names: Vec<Vec<u8>> = (0..count + more)
            .map(|s| format!("n0031337-{}", (s * 7919) % (count + more)).into_bytes())
            .collect();
        let reads = std::cell::Cell::new(0usize);
        let name_of = |s: u32| {
            reads.set(reads.get() + 1);
            names[s as usize].as_slice()
        };
        let mut set = Children::default();
        for s in 0..count {
            assert!(set.insert(s, name_of));
        }
        reads.set(0);
        for s in count..count + more {
            assert!(set.insert(s, name_of));
        }
        let per_insert = reads.get() as f64 / f64::from(more);
        // Comparing names, a search read ~20 of them (two cache misses each).
        assert!(per_insert < 3.0, "an insert read {per_insert} names");
        reads.set(0);
        for s in 0..more {
            assert_eq!(set.remove(&names[s as usize], name_of), Some(s));
        }
        let per_removal = reads.get() as f64 / f64::from(more);
        assert!(per_removal < 3.0, "a removal read {per_removal} names");
    }
}
