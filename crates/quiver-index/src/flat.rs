//! Exact search: score every allowed row. The oracle for every other path, and the planner's choice
//! when a filter leaves few rows.

use crate::heap::TopK;
use crate::{Neighbor, RowFilter, Vectors};
use quiver_linalg::Metric;

/// Exact top-`k` over all rows for which `filter` allows.
pub fn search<F: RowFilter + ?Sized>(
    vectors: Vectors<'_>,
    metric: Metric,
    query: &[f32],
    k: usize,
    filter: &F,
) -> Vec<Neighbor> {
    let score = metric.scorer();
    let mut top = TopK::new(k);
    for id in 0..vectors.len() as u32 {
        if filter.allows(id) {
            let s = score(query, vectors.row(id));
            if s > top.threshold() {
                top.push(Neighbor { id, score: s });
            }
        }
    }
    top.into_sorted()
}

/// Exact top-`k` over an explicit list of rows (e.g. the rows a selective filter allows).
pub fn search_rows(
    vectors: Vectors<'_>,
    metric: Metric,
    query: &[f32],
    k: usize,
    rows: impl IntoIterator<Item = u32>,
) -> Vec<Neighbor> {
    let score = metric.scorer();
    let mut top = TopK::new(k);
    for id in rows {
        if (id as usize) < vectors.len() {
            let s = score(query, vectors.row(id));
            if s > top.threshold() {
                top.push(Neighbor { id, score: s });
            }
        }
    }
    top.into_sorted()
}
