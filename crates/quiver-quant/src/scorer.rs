//! The per-query scorer and the scans over code matrices.
//!
//! [`QueryScorer`] is a closed enum over the codecs' query forms; every scan matches on it once
//! and then runs a loop monomorphised for that codec (dynamic choice at the boundary, static
//! inner loops).

use crate::binary::{BinaryQuery, HammingQuery};
use crate::int8::Int8Query;
use crate::pq::PqQuery;
use quiver_index::{prefetch_slice, Neighbor, NodeScorer, RowFilter, TopK};

/// Scores one code against the query it was built for.
pub(crate) trait CodeScorer: Sync {
    fn score(&self, code: &[u8]) -> f32;
}

#[derive(Debug, Clone)]
enum Kind {
    Int8(Int8Query),
    Binary(BinaryQuery),
    Hamming(HammingQuery),
    Pq(PqQuery),
}

/// A query prepared for one codec ([`crate::Codec::query`]): score codes, scan code matrices.
#[derive(Debug, Clone)]
pub struct QueryScorer {
    kind: Kind,
    code_len: usize,
}

macro_rules! dispatch {
    ($self:expr, $q:ident => $body:expr) => {
        match &$self.kind {
            Kind::Int8($q) => $body,
            Kind::Binary($q) => $body,
            Kind::Hamming($q) => $body,
            Kind::Pq($q) => $body,
        }
    };
}

impl QueryScorer {
    pub(crate) fn from_int8(q: Int8Query, code_len: usize) -> Self {
        QueryScorer {
            kind: Kind::Int8(q),
            code_len,
        }
    }

    pub(crate) fn from_binary(q: BinaryQuery, code_len: usize) -> Self {
        QueryScorer {
            kind: Kind::Binary(q),
            code_len,
        }
    }

    pub(crate) fn from_hamming(q: HammingQuery, code_len: usize) -> Self {
        QueryScorer {
            kind: Kind::Hamming(q),
            code_len,
        }
    }

    pub(crate) fn from_pq(q: PqQuery, code_len: usize) -> Self {
        QueryScorer {
            kind: Kind::Pq(q),
            code_len,
        }
    }

    /// Bytes per code this scorer reads.
    pub fn code_len(&self) -> usize {
        self.code_len
    }

    /// Approximate score of one code (higher is closer). `code` must be at least
    /// [`QueryScorer::code_len`] bytes (panics otherwise).
    #[inline]
    pub fn score(&self, code: &[u8]) -> f32 {
        dispatch!(self, q => q.score(code))
    }

    /// The best `k` rows of a code matrix (`rows × code_len` bytes, row-major) that `filter`
    /// allows, best first (ties by lower row). A trailing partial code is ignored.
    pub fn scan_topk<F: RowFilter + ?Sized>(
        &self,
        codes: &[u8],
        filter: &F,
        k: usize,
    ) -> Vec<Neighbor> {
        if k == 0 || self.code_len == 0 {
            return Vec::new();
        }
        dispatch!(self, q => scan(q, codes, self.code_len, filter, k))
    }

    /// The best `k` of the listed rows (e.g. a selective filter's allowed set); rows beyond the
    /// matrix are skipped.
    pub fn scan_rows(
        &self,
        codes: &[u8],
        rows: impl IntoIterator<Item = u32>,
        k: usize,
    ) -> Vec<Neighbor> {
        if k == 0 || self.code_len == 0 {
            return Vec::new();
        }
        let n = codes.len() / self.code_len;
        let len = self.code_len;
        let mut top = TopK::new(k);
        for id in rows {
            if (id as usize) < n {
                let s = self.score(&codes[id as usize * len..(id as usize + 1) * len]);
                top.push(Neighbor { id, score: s });
            }
        }
        top.into_sorted()
    }

    /// Scores every listed row into `out` (same length as `rows`; rows must be in range).
    pub fn score_rows(&self, codes: &[u8], rows: &[u32], out: &mut [f32]) {
        let len = self.code_len;
        dispatch!(self, q => {
            for (o, &id) in out.iter_mut().zip(rows) {
                *o = q.score(&codes[id as usize * len..(id as usize + 1) * len]);
            }
        })
    }

    /// This scorer over a code matrix, as an HNSW [`NodeScorer`] (row id → code).
    pub fn over<'a>(&'a self, codes: &'a [u8]) -> CodesScorer<'a> {
        CodesScorer {
            scorer: self,
            codes,
        }
    }
}

fn scan<S: CodeScorer, F: RowFilter + ?Sized>(
    q: &S,
    codes: &[u8],
    len: usize,
    filter: &F,
    k: usize,
) -> Vec<Neighbor> {
    let mut top = TopK::new(k);
    let mut threshold = f32::NEG_INFINITY;
    for (id, code) in codes.chunks_exact(len).enumerate() {
        let id = id as u32;
        if !filter.allows(id) {
            continue;
        }
        let s = q.score(code);
        if s > threshold {
            top.push(Neighbor { id, score: s });
            threshold = top.threshold();
        }
    }
    top.into_sorted()
}

/// A [`QueryScorer`] bound to a code matrix: scores row ids, for [`quiver_index::Hnsw::search_by`].
#[derive(Debug, Clone, Copy)]
pub struct CodesScorer<'a> {
    scorer: &'a QueryScorer,
    codes: &'a [u8],
}

impl NodeScorer for CodesScorer<'_> {
    #[inline]
    fn score(&self, row: u32) -> f32 {
        let len = self.scorer.code_len;
        let s = row as usize * len;
        self.scorer.score(&self.codes[s..s + len])
    }

    #[inline]
    fn prefetch(&self, row: u32) {
        let len = self.scorer.code_len;
        let s = row as usize * len;
        if let Some(c) = self.codes.get(s..s + len) {
            prefetch_slice(c);
        }
    }
}
