//! The children of one znode: their slots in the node store, ordered by
//! name. Names are not stored here (each child holds its own); every
//! search is given a function from slot to name.
//!
//! A directory can hold millions of children, and ZooKeeper users make
//! such directories with sequential nodes (ascending names) as often as
//! with random ones. A sorted `Vec` would move megabytes on every insert
//! or delete at its front; a `BTreeSet<Box<str>>` costs a heap allocation
//! and ~50 bytes per child. Sorted blocks of at most [`BLOCK`] slots give
//! 4-8 bytes per child and bound every move to one block. Each block also
//! keeps the first bytes of its last name, so that finding the block for a
//! name reads no child's name from the slab unless those bytes tie.

use std::cmp::Ordering;

/// Most slots a block holds before it splits.
const BLOCK: usize = 512;

#[derive(Debug, Clone, Default)]
pub(super) struct Children {
    /// Non-empty sorted blocks; every name in a block sorts before every
    /// name in the next one.
    blocks: Vec<Block>,
    len: usize,
}

#[derive(Debug, Clone)]
struct Block {
    slots: Vec<u32>,
    /// [`key`] of the name of the last slot.
    last_key: u64,
}

impl Block {
    fn new(slot: u32, name: &[u8]) -> Block {
        Block {
            slots: vec![slot],
            last_key: key(name),
        }
    }
}

/// The first eight bytes of `name`, big-endian, zero-padded. Where two
/// keys differ, they order their names as the names order themselves (a
/// shorter name padded with zeros is a prefix of the other up to where
/// they differ); where they are equal, the names must be compared.
fn key(name: &[u8]) -> u64 {
    let mut bytes = [0u8; 8];
    let n = name.len().min(8);
    bytes[..n].copy_from_slice(&name[..n]);
    u64::from_be_bytes(bytes)
}

/// Whether the last name of `block` sorts below `name` (whose key is
/// `name_key`).
fn last_below<'a>(
    block: &Block,
    name: &[u8],
    name_key: u64,
    name_of: &impl Fn(u32) -> &'a [u8],
) -> bool {
    match block.last_key.cmp(&name_key) {
        Ordering::Less => true,
        Ordering::Greater => false,
        Ordering::Equal => block.slots.last().is_some_and(|&last| name_of(last) < name),
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
        let name_key = key(name);
        let block = self
            .blocks
            .partition_point(|b| last_below(b, name, name_key, name_of));
        if block == self.blocks.len() {
            // Past every name: the end of the last block.
            let block = block.saturating_sub(1);
            let at = self.blocks.get(block).map_or(0, |b| b.slots.len());
            return Place {
                block,
                at,
                found: false,
            };
        }
        let slots = &self.blocks[block].slots;
        let at = slots.partition_point(|&s| name_of(s) < name);
        let found = slots
            .get(at)
            .is_some_and(|&s| name_of(s).cmp(name) == Ordering::Equal);
        Place { block, at, found }
    }

    /// Adds `slot`, named `name_of(slot)`; false if a child of that name is
    /// already here.
    pub(super) fn insert<'a>(&mut self, slot: u32, name_of: impl Fn(u32) -> &'a [u8]) -> bool {
        let name = name_of(slot);
        // Sequential nodes (locks, queues, elections) arrive in ascending
        // order: one comparison with the last name places them, where a
        // search would look at a score of names in cold memory.
        let past_the_end = self
            .blocks
            .last()
            .is_some_and(|b| last_below(b, name, key(name), &name_of));
        let Place { block, at, found } = if past_the_end {
            let block = self.blocks.len() - 1;
            Place {
                block,
                at: self.blocks[block].slots.len(),
                found: false,
            }
        } else {
            self.locate(name, &name_of)
        };
        if found {
            return false;
        }
        self.len += 1;
        let last_block = block + 1 == self.blocks.len();
        let Some(target) = self.blocks.get_mut(block) else {
            self.blocks.push(Block::new(slot, name));
            return true;
        };
        if target.slots.len() < BLOCK {
            if at == target.slots.len() {
                target.last_key = key(name);
            }
            target.slots.insert(at, slot);
            return true;
        }
        if at == target.slots.len() && last_block {
            // Appending past the last name (sequential nodes): a new block,
            // so that the full one stays full instead of half empty.
            self.blocks.push(Block::new(slot, name));
            return true;
        }
        let mut upper = Block {
            slots: target.slots.split_off(BLOCK / 2),
            last_key: target.last_key,
        };
        if at <= BLOCK / 2 {
            target.slots.insert(at, slot);
        } else {
            if at == BLOCK {
                upper.last_key = key(name);
            }
            upper.slots.insert(at - BLOCK / 2, slot);
        }
        if let Some(&last) = target.slots.last() {
            target.last_key = key(name_of(last));
        }
        self.blocks.insert(block + 1, upper);
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
        let slot = target.slots.remove(at);
        if target.slots.is_empty() {
            self.blocks.remove(block);
        } else {
            if at == target.slots.len()
                && let Some(&last) = target.slots.last()
            {
                target.last_key = key(name_of(last));
            }
            if target.slots.len() < BLOCK / 8 && target.slots.capacity() > BLOCK {
                target.slots.shrink_to(BLOCK / 4);
            }
        }
        self.len -= 1;
        Some(slot)
    }

    /// Every child's slot, by name.
    pub(super) fn iter(&self) -> impl Iterator<Item = u32> + '_ {
        self.blocks.iter().flat_map(|b| &b.slots).copied()
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
            .flat_map(move |(i, b)| b.slots.iter().skip(if i == 0 { at } else { 0 }))
            .copied()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use proptest::prelude::*;

    use super::*;

    /// Names by slot; slot `s` is named `names[s]`.
    fn names() -> Vec<Vec<u8>> {
        // Half the names share their first eight bytes, so that block keys
        // tie and names must be compared.
        (0..3000u32)
            .map(|s| {
                let n = (s * 7919) % 3000;
                if n % 2 == 0 {
                    format!("n{n:05}")
                } else {
                    format!("sharedpfx{n:05}")
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
                prop_assert!(set.blocks.iter().all(|b| !b.slots.is_empty() && b.slots.len() <= BLOCK));
                prop_assert!(set.blocks.iter().all(|b| b.slots.last().is_some_and(|&l| b.last_key == key(name_of(l)))), "every block knows its last name's key");
            }
            let listed: Vec<&[u8]> = set.iter().map(name_of).collect();
            let expected: Vec<&[u8]> = model.iter().map(Vec::as_slice).collect();
            prop_assert_eq!(&listed, &expected);
            for probe in [0u32, 1, 1499, 2999] {
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
        let full = set.blocks.iter().filter(|b| b.slots.len() == BLOCK).count();
        assert_eq!(full, 10_000 / BLOCK, "every block but the last is full");
    }
}
