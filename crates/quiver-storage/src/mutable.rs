//! The mutable segment: recent writes, in memory, made durable by the collection's redb file
//! before they are acknowledged. Rows are append-only; a replaced or deleted row gets the sequence
//! number of the write that superseded it, so a reader's snapshot (a sequence number) decides what
//! it sees without copying anything.

use crate::doc::DocId;
use serde_json::{Map, Value};
use std::collections::BTreeMap;

use crate::segment::LIVE;

/// In-memory rows of the mutable segment.
#[derive(Debug, Default)]
pub struct MutableSegment {
    pub(crate) ids: Vec<DocId>,
    pub(crate) seqs: Vec<u64>,
    pub(crate) superseded_at: Vec<u64>,
    pub(crate) payloads: Vec<Map<String, Value>>,
    pub(crate) vectors: BTreeMap<String, Vec<f32>>,
    pub(crate) dims: BTreeMap<String, usize>,
    /// In-memory text indexes per text field, filled lazily (see `text.rs`).
    pub(crate) text: parking_lot::Mutex<BTreeMap<String, quiver_text::MemText>>,
}

impl MutableSegment {
    /// An empty segment for the given dense fields (name -> dim).
    pub fn new(dims: BTreeMap<String, usize>) -> Self {
        MutableSegment {
            vectors: dims.keys().map(|k| (k.clone(), Vec::new())).collect(),
            dims,
            ..Default::default()
        }
    }

    /// Appends a row; returns its row number.
    pub(crate) fn push(
        &mut self,
        id: DocId,
        seq: u64,
        payload: Map<String, Value>,
        vectors: &BTreeMap<String, Vec<f32>>,
    ) -> u32 {
        let row = self.ids.len() as u32;
        self.ids.push(id);
        self.seqs.push(seq);
        self.superseded_at.push(LIVE);
        self.payloads.push(payload);
        for (name, store) in self.vectors.iter_mut() {
            if let Some(v) = vectors.get(name) {
                store.extend_from_slice(v);
            }
        }
        row
    }

    /// Row count including superseded rows.
    pub fn rows(&self) -> usize {
        self.ids.len()
    }

    /// Rows that are live now.
    pub fn live_rows(&self) -> usize {
        self.superseded_at.iter().filter(|&&s| s == LIVE).count()
    }

    /// Whether `row` is visible at snapshot `at`.
    #[inline]
    pub fn visible(&self, row: u32, at: u64) -> bool {
        let r = row as usize;
        self.seqs[r] <= at && self.superseded_at[r] > at
    }

    /// Id of `row`.
    pub fn id(&self, row: u32) -> &DocId {
        &self.ids[row as usize]
    }

    /// Sequence number of `row`.
    pub fn seq(&self, row: u32) -> u64 {
        self.seqs[row as usize]
    }

    /// Payload of `row`.
    pub fn payload(&self, row: u32) -> &Map<String, Value> {
        &self.payloads[row as usize]
    }

    /// Vectors of a dense field (row-major).
    pub fn vectors(&self, field: &str) -> Option<quiver_index::Vectors<'_>> {
        Some(quiver_index::Vectors::new(
            self.vectors.get(field)?,
            *self.dims.get(field)?,
        ))
    }

    /// The vector of `row` in `field`.
    pub fn vector(&self, field: &str, row: u32) -> Option<&[f32]> {
        self.vectors(field).map(|v| v.row(row))
    }

    pub(crate) fn mark_superseded(&mut self, row: u32, seq: u64) {
        let s = &mut self.superseded_at[row as usize];
        *s = (*s).min(seq);
    }
}
