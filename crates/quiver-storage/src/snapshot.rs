//! What a reader sees: a [`Version`] (sealed segments + a frozen mutable segment) and the last
//! sequence number visible in it. Taking a snapshot is one atomic pointer load; nothing a reader
//! does waits on a writer. Queries read it segment by segment through [`SegmentReader`]
//! (`reader.rs`): the sealed segments, oldest first, then the mutable segment.

use crate::doc::{DocId, StoredDoc};
use crate::filter::Filter;
use crate::multi::MultiInfo;
use crate::mutable::MutableSegment;
use crate::mutable_read::MutableReader;
use crate::reader::SegmentReader;
use crate::schema::Schema;
use crate::segment::Segment;
use crate::text::TextFieldStats;
use crate::StorageError;
use quiver_index::Bitset;
use serde_json::{Map, Value};
use std::sync::Arc;

/// The sealed segments and mutable segments that one snapshot reads.
pub(crate) struct Version {
    /// Sealed segments, oldest first.
    pub(crate) segments: Vec<Arc<Segment>>,
    /// A full mutable segment being sealed in the background (its rows are in the previous log
    /// generation), if any.
    pub(crate) sealing: Option<Arc<MutableSegment>>,
    /// The mutable segment new writes go to, frozen.
    pub(crate) mutable: Arc<MutableSegment>,
}

impl Version {
    /// A version of `segments` and `mutable`, nothing being sealed.
    pub(crate) fn new(segments: Vec<Arc<Segment>>, mutable: Arc<MutableSegment>) -> Version {
        Version {
            segments,
            sealing: None,
            mutable,
        }
    }
}

/// A consistent read view: what was committed up to [`Snapshot::seq`].
#[derive(Clone)]
pub struct Snapshot {
    pub(crate) version: Arc<Version>,
    pub(crate) seq: u64,
    pub(crate) schema: Arc<Schema>,
    /// The mutable segment being sealed, as a reader (after the sealed segments).
    sealing: Option<MutableReader>,
    /// The mutable segment as a reader (the last segment).
    mutable: MutableReader,
}

/// Where a document's row lives in a snapshot: the mutable segment, the mutable segment being
/// sealed, or sealed segment `s`. A query names rows as (segment, row) through [`Snapshot::loc`]
/// and [`Snapshot::place`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Loc {
    /// Row of the mutable segment.
    Mutable(u32),
    /// Row of the mutable segment being sealed in the background.
    Sealing(u32),
    /// Sealed segment index and row.
    Sealed(usize, u32),
}

impl Snapshot {
    pub(crate) fn new(version: Arc<Version>, seq: u64, schema: Arc<Schema>) -> Snapshot {
        let mutable = MutableReader {
            name: "mutable",
            segment: version.mutable.clone(),
            schema: schema.clone(),
        };
        let sealing = version.sealing.as_ref().map(|m| MutableReader {
            name: "sealing",
            segment: m.clone(),
            schema: schema.clone(),
        });
        Snapshot {
            version,
            seq,
            schema,
            sealing,
            mutable,
        }
    }

    /// Last sequence number visible.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// The schema the snapshot was written under.
    pub fn schema(&self) -> &Schema {
        &self.schema
    }

    /// Visible documents that field `name` does not reach yet: those in sealed segments
    /// written before the field was added and not backfilled since (0 for a field not being
    /// backfilled). Queries on the field skip them.
    pub fn pending(&self, name: &str) -> usize {
        if !self.schema.backfill.contains(name) {
            return 0;
        }
        self.version
            .segments
            .iter()
            .filter(|s| !s.has_field(name))
            .map(|s| s.visible_rows(self.seq))
            .sum()
    }

    /// Segments to read: the sealed ones, oldest first, then the one being sealed (if any),
    /// then the mutable one.
    pub fn segments(&self) -> usize {
        self.version.segments.len() + self.sealing.is_some() as usize + 1
    }

    /// Segment `s` (`s < segments()`; the last is the mutable segment).
    pub fn segment(&self, s: usize) -> &dyn SegmentReader {
        debug_assert!(s < self.segments(), "segment {s} of {}", self.segments());
        match (self.version.segments.get(s), &self.sealing) {
            (Some(seg), _) => &**seg,
            (None, Some(sealing)) if s == self.version.segments.len() => sealing,
            _ => &self.mutable,
        }
    }

