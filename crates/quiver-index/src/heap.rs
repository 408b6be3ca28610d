//! Scored neighbours and the two bounded heaps HNSW search keeps (candidates, results).

use std::cmp::Ordering;
use std::collections::BinaryHeap;

/// A row and its score against the query (higher is closer).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Neighbor {
    /// Row id within the searched matrix.
    pub id: u32,
    /// Similarity, higher is closer.
    pub score: f32,
}

/// Orders by score, ties by lower id first (so sorting is deterministic).
#[derive(Debug, Clone, Copy)]
pub(crate) struct ByScore(pub Neighbor);

impl PartialEq for ByScore {
    fn eq(&self, o: &Self) -> bool {
        self.cmp(o) == Ordering::Equal
    }
}
impl Eq for ByScore {}
impl PartialOrd for ByScore {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for ByScore {
    fn cmp(&self, o: &Self) -> Ordering {
        self.0
            .score
            .total_cmp(&o.0.score)
            .then_with(|| o.0.id.cmp(&self.0.id))
    }
}

/// Worst-on-top bounded heap of the best `cap` neighbours seen (the collector of every scan).
#[derive(Debug)]
pub struct TopK {
    heap: BinaryHeap<std::cmp::Reverse<ByScore>>,
    cap: usize,
}

impl TopK {
    /// An empty collector of the best `cap` (at least 1) neighbours.
    pub fn new(cap: usize) -> Self {
        TopK {
            heap: BinaryHeap::with_capacity(cap + 1),
            cap: cap.max(1),
        }
    }

    /// Whether `cap` neighbours are held.
    #[inline]
    pub fn is_full(&self) -> bool {
        self.heap.len() >= self.cap
    }

    /// Score of the worst kept neighbour, or -inf if not full.
    #[inline]
    pub fn threshold(&self) -> f32 {
        if self.is_full() {
            self.heap.peek().map_or(f32::NEG_INFINITY, |r| r.0 .0.score)
        } else {
            f32::NEG_INFINITY
        }
    }

    /// Offers `n`; kept if there is room or it beats the worst kept one.
    #[inline]
    pub fn push(&mut self, n: Neighbor) {
        if !self.is_full() {
            self.heap.push(std::cmp::Reverse(ByScore(n)));
        } else if n.score > self.threshold() {
            self.heap.pop();
            self.heap.push(std::cmp::Reverse(ByScore(n)));
        }
    }

    /// The kept neighbours, best first (ties by lower id).
    pub fn into_sorted(self) -> Vec<Neighbor> {
        let mut v: Vec<Neighbor> = self.heap.into_iter().map(|r| r.0 .0).collect();
        sort_best_first(&mut v);
        v
    }
}

/// Sorts best first, ties by lower id.
pub(crate) fn sort_best_first(v: &mut [Neighbor]) {
    v.sort_unstable_by(|a, b| b.score.total_cmp(&a.score).then(a.id.cmp(&b.id)));
}

/// Best-on-top heap of candidates still to expand.
pub(crate) type Candidates = BinaryHeap<ByScore>;
