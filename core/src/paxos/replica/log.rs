//! The replica's log: accepted entries by slot from a base (everything
//! before it is in the snapshot), with holes above the commit index, an
//! index of the slots holding membership changes, and the committed prefix
//! the shell let go of: values it keeps on its disk only, which the
//! replica asks the shell to read when a peer needs them.

use std::collections::{BTreeSet, VecDeque};

use super::{Entry, Membership, Slot, Value};

/// An accepted value and the token of the write that stored it here: the
/// value is on this replica's disk once that token is durable.
#[derive(Debug)]
struct Held<T> {
    entry: Entry<T>,
    token: u64,
}

/// The accepted values from `base` on. Slots above the commit index may
/// have holes (accepts can arrive out of order). Slots from `base` up to
/// `held_from` are logged only: committed, durable here, and no longer in
/// memory.
#[derive(Debug)]
pub(super) struct Log<T> {
    pub(super) base: Slot,
    /// The slot of `slots[0]`.
    held_from: Slot,
    slots: VecDeque<Option<Held<T>>>,
    /// The slots that hold a membership change, so that the changes in
    /// flight are found without scanning the log.
    configs: BTreeSet<Slot>,
}

impl<T> Log<T> {
    pub(super) fn new() -> Self {
        Log {
            base: 1,
            held_from: 1,
            slots: VecDeque::new(),
            configs: BTreeSet::new(),
        }
    }

    /// The entry at `slot` if it is in memory; `None` for a slot that is
    /// empty, compacted, or only logged (see [`Log::held_from`]).
    pub(super) fn get(&self, slot: Slot) -> Option<&Entry<T>> {
        if slot < self.held_from {
            return None;
        }
        self.slots
            .get((slot - self.held_from) as usize)
            .and_then(Option::as_ref)
            .map(|h| &h.entry)
    }

    /// Stores `entry` at `slot`, written by the write with `token` (0 for
    /// an entry already durable). Slots below [`Log::held_from`] are
    /// committed: their value cannot change, so nothing is stored there.
    pub(super) fn set(&mut self, slot: Slot, entry: Entry<T>, token: u64) {
        if slot < self.held_from {
            return;
        }
        if matches!(entry.value, Value::Config(_)) {
            self.configs.insert(slot);
        } else {
            self.configs.remove(&slot);
        }
        let i = (slot - self.held_from) as usize;
        while self.slots.len() <= i {
            self.slots.push_back(None);
        }
        self.slots[i] = Some(Held { entry, token });
    }

    /// Drops every slot up to `upto`.
    pub(super) fn compact(&mut self, upto: Slot) {
        self.base = self.base.max(upto + 1);
        while self.held_from < self.base {
            if self.slots.pop_front().is_none() {
                self.held_from = self.base;
                break;
            }
            self.held_from += 1;
        }
        self.configs = self.configs.split_off(&(upto + 1));
    }

    /// The first slot whose value is in memory; the slots from `base` up
    /// to it are only on disk.
    pub(super) fn held_from(&self) -> Slot {
        self.held_from
    }

    /// Lets go of the values at `held_from..=upto` (the caller has made
    /// sure they are committed) whose writes are durable (token at most
    /// `durable`), stopping at the first that is not. Membership changes
    /// go too: only those after the commit index are ever looked up
    /// (`configs_after`), and the replica installs a committed one as its
    /// slot commits, before the shell can release it.
    pub(super) fn release(&mut self, upto: Slot, durable: u64) {
        let from = self.held_from;
        while self.held_from <= upto {
            match self.slots.front() {
                Some(Some(h)) if h.token <= durable => {}
                _ => break,
            }
            self.slots.pop_front();
            self.held_from += 1;
        }
        if self.held_from > from {
            self.configs = self.configs.split_off(&self.held_from);
        }
        // Spare room goes once the deque is mostly empty (a restart or a
        // long gap between snapshots grew it).
        if self.slots.capacity() > 4 * self.slots.len() + 1024 {
            self.slots.shrink_to(2 * self.slots.len());
        }
    }

    /// Highest slot that holds anything (or `base - 1`).
    pub(super) fn last(&self) -> Slot {
        self.held_from + self.slots.len() as Slot - 1
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

/// The chosen values a lagging peer is sent next, from a given slot.
#[derive(Debug)]
pub(super) enum Chosen<T> {
    /// Values the shell's log alone holds, up to `last`: the shell reads
    /// and sends them.
    Logged { last: Slot },
    /// Values in memory.
    Held(Vec<Value<T>>),
}

impl<T: Clone> Log<T> {
    /// The chosen values at `first..=last` to send a peer, as far as this
    /// log has them contiguously: `None` when it has none of them (the
    /// caller checked that they are chosen, and sends the snapshot when
    /// `first` is below `base`).
    pub(super) fn chosen(&self, first: Slot, last: Slot) -> Option<Chosen<T>> {
        if first < self.base || first > last {
            return None;
        }
        if first < self.held_from {
            return Some(Chosen::Logged {
                last: last.min(self.held_from - 1),
            });
        }
        let values: Vec<Value<T>> = (first..=last)
            .map_while(|s| self.get(s).map(|e| e.value.clone()))
            .collect();
        (!values.is_empty()).then_some(Chosen::Held(values))
    }
}

impl<T> Chosen<T> {
    /// The last slot this sends, when it starts at `first`.
    pub(super) fn last(&self, first: Slot) -> Slot {
        match self {
            Chosen::Logged { last } => *last,
            Chosen::Held(values) => first + values.len() as Slot - 1,
        }
    }
}
