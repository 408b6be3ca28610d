//! Hierarchical Navigable Small World graphs (Malkov & Yashunin, "Efficient and robust approximate
//! nearest neighbor search using HNSW graphs", TPAMI 2018). Symbols follow the paper: `M`, `M0 = 2M`,
//! `ef_construction`, `ef`, `mL = 1/ln M`.
//!
//! ```text
//!  layer 2      o-----------------o                 upper layers: per-node RwLock<Vec<Vec<u32>>>
//!  layer 1      o-----o-----o-----o-----o           (few nodes, touched only in the greedy descent)
//!  layer 0   o-o-o-o-o-o-o-o-o-o-o-o-o-o-o-o-o      layer 0: one flat AtomicU32 array,
//!                                                   node i at [i*(M0+1)]: [count, n_0 .. n_{M0-1}]
//! ```
//!
//! Layer 0 is a flat array of atomics so that searches read it with plain loads while inserts run
//! concurrently (writers of one node's list serialise on that node's lock; a concurrent reader may
//! see a list mid-rewrite, which only ever holds valid node ids). This makes the same structure
//! serve parallel bulk builds, incremental inserts and lock-free search.

use crate::heap::{sort_best_first, ByScore, Candidates, TopK};
use crate::{IndexError, Neighbor, NodeScorer, RowFilter, Vectors};
use parking_lot::{Mutex, RwLock};
use quiver_linalg::Metric;
use rayon::prelude::*;
use std::cell::RefCell;
use std::sync::atomic::{AtomicU32, AtomicU8, AtomicUsize, Ordering::Relaxed};

const NOT_INSERTED: u8 = u8::MAX;
const MAX_LEVEL: u8 = 16;

/// Build and default search parameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HnswParams {
    /// `M`: links per node on upper layers (layer 0 keeps `2M`).
    pub m: usize,
    /// `ef_construction`: candidate list size while inserting.
    pub ef_construction: usize,
    /// Default `ef` for queries that do not set one.
    pub ef_search: usize,
}

impl Default for HnswParams {
    fn default() -> Self {
        HnswParams {
            m: 16,
            ef_construction: 200,
            ef_search: 128,
        }
    }
}

impl HnswParams {
    /// Checks ranges: 2 <= M <= 128, ef_construction >= 1.
    pub fn validate(&self) -> Result<(), IndexError> {
        if !(2..=128).contains(&self.m) {
            return Err(IndexError::InvalidParams(format!(
                "m must be in 2..=128, got {}",
                self.m
            )));
        }
        if self.ef_construction == 0 || self.ef_search == 0 {
            return Err(IndexError::InvalidParams(
                "ef_construction and ef must be >= 1".into(),
            ));
        }
        Ok(())
    }
}

/// Size figures of a graph.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HnswStats {
    /// Inserted nodes.
    pub nodes: usize,
    /// Highest layer.
    pub max_level: u8,
    /// Bytes held by the graph (links and levels), excluding vectors.
    pub bytes: usize,
}

/// An HNSW graph over the rows of a [`Vectors`] matrix that the caller keeps.
pub struct Hnsw {
    pub(crate) metric: Metric,
    pub(crate) params: HnswParams,
    pub(crate) m0: usize,
    pub(crate) seed: u64,
    pub(crate) levels: Vec<AtomicU8>,
    pub(crate) links0: Vec<AtomicU32>,
    pub(crate) upper: Vec<RwLock<Vec<Vec<u32>>>>,
    locks: Vec<Mutex<()>>,
    pub(crate) entry: RwLock<Option<(u32, u8)>>,
    pub(crate) inserted: AtomicUsize,
}

impl std::fmt::Debug for Hnsw {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hnsw")
            .field("metric", &self.metric)
            .field("params", &self.params)
            .field("stats", &self.stats())
            .finish()
    }
}

/// Generation-stamped visited set: u16 stamps keep it small (cache-friendly); it is wiped once
/// every 65,535 searches.
struct Visited {
    marks: Vec<u16>,
    generation: u16,
}

impl Visited {
    fn reset(&mut self, n: usize) {
        if self.marks.len() < n {
            self.marks.resize(n, 0);
        }
        self.generation = self.generation.wrapping_add(1);
        if self.generation == 0 {
            self.marks.iter_mut().for_each(|m| *m = 0);
            self.generation = 1;
        }
    }

