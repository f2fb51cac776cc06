//! Which channel incarnation each `channels` row (and so each log row)
//! belongs to.
//!
//! A channel's numeric id stands for one epoch of it: when the hub deletes
//! or forgets a channel and it comes back with a new epoch, it gets a new
//! id, and the old id's rows in the log become garbage without being
//! touched.

use std::collections::HashMap;

use crate::hub::ChannelName;

/// A channel's row in `channels`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Head {
    pub id: i64,
    pub epoch: u64,
}

/// The writer's copy of the `channels` table, both ways.
#[derive(Debug, Default)]
pub(super) struct Heads {
    by_name: HashMap<ChannelName, Head>,
    names: HashMap<i64, ChannelName>,
    next_id: i64,
}

impl Heads {
    /// Keeps new ids above `id` (a row seen in the store, parsed or not).
    pub fn note_id(&mut self, id: i64) {
        self.next_id = self.next_id.max(id + 1);
    }

    pub fn insert(&mut self, name: ChannelName, head: Head) {
        self.note_id(head.id);
        self.names.insert(head.id, name.clone());
        if let Some(old) = self.by_name.insert(name, head) {
            if old.id != head.id {
                self.names.remove(&old.id);
            }
        }
    }

    pub fn get(&self, name: &ChannelName) -> Option<Head> {
        self.by_name.get(name).copied()
    }

    /// The channel an id stands for.
    pub fn name(&self, id: i64) -> Option<&ChannelName> {
        self.names.get(&id)
    }

    pub fn remove(&mut self, name: &ChannelName) -> Option<Head> {
        let head = self.by_name.remove(name)?;
        self.names.remove(&head.id);
        Some(head)
    }

    /// An id no row has had.
    pub fn allocate(&mut self) -> i64 {
        let id = self.next_id.max(1);
        self.next_id = id + 1;
        id
    }

    pub fn iter(&self) -> impl Iterator<Item = (&ChannelName, &Head)> {
        self.by_name.iter()
    }
}
