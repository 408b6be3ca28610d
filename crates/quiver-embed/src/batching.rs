//! Length-bucketed batching: sort texts by token count, cut into batches, restore order later.
//!
//! Sorting first means each batch is padded only to the longest text *in that batch* (dynamic
//! padding), so a short query never pays for a long document's padding.

/// Indices of `lengths` grouped into batches of at most `batch_size`, longest texts first.
/// Every index appears exactly once; the caller writes results back by index.
pub fn length_buckets(lengths: &[usize], batch_size: usize) -> Vec<Vec<usize>> {
    let mut order: Vec<usize> = (0..lengths.len()).collect();
    // Stable sort: equal lengths keep input order, which makes runs reproducible.
    order.sort_by(|a, b| lengths[*b].cmp(&lengths[*a]));
    order
        .chunks(batch_size.max(1))
        .map(<[usize]>::to_vec)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_cover_every_index_once_longest_first() {
        let lengths = [3, 9, 1, 9, 5];
        let b = length_buckets(&lengths, 2);
        assert_eq!(b, vec![vec![1, 3], vec![4, 0], vec![2]]);
        let mut all: Vec<usize> = b.concat();
        all.sort_unstable();
        assert_eq!(all, vec![0, 1, 2, 3, 4]);
        assert!(length_buckets(&[], 4).is_empty());
    }
}
