//! What a reader sees: a [`Version`] (sealed segments + a frozen mutable segment) and the last
//! sequence number visible in it. Taking a snapshot is one atomic pointer load; nothing a reader
//! does waits on a writer.

use crate::doc::{DocId, StoredDoc};
use crate::filter::Filter;
use crate::multi::MultiInfo;
use crate::mutable::MutableSegment;
use crate::schema::Schema;
use crate::segment::Segment;
use crate::text::TextFieldStats;
use crate::StorageError;
use quiver_index::Bitset;
use serde_json::{Map, Value};
use std::sync::Arc;

/// The sealed segments and mutable segment that one snapshot reads.
pub struct Version {
    /// Sealed segments, oldest first.
    pub segments: Vec<Arc<Segment>>,
    /// The mutable segment, frozen.
    pub mutable: Arc<MutableSegment>,
}

/// A consistent read view: what was committed up to `seq`.
#[derive(Clone)]
pub struct Snapshot {
    /// Segments.
    pub version: Arc<Version>,
    /// Last sequence number visible.
    pub seq: u64,
    /// Schema.
    pub schema: Arc<Schema>,
}

/// Where a document's row lives in a [`Version`]: the mutable segment or sealed segment `s`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Loc {
    /// Row of the mutable segment.
    Mutable(u32),
    /// Segment index (into [`Version::segments`]) and row.
    Sealed(usize, u32),
}

impl Snapshot {
    /// Rows of sealed segment `s` that are visible and match `filter` (all visible rows if `None`).
    pub fn allowed(&self, s: usize, filter: Option<&Filter>) -> Bitset {
        let seg = &self.version.segments[s];
        let mut b = match filter {
            Some(f) => seg.payload_index().evaluate(f, &|r| Some(seg.payload(r))),
            None => Bitset::full(seg.rows()),
        };
        for r in 0..seg.rows() as u32 {
            if !seg.visible(r, self.seq) {
                b.remove(r);
            }
        }
        b
    }

    pub(crate) fn for_each_visible_loc(
        &self,
        filter: Option<&Filter>,
        mut f: impl FnMut(&DocId, Loc),
    ) {
        for (s, seg) in self.version.segments.iter().enumerate() {
            for r in self.allowed(s, filter).iter() {
                f(&seg.id(r), Loc::Sealed(s, r));
            }
        }
        for c in self.version.mutable.chunks() {
            for r in 0..c.rows() as u32 {
                if c.visible(r, self.seq) && filter.is_none_or(|fl| fl.matches(c.payload(r))) {
                    f(c.id(r), Loc::Mutable(c.start() + r));
                }
            }
        }
    }

    /// Calls `f(id)` for every visible document matching `filter`.
    pub fn for_each_visible(&self, filter: Option<&Filter>, mut f: impl FnMut(&DocId)) {
        self.for_each_visible_loc(filter, |id, _| f(id));
    }

    /// Visible documents matching `filter` (without a filter: visibility only, no ids read).
    pub fn count(&self, filter: Option<&Filter>) -> usize {
        if filter.is_some() {
            let mut n = 0;
            self.for_each_visible_loc(filter, |_, _| n += 1);
            return n;
        }
        let sealed: usize = self
            .version
            .segments
            .iter()
            .map(|seg| {
                (0..seg.rows() as u32)
                    .filter(|&r| seg.visible(r, self.seq))
                    .count()
            })
            .sum();
        let m = &self.version.mutable;
        sealed
            + (0..m.rows() as u32)
                .filter(|&r| m.visible(r, self.seq))
                .count()
    }