    /// Marks `i`; returns whether it was already marked.
    #[inline]
    fn test_and_set(&mut self, i: u32) -> bool {
        let m = &mut self.marks[i as usize];
        let seen = *m == self.generation;
        *m = self.generation;
        seen
    }
}

thread_local! {
    static VISITED: RefCell<Visited> = const { RefCell::new(Visited { marks: Vec::new(), generation: 0 }) };
}

/// Asks the CPU to pull a row's cache lines in ahead of scoring it.
#[inline]
fn prefetch(v: &[f32]) {
    prefetch_bytes(v.as_ptr() as *const u8, v.len() * 4);
}

/// Prefetch hints for `bytes` bytes (at most 512) from `p`. Only hints are issued: nothing is read,
/// so `p` may point into memory that other threads write atomically.
#[inline]
pub(crate) fn prefetch_bytes(p: *const u8, bytes: usize) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        let p = p as *const i8;
        let bytes = bytes.min(512);
        let mut off = 0;
        while off < bytes {
            // SAFETY: prefetch is only a hint and never faults or reads memory architecturally.
            unsafe { _mm_prefetch(p.wrapping_add(off), _MM_HINT_T0) };
            off += 64;
        }
        // The last line, when the range straddles one more line than its length suggests.
        // SAFETY: as above.
        unsafe { _mm_prefetch(p.wrapping_add(bytes.saturating_sub(1)), _MM_HINT_T0) };
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (p, bytes);
}

/// Scores rows of a full-precision matrix against a query: the graph's own scorer.
struct F32Scorer<'a> {
    vectors: Vectors<'a>,
    query: &'a [f32],
    score: fn(&[f32], &[f32]) -> f32,
    /// Cosine or dot with a query of the rows' dimension: [`NodeScorer::score_many`] scores 16 rows
    /// per step with `quiver_linalg::dot_1x16`, the kernel of the exact scan, so a row's score in a
    /// graph walk equals its score in [`crate::flat::search`].
    tiled: bool,
}

impl<'a> F32Scorer<'a> {
    fn new(vectors: Vectors<'a>, query: &'a [f32], metric: Metric) -> Self {
        F32Scorer {
            vectors,
            query,
            score: metric.scorer(),
            tiled: metric != Metric::L2 && query.len() == vectors.dim(),
        }
    }
}

impl NodeScorer for F32Scorer<'_> {
    #[inline]
    fn score(&self, row: u32) -> f32 {
        if self.tiled {
            let mut out = [0.0];
            self.score_many(&[row], &mut out);
            return out[0];
        }
        (self.score)(self.query, self.vectors.row(row))
    }

    #[inline]
    fn prefetch(&self, row: u32) {
        prefetch(self.vectors.row(row));
    }

    /// Tiles of up to 16 rows (work rounded up to four rows).
    #[inline]
    fn score_many(&self, rows: &[u32], out: &mut [f32]) {
        if !self.tiled {
            for (o, &r) in out.iter_mut().zip(rows) {
                *o = (self.score)(self.query, self.vectors.row(r));
            }
            return;
        }
        for (ids, chunk) in rows.chunks(16).zip(out.chunks_mut(16)) {
            let last = ids.len() - 1;
            let tile: [&[f32]; 16] = std::array::from_fn(|j| self.vectors.row(ids[j.min(last)]));
            let s = quiver_linalg::dot_1x16_up_to(self.query, &tile[..ids.len()]);
            let n = chunk.len().min(ids.len());
            chunk[..n].copy_from_slice(&s[..n]);
        }
    }
}

fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

impl Hnsw {
    /// An empty graph with room for `capacity` rows.
    pub fn with_capacity(metric: Metric, params: HnswParams, seed: u64, capacity: usize) -> Self {
        let m0 = 2 * params.m;
        Hnsw {
            metric,
            params,
            m0,
            seed,
            levels: (0..capacity).map(|_| AtomicU8::new(NOT_INSERTED)).collect(),
            links0: (0..capacity * (m0 + 1))
                .map(|_| AtomicU32::new(0))
                .collect(),
            upper: (0..capacity).map(|_| RwLock::new(Vec::new())).collect(),
            locks: (0..capacity).map(|_| Mutex::new(())).collect(),
            entry: RwLock::new(None),
            inserted: AtomicUsize::new(0),
        }
    }

