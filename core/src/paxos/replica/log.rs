//! The replica's log: accepted entries by slot from a base (everything
//! before it is in the snapshot), with holes above the commit index, and
//! an index of the slots holding membership changes.

use std::collections::{BTreeSet, VecDeque};

use super::{Entry, Membership, Slot, Value};

/// The accepted values, indexed by slot from `base`. Slots above the commit
/// index may have holes (accepts can arrive out of order).
#[derive(Debug)]
pub(super) struct Log<T> {
    pub(super) base: Slot,
    slots: VecDeque<Option<Entry<T>>>,
    /// The slots that hold a membership change, so that the changes in
    /// flight are found without scanning the log.
    configs: BTreeSet<Slot>,
}

impl<T> Log<T> {
    pub(super) fn new() -> Self {
        Log {
            base: 1,
            slots: VecDeque::new(),
            configs: BTreeSet::new(),
        }
    }

    pub(super) fn get(&self, slot: Slot) -> Option<&Entry<T>> {
        if slot < self.base {
            return None;
        }
        self.slots
            .get((slot - self.base) as usize)
            .and_then(Option::as_ref)
    }

    pub(super) fn set(&mut self, slot: Slot, entry: Entry<T>) {
        if slot < self.base {
            return;
        }
        if matches!(entry.value, Value::Config(_)) {
            self.configs.insert(slot);
        } else {
            self.configs.remove(&slot);
        }
        let i = (slot - self.base) as usize;
        while self.slots.len() <= i {
            self.slots.push_back(None);
        }
        self.slots[i] = Some(entry);
    }

    /// Drops every slot up to `upto`.
    pub(super) fn compact(&mut self, upto: Slot) {
        while self.base <= upto {
            if self.slots.pop_front().is_none() {
                self.base = upto + 1;
                break;
            }
            self.base += 1;
        }
        self.configs = self.configs.split_off(&(upto + 1));
    }

    /// Highest slot that holds anything (or `base - 1`).
    pub(super) fn last(&self) -> Slot {
        self.base + self.slots.len() as Slot - 1
    }

    /// The membership changes held after `slot`, oldest first.
    pub(super) fn configs_after(&self, slot: Slot) -> impl Iterator<Item = (Slot, &Membership)> {
        self.configs
            .range(slot + 1..)
            .filter_map(|&s| match self.get(s) {
                Some(Entry {
                    value: Value::Config(m),
                    ..
                }) => Some((s, m.as_ref())),
                _ => None,
            })
    }
}