    /// Sections of this snapshot's segments that failed their checks on first use (see
    /// `segment.rs`): an answer read while any exists must not be served.
    pub fn check(&self) -> Result<(), StorageError> {
        match self.version.segments.iter().flat_map(|s| s.errors()).next() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Where the version of `id` visible in this snapshot lives (newest segments first).
    pub fn find(&self, id: &DocId) -> Option<Loc> {
        for c in self.version.mutable.chunks().iter().rev() {
            if let Some(r) = c.find(id, self.seq) {
                return Some(Loc::Mutable(c.start() + r));
            }
        }
        for (s, seg) in self.version.segments.iter().enumerate().rev() {
            if let Some(r) = seg.find_row(id) {
                if seg.visible(r, self.seq) {
                    return Some(Loc::Sealed(s, r));
                }
            }
        }
        None
    }

    /// The version of `id` visible in this snapshot.
    pub fn get(&self, id: &DocId) -> Option<StoredDoc> {
        self.find(id).map(|loc| self.doc(loc))
    }

    /// Up to `limit` documents in id order, starting after `after`; returns them and the cursor for
    /// the next page (`None` at the end).
    pub fn scroll(
        &self,
        after: Option<&DocId>,
        limit: usize,
        filter: Option<&Filter>,
    ) -> (Vec<StoredDoc>, Option<DocId>) {
        let mut all: Vec<(DocId, Loc)> = Vec::new();
        self.for_each_visible_loc(filter, |id, loc| {
            if after.is_none_or(|a| id > a) {
                all.push((id.clone(), loc));
            }
        });
        all.sort_by(|a, b| a.0.cmp(&b.0));
        let more = all.len() > limit;
        all.truncate(limit);
        let next = if more {
            all.last().map(|x| x.0.clone())
        } else {
            None
        };
        (
            all.into_iter().map(|(_, loc)| self.doc(loc)).collect(),
            next,
        )
    }

    /// The whole document at `loc`.
    pub fn doc(&self, loc: Loc) -> StoredDoc {
        doc_at(&self.version, &self.schema, loc)
    }

    /// Id of the document at `loc`.
    pub fn doc_id(&self, loc: Loc) -> DocId {
        match loc {
            Loc::Mutable(r) => self.version.mutable.id(r).clone(),
            Loc::Sealed(s, r) => self.version.segments[s].id(r),
        }
    }

    /// Payload of the document at `loc`.
    pub fn payload(&self, loc: Loc) -> Map<String, Value> {
        match loc {
            Loc::Mutable(r) => self.version.mutable.payload(r).clone(),
            Loc::Sealed(s, r) => self.version.segments[s].payload(r),
        }
    }

    /// Calls `f` with the stored vector of dense `field` at `loc` (`None` if it has none).
    pub fn with_vector<R>(&self, field: &str, loc: Loc, f: impl FnOnce(&[f32]) -> R) -> Option<R> {
        match loc {
            Loc::Mutable(r) => self.version.mutable.vector(field, r).map(f),
            Loc::Sealed(s, r) => self.version.segments[s].vectors(field).map(|v| f(v.row(r))),
        }
    }
}

impl Snapshot {
    /// Vectors per document of every multi field, over visible documents.
    pub fn multi_info(&self) -> Vec<MultiInfo> {
        let mut out = Vec::new();
        for f in self.schema.multi_fields() {
            let (mut docs, mut raw, mut kept) = (0usize, 0u64, 0u64);
            for seg in &self.version.segments {
                if let (Some(m), Some(v)) = (seg.multi_store(&f.name), seg.multi(&f.name)) {
                    for r in 0..seg.rows() as u32 {
                        if seg.visible(r, self.seq) {
                            docs += 1;
                            raw += m.raw()[r as usize] as u64;
                            kept += v.doc(r).len() as u64;
                        }
                    }
                }
            }
            for c in self.version.mutable.chunks() {
                if let (Some(raws), Some(v)) = (c.multi_raw(&f.name), c.multi(&f.name)) {
                    for r in 0..c.rows() as u32 {
                        if c.visible(r, self.seq) {
                            docs += 1;
                            raw += raws[r as usize] as u64;
                            kept += v.doc(r).len() as u64;
                        }
                    }
                }
            }
            let per = |x: u64| {
                if docs == 0 {
                    0.0
                } else {
                    x as f64 / docs as f64
                }
            };
            out.push(MultiInfo {
                field: f.name.clone(),
                documents: docs,
                raw_vectors: raw,
                kept_vectors: kept,
                raw_per_document: per(raw),
                kept_per_document: per(kept),
            });
        }
        out
    }

    /// Statistics of text field `field` over the visible documents (`None`: not a text field).
    pub fn text_stats(&self, field: &str) -> Option<TextFieldStats> {
        use quiver_text::TextSource;
        let f = self.schema.text(field)?;
        let mut st = TextFieldStats {
            field: f.name.clone(),
            ..Default::default()
        };
        let mut total = 0u64;
        for seg in &self.version.segments {
            if let Some(t) = seg.text(&f.name) {
                for r in 0..seg.rows() as u32 {
                    let dl = t.doc_len(r);
                    if dl > 0 && seg.visible(r, self.seq) {
                        st.docs += 1;
                        total += dl as u64;
                    }
                }
                st.terms.push((seg.name.clone(), t.terms()));
            }
        }
        let mut mutable_terms = std::collections::HashSet::new();
        for c in self.version.mutable.chunks() {
            let Some(mem) = c.text(&f.name) else {
                continue;
            };
            for r in 0..c.rows() as u32 {
                let dl = mem.doc_len(r);
                if dl > 0 && c.visible(r, self.seq) {
                    st.docs += 1;
                    total += dl as u64;
                }
            }
            mutable_terms.extend(mem.term_list());
        }
        st.terms.push(("mutable".into(), mutable_terms.len()));
        st.avg_len = if st.docs > 0 {
            total as f64 / st.docs as f64
        } else {
            0.0
        };
        Some(st)
    }
}

/// The whole document at `loc` of `version`.
pub(crate) fn doc_at(version: &Version, schema: &Schema, loc: Loc) -> StoredDoc {
    match loc {
        Loc::Mutable(r) => {
            let m = &version.mutable;
            let (multi, multi_raw) = m.multi_sets(r);
            StoredDoc {
                id: m.id(r).clone(),
                seq: m.seq(r),
                payload: m.payload(r).clone(),
                vectors: schema
                    .dense_fields()
                    .into_iter()
                    .filter_map(|f| m.vector(&f.name, r).map(|v| (f.name, v.to_vec())))
                    .collect(),
                multi,
                multi_raw,
            }
        }
        Loc::Sealed(s, r) => {
            let seg = &version.segments[s];
            let (multi, multi_raw) = seg.multi_sets(r);
            StoredDoc {
                id: seg.id(r),
                seq: seg.seq(r),
                payload: seg.payload(r),
                vectors: schema
                    .dense_fields()
                    .into_iter()
                    .filter_map(|f| seg.vectors(&f.name).map(|v| (f.name, v.row(r).to_vec())))
                    .collect(),
                multi,
                multi_raw,
            }
        }
    }
}