    /// Builds a graph over all rows of `vectors`, inserting in parallel on the current rayon pool.
    pub fn build(vectors: Vectors<'_>, metric: Metric, params: HnswParams, seed: u64) -> Self {
        Self::build_with_progress(vectors, metric, params, seed, &|_| {})
    }

    /// As [`Hnsw::build`], calling `progress(n)` after every `n` further inserted rows.
    pub fn build_with_progress(
        vectors: Vectors<'_>,
        metric: Metric,
        params: HnswParams,
        seed: u64,
        progress: &(dyn Fn(u64) + Sync),
    ) -> Self {
        let n = vectors.len();
        let g = Self::with_capacity(metric, params, seed, n);
        if n == 0 {
            return g;
        }
        g.insert(vectors, 0);
        progress(1);
        (1..n as u32).into_par_iter().chunks(256).for_each(|ids| {
            for &id in &ids {
                g.insert(vectors, id);
            }
            progress(ids.len() as u64);
        });
        g
    }

    /// Grows room to `capacity` rows (existing links are kept).
    pub fn reserve(&mut self, capacity: usize) {
        let cur = self.levels.len();
        if capacity <= cur {
            return;
        }
        self.levels
            .extend((cur..capacity).map(|_| AtomicU8::new(NOT_INSERTED)));
        self.links0
            .extend((0..(capacity - cur) * (self.m0 + 1)).map(|_| AtomicU32::new(0)));
        self.upper
            .extend((cur..capacity).map(|_| RwLock::new(Vec::new())));
        self.locks.extend((cur..capacity).map(|_| Mutex::new(())));
    }

    /// Rows this graph has room for.
    pub fn capacity(&self) -> usize {
        self.levels.len()
    }

    /// Rows inserted so far.
    pub fn len(&self) -> usize {
        self.inserted.load(Relaxed)
    }

    /// Whether nothing is inserted.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The metric the graph was built with.
    pub fn metric(&self) -> Metric {
        self.metric
    }

    /// Build parameters.
    pub fn params(&self) -> HnswParams {
        self.params
    }

    /// Whether row `id` has been inserted.
    pub fn contains(&self, id: u32) -> bool {
        self.levels
            .get(id as usize)
            .is_some_and(|l| l.load(Relaxed) != NOT_INSERTED)
    }

    /// Node count, top layer and bytes held.
    pub fn stats(&self) -> HnswStats {
        let upper_bytes: usize = self
            .upper
            .iter()
            .map(|u| {
                u.read()
                    .iter()
                    .map(|l| l.capacity() * 4 + 24)
                    .sum::<usize>()
            })
            .sum();
        HnswStats {
            nodes: self.len(),
            max_level: self.entry.read().map_or(0, |e| e.1),
            bytes: self.levels.len() + self.links0.len() * 4 + upper_bytes,
        }
    }

    fn random_level(&self, id: u32) -> u8 {
        let h = splitmix64(self.seed ^ splitmix64(id as u64));
        let u = ((h >> 11) as f64 + 1.0) / (1u64 << 53) as f64; // (0, 1]
        let ml = 1.0 / (self.params.m as f64).ln();
        ((-u.ln() * ml).floor() as u64).min(MAX_LEVEL as u64) as u8
    }

    #[inline]
    fn stride(&self) -> usize {
        self.m0 + 1
    }

    /// Prefetches the layer-0 link list of `id` (it is read when `id` is expanded next).
    #[inline]
    fn prefetch_links0(&self, id: u32) {
        let base = id as usize * self.stride();
        if let Some(slot) = self.links0.get(base) {
            let n = self.stride().min(self.links0.len() - base);
            prefetch_bytes(slot.as_ptr() as *const u8, n * 4);
        }
    }

    /// Calls `f` on each layer-0 neighbour of `id`.
    #[inline]
    fn for_neighbors0(&self, id: u32, mut f: impl FnMut(u32)) {
        let base = id as usize * self.stride();
        let cnt = (self.links0[base].load(Relaxed) as usize).min(self.m0);
        for j in 0..cnt {
            f(self.links0[base + 1 + j].load(Relaxed));
        }
    }

