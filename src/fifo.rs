//! A first-in, first-out queue, for the actions the sans-IO machines emit and
//! the operations the E2EE room session runs in turn.
//!
//! Why not `VecDeque`: each `VecDeque<T>` instantiation links its ring-buffer
//! growth (`grow`, `handle_capacity_increase`, the wrapped copies), 0.3 KB of
//! wasm for the connection machine's actions alone (bench/RESULTS.md,
//! "Seventh pass"). These queues fill in bursts and drain to empty, so one
//! `Vec` of `Option`s and the index of its oldest item do: `pop_front` takes
//! the item out (leaving `None`) and steps the index, and when the last one
//! is taken the `Vec` is cleared and reused. `Option<T>` is no larger than
//! `T` for the actions queued here (their niche holds the `None`; a test
//! checks).
//!
//! Measured natively (release profile, a connected machine fed 200,000 client
//! events): 0.405 us per received frame against 0.38 with `VecDeque`, 0.21 us
//! per `trigger_json` against 0.195; in the browser a message's hop is 20 us
//! or more, so the trade is 0.2 KB gz of the base module and 0.56 KB of the
//! E2EE one for 0.1% of a hop.

use std::fmt;

pub struct Fifo<T> {
    /// The items from `head` on are `Some` and queued, oldest first; those
    /// before it were taken.
    items: Vec<Option<T>>,
    head: usize,
}

impl<T> Default for Fifo<T> {
    fn default() -> Self {
        Fifo {
            items: Vec::new(),
            head: 0,
        }
    }
}

impl<T> Fifo<T> {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn push_back(&mut self, item: T) {
        self.items.push(Some(item));
    }

    /// The oldest item, taken out.
    pub fn pop_front(&mut self) -> Option<T> {
        let item = self.items.get_mut(self.head)?.take();
        self.head += 1;
        if self.head == self.items.len() {
            // Drained: start over in the same allocation.
            self.items.clear();
            self.head = 0;
        }
        item
    }

    /// The oldest item, left in.
    pub fn front(&self) -> Option<&T> {
        self.items.get(self.head)?.as_ref()
    }

    pub fn len(&self) -> usize {
        self.items.len() - self.head
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The items oldest first.
    pub fn iter(&self) -> impl Iterator<Item = &T> {
        self.items[self.head..].iter().flatten()
    }
}

impl<T> Extend<T> for Fifo<T> {
    fn extend<I: IntoIterator<Item = T>>(&mut self, items: I) {
        self.items.extend(items.into_iter().map(Some));
    }
}

impl<T> IntoIterator for Fifo<T> {
    type Item = T;
    type IntoIter = std::iter::Flatten<std::vec::IntoIter<Option<T>>>;

    /// The items oldest first (those taken are `None`).
    fn into_iter(self) -> Self::IntoIter {
        self.items.into_iter().flatten()
    }
}

impl<T: fmt::Debug> fmt::Debug for Fifo<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

// proptest is a native-only dev-dependency (the wasm32 test build has none).
#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::VecDeque;

    #[derive(Debug, Clone)]
    enum Op {
        Push(u16),
        Pop,
        Extend(Vec<u16>),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            3 => any::<u16>().prop_map(Op::Push),
            3 => Just(Op::Pop),
            1 => proptest::collection::vec(any::<u16>(), 0..5).prop_map(Op::Extend),
        ]
    }

    #[test]
    fn an_option_of_a_queued_action_is_no_larger_than_the_action() {
        use std::mem::size_of;
        type Connection = crate::connection::Action;
        assert_eq!(size_of::<Option<Connection>>(), size_of::<Connection>());
        #[cfg(feature = "e2ee")]
        {
            type E2ee = crate::e2ee::session::Action;
            assert_eq!(size_of::<Option<E2ee>>(), size_of::<E2ee>());
        }
    }

    proptest! {
        // The queue behaves exactly as VecDeque's push_back and pop_front
        // under any interleaving: same items out, same order, same length.
        #[test]
        fn fifo_matches_vec_deque(ops in proptest::collection::vec(op(), 0..200)) {
            let mut ours = Fifo::new();
            let mut model = VecDeque::new();
            for op in ops {
                match op {
                    Op::Push(item) => {
                        ours.push_back(item);
                        model.push_back(item);
                    }
                    Op::Pop => prop_assert_eq!(ours.pop_front(), model.pop_front()),
                    Op::Extend(items) => {
                        ours.extend(items.iter().copied());
                        model.extend(items);
                    }
                }
                prop_assert_eq!(ours.len(), model.len());
                prop_assert_eq!(ours.is_empty(), model.is_empty());
                prop_assert_eq!(ours.front(), model.front());
                prop_assert!(ours.iter().eq(model.iter()));
            }
            prop_assert_eq!(format!("{ours:?}"), format!("{model:?}"));
            prop_assert!(ours.into_iter().eq(model));
        }
    }
}
