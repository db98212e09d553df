//! The children of one znode: their slots in the node store, ordered by
//! name. Names are not stored here (each child holds its own); every
//! search is given a function from slot to name.
//!
//! A directory can hold millions of children, and ZooKeeper users make
//! such directories with sequential nodes (ascending names) as often as
//! with random ones. A sorted `Vec` would move megabytes on every insert
//! or delete at its front; a `BTreeSet<Box<str>>` costs a heap allocation
//! and ~50 bytes per child. Sorted blocks of at most [`BLOCK`] slots give
//! 4-8 bytes per child and bound every move to one block.

use std::cmp::Ordering;

/// Most slots a block holds before it splits.
const BLOCK: usize = 512;

#[derive(Debug, Clone, Default)]
pub(super) struct Children {
    /// Non-empty sorted blocks; every name in a block sorts before every
    /// name in the next one.
    blocks: Vec<Vec<u32>>,
    len: usize,
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
        let block = self.blocks.partition_point(|b| match b.last() {
            Some(&last) => name_of(last) < name,
            None => true,
        });
        if block == self.blocks.len() {
            // Past every name: the end of the last block.
            let block = block.saturating_sub(1);
            let at = self.blocks.get(block).map_or(0, Vec::len);
            return Place {
                block,
                at,
                found: false,
            };
        }
        let slots = &self.blocks[block];
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
            .and_then(|b| b.last())
            .is_some_and(|&last| name_of(last) < name);
        let Place { block, at, found } = if past_the_end {
            let block = self.blocks.len() - 1;
            Place {
                block,
                at: self.blocks[block].len(),
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
        let Some(slots) = self.blocks.get_mut(block) else {
            self.blocks.push(vec![slot]);
            return true;
        };
        if slots.len() < BLOCK {
            slots.insert(at, slot);
            return true;
        }
        if at == slots.len() && last_block {
            // Appending past the last name (sequential nodes): a new block,
            // so that the full one stays full instead of half empty.
            self.blocks.push(vec![slot]);
            return true;
        }
        let mut upper = slots.split_off(BLOCK / 2);
        if at <= BLOCK / 2 {
            slots.insert(at, slot);
        } else {
            upper.insert(at - BLOCK / 2, slot);
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
        let slots = &mut self.blocks[block];
        let slot = slots.remove(at);
        if slots.is_empty() {
            self.blocks.remove(block);
        } else if slots.len() < BLOCK / 8 && slots.capacity() > BLOCK {
            slots.shrink_to(BLOCK / 4);
        }
        self.len -= 1;
        Some(slot)
    }

    /// Every child's slot, by name.
    pub(super) fn iter(&self) -> impl Iterator<Item = u32> + '_ {
        self.blocks.iter().flatten().copied()
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
            .flat_map(move |(i, b)| b.iter().skip(if i == 0 { at } else { 0 }))
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
        (0..3000u32)
            .map(|s| format!("n{:05}", (s * 7919) % 3000).into_bytes())
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
                prop_assert!(set.blocks.iter().all(|b| !b.is_empty() && b.len() <= BLOCK));
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
        let full = set.blocks.iter().filter(|b| b.len() == BLOCK).count();
        assert_eq!(full, 10_000 / BLOCK, "every block but the last is full");
    }
}