    /// Calls `f` on each neighbour of `id` on `layer` (upper layers under their read lock, which
    /// `f` must not re-take). No allocation: this runs in every search.
    #[inline]
    fn for_neighbors(&self, id: u32, layer: u8, mut f: impl FnMut(u32)) {
        if layer == 0 {
            self.for_neighbors0(id, f);
        } else if let Some(list) = self.upper[id as usize].read().get(layer as usize - 1) {
            list.iter().for_each(|&n| f(n));
        }
    }

    /// An owned copy of `id`'s list on `layer` (for inserts, which rewrite it).
    fn neighbors(&self, id: u32, layer: u8) -> Vec<u32> {
        let mut v = Vec::with_capacity(self.m0);
        self.for_neighbors(id, layer, |n| v.push(n));
        v
    }

    fn set_neighbors(&self, id: u32, layer: u8, list: &[u32]) {
        if layer == 0 {
            let base = id as usize * self.stride();
            let cnt = list.len().min(self.m0);
            for (j, &n) in list.iter().take(cnt).enumerate() {
                self.links0[base + 1 + j].store(n, Relaxed);
            }
            self.links0[base].store(cnt as u32, Relaxed);
        } else {
            let mut up = self.upper[id as usize].write();
            let li = layer as usize - 1;
            if up.len() <= li {
                up.resize(li + 1, Vec::new());
            }
            up[li] = list.to_vec();
        }
    }

    /// Greedy walk on an upper layer: from `cur`, move to any closer neighbour until none is.
    fn greedy<S: NodeScorer + ?Sized>(&self, scorer: &S, mut cur: Neighbor, layer: u8) -> Neighbor {
        let mut ids: Vec<u32> = Vec::with_capacity(self.m0);
        let mut scores: Vec<f32> = Vec::with_capacity(self.m0);
        loop {
            let start = cur.id;
            ids.clear();
            self.for_neighbors(start, layer, |nb| ids.push(nb));
            scores.resize(ids.len(), 0.0);
            scorer.score_many(&ids, &mut scores);
            for (&nb, &s) in ids.iter().zip(&scores) {
                if s > cur.score {
                    cur = Neighbor { id: nb, score: s };
                }
            }
            if cur.id == start {
                return cur;
            }
        }
    }

    /// Beam search on one layer (the paper's SEARCH-LAYER), returning up to `ef` allowed rows, best
    /// first. Rows the filter rejects are expanded but never enter the result set.
    fn search_layer<S: NodeScorer + ?Sized, F: RowFilter + ?Sized>(
        &self,
        scorer: &S,
        entry: Neighbor,
        ef: usize,
        layer: u8,
        filter: &F,
    ) -> Vec<Neighbor> {
        VISITED.with(|cell| {
            let mut visited = cell.borrow_mut();
            visited.reset(self.levels.len());
            let mut cands: Candidates = Candidates::with_capacity(ef * 2);
            let mut results = TopK::new(ef);
            visited.test_and_set(entry.id);
            cands.push(ByScore(entry));
            if filter.allows(entry.id) {
                results.push(entry);
            }
            let mut scratch: Vec<u32> = Vec::with_capacity(self.m0);
            let mut scores: Vec<f32> = Vec::with_capacity(self.m0);
            while let Some(ByScore(c)) = cands.pop() {
                if results.is_full() && c.score < results.threshold() {
                    break;
                }
                if layer == 0 {
                    if let Some(next) = cands.peek() {
                        self.prefetch_links0(next.0.id);
                    }
                }
                scratch.clear();
                self.for_neighbors(c.id, layer, |n| {
                    if !visited.test_and_set(n) {
                        scratch.push(n);
                    }
                });
                // Every unvisited neighbour's row is requested before any is scored, so their
                // cache misses overlap; then they are scored together.
                for &nb in &scratch {
                    scorer.prefetch(nb);
                }
                scores.resize(scratch.len(), 0.0);
                scorer.score_many(&scratch, &mut scores);
                for (&nb, &s) in scratch.iter().zip(&scores) {
                    if !results.is_full() || s > results.threshold() {
                        if layer == 0 {
                            // Likely expanded soon: start fetching its link list now.
                            self.prefetch_links0(nb);
                        }
                        cands.push(ByScore(Neighbor { id: nb, score: s }));
                        if filter.allows(nb) {
                            results.push(Neighbor { id: nb, score: s });
                        }
                    }
                }
            }
            results.into_sorted()
        })
    }

