//! Exact search: score every allowed row. The oracle for every other path, and the planner's choice
//! when a filter leaves few rows.
//!
//! For cosine and dot, rows are scored in blocks: the allowed ids of up to [`BLOCK`] rows are
//! gathered, scored sixteen at a time by the register-blocked kernels of `quiver-linalg`
//! ([`dot_1x16`] for one query, [`dot_4x4`] for four queries of a batch), and only then offered to
//! the top-k collector, so the selection stays off the scoring loop. A pair's score is the same
//! whichever kernel computed it (see `quiver_linalg::dot_1x16`), so [`search`], [`search_rows`] and
//! [`search_batch`] agree exactly. L2 is scored row by row.

use crate::heap::TopK;
use crate::{Neighbor, RowFilter, Vectors};
use quiver_linalg::{dot_1x16, dot_1x16_block, dot_4x4, dot_4x4_block, Metric};

/// Rows gathered and scored per block. 256 rows of 384 floats are 384 KiB, which stay in L2 while
/// every query of a batch passes over them.
pub const BLOCK: usize = 256;

/// Exact top-`k` over all rows for which `filter` allows.
pub fn search<F: RowFilter + ?Sized>(
    vectors: Vectors<'_>,
    metric: Metric,
    query: &[f32],
    k: usize,
    filter: &F,
) -> Vec<Neighbor> {
    let mut top = TopK::new(k);
    if metric == Metric::L2 {
        let score = metric.scorer();
        for id in 0..vectors.len() as u32 {
            if filter.allows(id) {
                offer(&mut top, id, score(query, vectors.row(id)));
            }
        }
        return top.into_sorted();
    }
    let mut scores = [0.0f32; BLOCK];
    for_each_block(vectors.len(), filter, |rows| {
        score_one(vectors, query, rows, &mut scores);
        offer_block(&mut top, rows, &scores);
    });
    top.into_sorted()
}

/// Exact top-`k` over an explicit list of rows (e.g. the rows a selective filter allows). Ids past
/// the end of `vectors` are skipped.
pub fn search_rows(
    vectors: Vectors<'_>,
    metric: Metric,
    query: &[f32],
    k: usize,
    rows: impl IntoIterator<Item = u32>,
) -> Vec<Neighbor> {
    let mut top = TopK::new(k);
    let n = vectors.len();
    let mut rows = rows.into_iter().filter(|&id| (id as usize) < n);
    if metric == Metric::L2 {
        let score = metric.scorer();
        for id in rows {
            offer(&mut top, id, score(query, vectors.row(id)));
        }
        return top.into_sorted();
    }
    let mut ids = Vec::with_capacity(BLOCK);
    let mut scores = [0.0f32; BLOCK];
    loop {
        ids.clear();
        ids.extend(rows.by_ref().take(BLOCK));
        if ids.is_empty() {
            break;
        }
        score_one(vectors, query, Block::Ids(&ids), &mut scores);
        offer_block(&mut top, Block::Ids(&ids), &scores);
    }
    top.into_sorted()
}

/// Exact top-`k` of every query of a batch (`queries`, one per row) over the rows `filter` allows:
/// answer `i` equals `search(vectors, metric, queries.row(i), k, filter)`, computed with each block
/// of rows read once for the whole batch and scored four queries at a time.
pub fn search_batch<F: RowFilter + ?Sized>(
    vectors: Vectors<'_>,
    metric: Metric,
    queries: Vectors<'_>,
    k: usize,
    filter: &F,
) -> Vec<Vec<Neighbor>> {
    let nq = queries.len();
    if metric == Metric::L2 || queries.dim() != vectors.dim() {
        return (0..nq as u32)
            .map(|i| search(vectors, metric, queries.row(i), k, filter))
            .collect();
    }
    let mut tops: Vec<TopK> = (0..nq).map(|_| TopK::new(k)).collect();
    let groups = nq / 4;
    let mut scores = vec![0.0f32; 4 * BLOCK];
    for_each_block(vectors.len(), filter, |rows| {
        for g in 0..groups {
            let q: [&[f32]; 4] = std::array::from_fn(|a| queries.row((4 * g + a) as u32));
            score_four(vectors, q, rows, &mut scores);
            for (a, row) in scores.chunks_exact(BLOCK).enumerate() {
                offer_block(&mut tops[4 * g + a], rows, row);
            }
        }
        for (qi, top) in tops.iter_mut().enumerate().skip(4 * groups) {
            let row = &mut scores[..BLOCK];
            score_one(vectors, queries.row(qi as u32), rows, row);
            offer_block(top, rows, row);
        }
    });
    tops.into_iter().map(TopK::into_sorted).collect()
}

