//! A first-in, first-out queue, for the actions the sans-IO machines emit and
//! the operations the E2EE room session runs in turn.
//!
//! Why not `VecDeque`: each `VecDeque<T>` instantiation links its ring-buffer
//! growth (`grow`, `handle_capacity_increase`, the wrapped copies), 0.3 KB of
//! wasm for the connection machine's actions alone (bench/RESULTS.md,
//! "Seventh pass"). These queues are filled in bursts and drained to empty,
//! so two `Vec`s do: items pushed go to `queued`, and `pop_front` takes from
//! the iterator of the batch being taken (`due`), refilling it from `queued`
//! when it runs out. The order holds across batches, each item is moved once,
//! and the only code linked per item type is `Vec`'s own.

use std::fmt;

pub struct Fifo<T> {
    /// Pushed since `due` was last refilled, oldest first.
    queued: Vec<T>,
    /// The rest of the batch being taken: older than everything in `queued`.
    due: std::vec::IntoIter<T>,
}

impl<T> Default for Fifo<T> {
    fn default() -> Self {
        Fifo {
            queued: Vec::new(),
            due: Vec::new().into_iter(),
        }
    }
}

impl<T> Fifo<T> {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn push_back(&mut self, item: T) {
        self.queued.push(item);
    }

    /// The oldest item, taken out.
    pub fn pop_front(&mut self) -> Option<T> {
        self.due.next().or_else(|| {
            self.due = std::mem::take(&mut self.queued).into_iter();
            self.due.next()
        })
    }

    /// The oldest item, left in.
    pub fn front(&self) -> Option<&T> {
        self.due.as_slice().first().or_else(|| self.queued.first())
    }

    pub fn len(&self) -> usize {
        self.due.len() + self.queued.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The items oldest first.
    pub fn iter(&self) -> impl Iterator<Item = &T> {
        self.due.as_slice().iter().chain(&self.queued)
    }
}

impl<T> Extend<T> for Fifo<T> {
    fn extend<I: IntoIterator<Item = T>>(&mut self, items: I) {
        self.queued.extend(items);
    }
}

impl<T> IntoIterator for Fifo<T> {
    type Item = T;
    type IntoIter = std::iter::Chain<std::vec::IntoIter<T>, std::vec::IntoIter<T>>;

    /// The items oldest first.
    fn into_iter(self) -> Self::IntoIter {
        self.due.chain(self.queued)
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