    /// The paper's SELECT-NEIGHBORS-HEURISTIC: walk candidates best first and keep one only if it is
    /// closer to the base point than to every neighbour already kept.
    fn select_heuristic(
        &self,
        vectors: Vectors<'_>,
        cands: &[Neighbor],
        m: usize,
        score: fn(&[f32], &[f32]) -> f32,
    ) -> Vec<u32> {
        let mut kept: Vec<u32> = Vec::with_capacity(m);
        for c in cands {
            if kept.len() >= m {
                break;
            }
            let cv = vectors.row(c.id);
            if kept.iter().all(|&r| score(cv, vectors.row(r)) < c.score) {
                kept.push(c.id);
            }
        }
        kept
    }

    /// Inserts row `id` of `vectors` (the paper's INSERT). Safe to call from many threads at once.
    /// Rows beyond [`Hnsw::capacity`] or already inserted are ignored.
    pub fn insert(&self, vectors: Vectors<'_>, id: u32) {
        if id as usize >= self.levels.len() || id as usize >= vectors.len() {
            return;
        }
        let score = self.metric.scorer();
        let level = self.random_level(id);
        if self.levels[id as usize]
            .compare_exchange(NOT_INSERTED, level, Relaxed, Relaxed)
            .is_err()
        {
            return;
        }
        let q = vectors.row(id);
        let scorer = F32Scorer::new(vectors, q, self.metric);
        let entry = {
            let e = self.entry.upgradable_read();
            match *e {
                Some(e) => e,
                None => {
                    let mut w = parking_lot::RwLockUpgradableReadGuard::upgrade(e);
                    *w = Some((id, level));
                    self.inserted.fetch_add(1, Relaxed);
                    return;
                }
            }
        };
        let (ep_id, top) = entry;
        let mut ep = Neighbor {
            id: ep_id,
            score: scorer.score(ep_id),
        };
        let mut l = top;
        while l > level {
            ep = self.greedy(&scorer, ep, l);
            l -= 1;
        }
        let mut layer = level.min(top) as i32;
        while layer >= 0 {
            let lc = layer as u8;
            let w = self.search_layer(
                &scorer,
                ep,
                self.params.ef_construction,
                lc,
                &crate::AllRows,
            );
            let chosen = self.select_heuristic(vectors, &w, self.params.m, score);
            {
                let _g = self.locks[id as usize].lock();
                self.set_neighbors(id, lc, &chosen);
            }
            let m_max = if lc == 0 { self.m0 } else { self.params.m };
            for &nb in &chosen {
                let _g = self.locks[nb as usize].lock();
                let mut list = self.neighbors(nb, lc);
                if list.contains(&id) {
                    continue;
                }
                if list.len() < m_max {
                    list.push(id);
                    self.set_neighbors(nb, lc, &list);
                } else {
                    list.push(id);
                    let mut scores = vec![0.0; list.len()];
                    F32Scorer::new(vectors, vectors.row(nb), self.metric)
                        .score_many(&list, &mut scores);
                    let mut cands: Vec<Neighbor> = list
                        .iter()
                        .zip(&scores)
                        .map(|(&x, &score)| Neighbor { id: x, score })
                        .collect();
                    sort_best_first(&mut cands);
                    let pruned = self.select_heuristic(vectors, &cands, m_max, score);
                    self.set_neighbors(nb, lc, &pruned);
                }
            }
            if let Some(best) = w.first() {
                ep = *best;
            }
            layer -= 1;
        }
        if level > top {
            let mut e = self.entry.write();
            if e.is_none_or(|(_, t)| level > t) {
                *e = Some((id, level));
            }
        }
        self.inserted.fetch_add(1, Relaxed);
    }

    /// The `k` best allowed rows for `query` with beam width `max(ef, k)`, best first.
    ///
    /// `filter` is checked during traversal (rejected rows are walked through but not returned), so
    /// recall holds under moderately selective filters; for very selective ones the planner in
    /// `quiver-query` switches to [`crate::flat::search_rows`].
    pub fn search<F: RowFilter + ?Sized>(
        &self,
        vectors: Vectors<'_>,
        query: &[f32],
        k: usize,
        ef: usize,
        filter: &F,
    ) -> Vec<Neighbor> {
        if k == 0 || vectors.len() < self.len() {
            return Vec::new();
        }
        let scorer = F32Scorer::new(vectors, query, self.metric);
        self.search_by(&scorer, k, ef, filter)
    }