/// The rows of one block: a run of consecutive rows, all allowed, or an explicit list of ids.
#[derive(Clone, Copy)]
enum Block<'a> {
    /// Rows `start..start + len`.
    Run(u32, usize),
    /// These rows, in this order.
    Ids(&'a [u32]),
}

impl Block<'_> {
    fn len(&self) -> usize {
        match self {
            Block::Run(_, len) => *len,
            Block::Ids(ids) => ids.len(),
        }
    }

    #[inline]
    fn id(&self, j: usize) -> u32 {
        match self {
            Block::Run(start, _) => start + j as u32,
            Block::Ids(ids) => ids[j],
        }
    }
}

/// Calls `f` with the allowed rows of each run of [`BLOCK`] consecutive rows (skipping runs with
/// none allowed): the run itself when every row is allowed, else the allowed ids.
fn for_each_block<F: RowFilter + ?Sized>(n: usize, filter: &F, mut f: impl FnMut(Block<'_>)) {
    let mut ids = Vec::with_capacity(BLOCK);
    let mut start = 0usize;
    let all = filter.allows_all();
    while start < n {
        let end = (start + BLOCK).min(n);
        if all {
            f(Block::Run(start as u32, end - start));
            start = end;
            continue;
        }
        ids.clear();
        ids.extend((start as u32..end as u32).filter(|&id| filter.allows(id)));
        if ids.len() == end - start {
            f(Block::Run(start as u32, end - start));
        } else if !ids.is_empty() {
            f(Block::Ids(&ids));
        }
        start = end;
    }
}

/// `out[j] = dot(query, row j of the block)` (at most [`BLOCK`] rows); the last tile is padded with
/// the block's last row, whose extra scores are dropped.
fn score_one(vectors: Vectors<'_>, query: &[f32], rows: Block<'_>, out: &mut [f32]) {
    let (n, dim) = (rows.len(), vectors.dim());
    let mut done = 0;
    if let Block::Run(start, _) = rows {
        let data = vectors.as_slice();
        while done + 16 <= n {
            let r0 = (start as usize + done) * dim;
            out[done..done + 16].copy_from_slice(&dot_1x16_block(query, &data[r0..r0 + 16 * dim]));
            done += 16;
        }
    }
    while done < n {
        let tile: [&[f32]; 16] =
            std::array::from_fn(|j| vectors.row(rows.id((done + j).min(n - 1))));
        let s = dot_1x16(query, tile);
        let m = (n - done).min(16);
        out[done..done + m].copy_from_slice(&s[..m]);
        done += m;
    }
}

/// `out[a * BLOCK + j] = dot(queries[a], row j of the block)` for four queries; padded like
/// [`score_one`].
fn score_four(vectors: Vectors<'_>, queries: [&[f32]; 4], rows: Block<'_>, out: &mut [f32]) {
    let (n, dim) = (rows.len(), vectors.dim());
    let data = vectors.as_slice();
    let mut j = 0;
    while j < n {
        let s = match rows {
            Block::Run(start, _) if j + 4 <= n => {
                let r0 = (start as usize + j) * dim;
                dot_4x4_block(queries, &data[r0..r0 + 4 * dim])
            }
            _ => {
                let tile: [&[f32]; 4] =
                    std::array::from_fn(|b| vectors.row(rows.id((j + b).min(n - 1))));
                dot_4x4(queries, tile)
            }
        };
        let m = (n - j).min(4);
        for a in 0..4 {
            out[a * BLOCK + j..a * BLOCK + j + m].copy_from_slice(&s[4 * a..4 * a + m]);
        }
        j += m;
    }
}

/// Offers each row of the block with its score to `top`, reading the threshold again only after a
/// push.
#[inline]
fn offer_block(top: &mut TopK, rows: Block<'_>, scores: &[f32]) {
    let mut threshold = top.threshold();
    for (c, chunk) in scores[..rows.len()].chunks(16).enumerate() {
        // Most chunks hold nothing above the threshold once the collector is full: one
        // branch-free count (vectorised) skips them.
        if chunk.iter().map(|&s| (s > threshold) as u32).sum::<u32>() == 0 {
            continue;
        }
        for (j, &score) in chunk.iter().enumerate() {
            if score > threshold {
                top.push(Neighbor {
                    id: rows.id(16 * c + j),
                    score,
                });
                threshold = top.threshold();
            }
        }
    }
}

#[inline]
fn offer(top: &mut TopK, id: u32, score: f32) {
    if score > top.threshold() {
        top.push(Neighbor { id, score });
    }
}