    /// The sealed segments, oldest first (for inspection; queries read [`Snapshot::segment`]).
    pub fn sealed_segments(&self) -> &[Arc<Segment>] {
        &self.version.segments
    }

    /// The location of `row` of segment `s`.
    pub fn loc(&self, s: usize, row: u32) -> Loc {
        let n = self.version.segments.len();
        if s < n {
            Loc::Sealed(s, row)
        } else if s == n && self.sealing.is_some() {
            Loc::Sealing(row)
        } else {
            Loc::Mutable(row)
        }
    }

    /// The segment and row of `loc` (inverse of [`Snapshot::loc`]).
    pub fn place(&self, loc: Loc) -> (usize, u32) {
        match loc {
            Loc::Sealed(s, r) => (s, r),
            Loc::Sealing(r) => (self.version.segments.len(), r),
            Loc::Mutable(r) => (self.segments() - 1, r),
        }
    }

    /// Rows of every segment, visible or not.
    pub fn total_rows(&self) -> usize {
        (0..self.segments()).map(|s| self.segment(s).rows()).sum()
    }

    /// Rows of segment `s` that are visible and match `filter` (all visible rows if `None`).
    pub fn allowed(&self, s: usize, filter: Option<&Filter>) -> Bitset {
        self.segment(s).allowed(filter, self.seq)
    }

    /// Calls `f(id, loc)` for every visible document matching `filter`.
    pub fn for_each_visible_loc(&self, filter: Option<&Filter>, mut f: impl FnMut(&DocId, Loc)) {
        for s in 0..self.segments() {
            let seg = self.segment(s);
            for r in self.allowed(s, filter).iter() {
                f(&seg.id(r), self.loc(s, r));
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
        (0..self.segments())
            .map(|s| {
                let seg = self.segment(s);
                (0..seg.rows() as u32)
                    .filter(|&r| seg.visible(r, self.seq))
                    .count()
            })
            .sum()
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
        (0..self.segments())
            .rev()
            .find_map(|s| self.segment(s).find(id, self.seq).map(|r| self.loc(s, r)))
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

    /// The whole document at `loc`: id, payload, the vectors of every dense field and the sets
    /// of every multi field.
    pub fn doc(&self, loc: Loc) -> StoredDoc {
        let (s, row) = self.place(loc);
        let seg = self.segment(s);
        let mut doc = StoredDoc {
            id: seg.id(row),
            seq: seg.seq(row),
            payload: seg.payload(row),
            vectors: Default::default(),
            multi: Default::default(),
            multi_raw: Default::default(),
        };
        for f in self.schema.dense_fields() {
            if let Some(v) = seg
                .dense(&f.name)
                .and_then(|d| d.vector(row).map(<[f32]>::to_vec))
            {
                doc.vectors.insert(f.name, v);
            }
        }
        for f in self.schema.multi_fields() {
            let Some(m) = seg.multi(&f.name).filter(|m| (row as usize) < m.rows()) else {
                continue;
            };
            let set = m.set(row);
            let vectors = set
                .as_slice()
                .chunks_exact(f.dim.max(1))
                .map(<[f32]>::to_vec)
                .collect();
            doc.multi_raw.insert(f.name.clone(), m.raw(row));
            doc.multi.insert(f.name, vectors);
        }
        doc
    }

    /// Id of the document at `loc`.
    pub fn doc_id(&self, loc: Loc) -> DocId {
        match loc {
            Loc::Mutable(r) => self.version.mutable.id(r).clone(),
            Loc::Sealed(s, r) => self.version.segments[s].id(r),
            Loc::Sealing(_) => {
                let (s, r) = self.place(loc);
                self.segment(s).id(r)
            }
        }
    }

    /// Payload of the document at `loc`.
    pub fn payload(&self, loc: Loc) -> Map<String, Value> {
        let (s, r) = self.place(loc);
        self.segment(s).payload(r)
    }
}

impl Snapshot {
    /// The chunks of the mutable segment being sealed and of the mutable segment.
    fn mutable_chunks(&self) -> impl Iterator<Item = &Arc<crate::mutable::Chunk>> {
        let sealing = self.version.sealing.iter().flat_map(|m| m.chunks());
        sealing.chain(self.version.mutable.chunks())
    }

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
            for c in self.mutable_chunks() {
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
        for c in self.mutable_chunks() {
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