    /// [`Hnsw::search`] with rows scored by `scorer` instead of the `f32` metric: a graph built on
    /// full vectors, traversed with compact-code scores (see `quiver-quant`), or on a Matryoshka
    /// prefix. Scores are whatever `scorer` returns (higher is closer); rescore the results with
    /// [`crate::rerank`] when they only approximate the metric. `filter` is honoured as in
    /// [`Hnsw::search`]. `scorer` must accept every inserted row id.
    pub fn search_by<S: NodeScorer + ?Sized, F: RowFilter + ?Sized>(
        &self,
        scorer: &S,
        k: usize,
        ef: usize,
        filter: &F,
    ) -> Vec<Neighbor> {
        let Some((ep_id, top)) = *self.entry.read() else {
            return Vec::new();
        };
        if k == 0 {
            return Vec::new();
        }
        let mut ep = Neighbor {
            id: ep_id,
            score: scorer.score(ep_id),
        };
        for l in (1..=top).rev() {
            ep = self.greedy(scorer, ep, l);
        }
        let mut res = self.search_layer(scorer, ep, ef.max(k), 0, filter);
        res.truncate(k);
        res
    }
}

impl Hnsw {
    /// A cache-friendly row order: breadth-first over layer 0 from the entry point (unreached rows
    /// appended in id order). Rows that are searched together end up close in memory, which cuts
    /// cache misses on large graphs (graph reordering; cf. Coleman et al., "Graph Reordering for
    /// Cache-Efficient Near Neighbor Search", NeurIPS 2022).
    pub fn bfs_order(&self) -> Vec<u32> {
        let n = self.levels.len();
        let mut seen = vec![false; n];
        let mut order = Vec::with_capacity(n);
        if let Some((ep, _)) = *self.entry.read() {
            let mut queue = std::collections::VecDeque::from([ep]);
            seen[ep as usize] = true;
            while let Some(v) = queue.pop_front() {
                order.push(v);
                self.for_neighbors0(v, |nb| {
                    if !seen[nb as usize] {
                        seen[nb as usize] = true;
                        queue.push_back(nb);
                    }
                });
            }
        }
        order.extend((0..n as u32).filter(|&i| !seen[i as usize]));
        order
    }

    /// The same graph with rows renumbered: new row `i` is old row `order[i]`. The caller permutes
    /// its vectors the same way (see [`Hnsw::bfs_order`]). `order` must be a permutation of
    /// `0..capacity`; otherwise `None`.
    pub fn permuted(&self, order: &[u32]) -> Option<Hnsw> {
        let n = self.levels.len();
        if order.len() != n {
            return None;
        }
        let mut new_of = vec![u32::MAX; n];
        for (new, &old) in order.iter().enumerate() {
            let slot = new_of.get_mut(old as usize)?;
            if *slot != u32::MAX {
                return None;
            }
            *slot = new as u32;
        }
        let g = Hnsw::with_capacity(self.metric, self.params, self.seed, n);
        let stride = self.stride();
        for (new, &old) in order.iter().enumerate() {
            g.levels[new].store(self.levels[old as usize].load(Relaxed), Relaxed);
            let (src, dst) = (old as usize * stride, new * stride);
            let cnt = self.links0[src].load(Relaxed) as usize;
            g.links0[dst].store(cnt as u32, Relaxed);
            for j in 0..cnt.min(self.m0) {
                g.links0[dst + 1 + j].store(
                    new_of[self.links0[src + 1 + j].load(Relaxed) as usize],
                    Relaxed,
                );
            }
            let up: Vec<Vec<u32>> = self.upper[old as usize]
                .read()
                .iter()
                .map(|l| l.iter().map(|&x| new_of[x as usize]).collect())
                .collect();
            *g.upper[new].write() = up;
        }
        *g.entry.write() = self.entry.read().map(|(e, l)| (new_of[e as usize], l));
        g.inserted.store(self.inserted.load(Relaxed), Relaxed);
        Some(g)
    }
}
