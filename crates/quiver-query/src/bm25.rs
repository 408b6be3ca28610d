//! BM25 as a search source: a query text against a text field, over every segment of a snapshot.
//!
//! ```text
//!   Bm25Request ─► analyzer(field).query_terms(text)
//!     per sealed segment:  visible = snapshot rows     allowed = payload_index(filter) ∧ visible
//!     mutable chunks:      in-memory index (built at upsert)  allowed = visible ∧ filter(payload)
//!   quiver_text::search: statistics over all visible rows, top k per segment ─► merge ─► top k
//! ```

use crate::{Hit, QueryError, SearchResult, SegmentPlan};
use quiver_index::{Bitset, RowFilter};
use quiver_storage::{DocId, Filter, Loc, Snapshot, TextField};
use quiver_text::{Bm25Stats, SegmentView};
use std::time::Instant;

/// Extra candidates fetched beyond `k` so that ties at the cut resolve by id.
const TIE_MARGIN: usize = 16;

/// A BM25 request.
#[derive(Debug, Clone)]
pub struct Bm25Request {
    /// Text field; `None` picks the only one.
    pub field: Option<String>,
    /// Query text (analyzed with the field's analyzer).
    pub text: String,
    /// Results wanted.
    pub k: usize,
    /// Payload filter.
    pub filter: Option<Filter>,
    /// Include payloads in hits.
    pub with_payload: bool,
}

impl Bm25Request {
    /// A plain request for the `k` best matches of `text`.
    pub fn new(text: impl Into<String>, k: usize) -> Self {
        Bm25Request {
            field: None,
            text: text.into(),
            k,
            filter: None,
            with_payload: true,
        }
    }
}

/// The text field a request names, or the collection's only one.
pub fn resolve_text_field(snap: &Snapshot, field: Option<&str>) -> Result<TextField, QueryError> {
    match field {
        Some(f) => snap
            .schema
            .text(f)
            .ok_or_else(|| QueryError::UnknownTextField(f.to_string())),
        None => {
            let all = snap.schema.text_fields();
            match all.as_slice() {
                [one] => Ok(one.clone()),
                [] => Err(QueryError::UnknownTextField(
                    "<none: the collection has no text field>".into(),
                )),
                many => Err(QueryError::AmbiguousTextField(
                    many.iter()
                        .map(|f| f.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", "),
                )),
            }
        }
    }
}

/// Rows of one mutable-segment chunk that are visible in a snapshot (and match `filter`).
#[derive(Clone, Copy)]
struct ChunkRows<'a> {
    chunk: &'a quiver_storage::Chunk,
    seq: u64,
    filter: Option<&'a Filter>,
}

impl RowFilter for ChunkRows<'_> {
    fn allows(&self, r: u32) -> bool {
        self.chunk.visible(r, self.seq)
            && self.filter.is_none_or(|f| f.matches(self.chunk.payload(r)))
    }
}

/// BM25 candidates of one query: locations and scores, best first (ties by location).
pub struct Bm25Candidates {
    /// (location, score), best first.
    pub hits: Vec<(Loc, f32)>,
    /// Per segment: rows, allowed rows, time.
    pub segments: Vec<SegmentPlan>,
    /// The statistics the scores used.
    pub stats: Bm25Stats,
}

/// The top `k` BM25 candidates of `text` in text field `field` (`None`: the only one), restricted
/// to `filter`, as row locations of `snap` (the plan executor's form).
pub fn bm25_candidates(
    snap: &Snapshot,
    field: Option<&str>,
    text: &str,
    k: usize,
    filter: Option<&Filter>,
) -> Result<Bm25Candidates, QueryError> {
    let field = resolve_text_field(snap, field)?;
    let terms = field.build_analyzer().query_terms(text);
    let segs = &snap.version.segments;
    let mut sets: Vec<(Bitset, Option<Bitset>)> = Vec::with_capacity(segs.len());
    let mut set_micros = Vec::with_capacity(segs.len());
    for s in 0..segs.len() {
        let t = Instant::now();
        let visible = snap.allowed(s, None);
        // `allowed` with a filter already excludes invisible rows.
        let allowed = filter.map(|f| snap.allowed(s, Some(f)));
        sets.push((visible, allowed));
        set_micros.push(t.elapsed().as_micros());
    }
    let chunk_filters: Vec<(ChunkRows<'_>, ChunkRows<'_>)> = snap
        .version
        .mutable
        .chunks()
        .iter()
        .map(|c| {
            let visible = ChunkRows {
                chunk: c,
                seq: snap.seq,
                filter: None,
            };
            (visible, ChunkRows { filter, ..visible })
        })
        .collect();
    let mut views: Vec<SegmentView<'_>> = Vec::with_capacity(segs.len() + chunk_filters.len());
    // Segment index of each sealed view.
    let mut sealed_sources: Vec<usize> = Vec::with_capacity(segs.len());
    for (s, (seg, (visible, allowed))) in segs.iter().zip(&sets).enumerate() {
        let Some(src) = seg.text(&field.name) else {
            continue;
        };
        sealed_sources.push(s);
        views.push(SegmentView {
            source: src,
            visible,
            allowed: match allowed {
                Some(a) => a as &dyn RowFilter,
                None => visible,
            },
        });
    }
    // The mutable segment's chunks, each with the text index built when its rows were written.
    let mut chunk_starts = Vec::with_capacity(chunk_filters.len());
    for (visible, allowed) in &chunk_filters {
        if let Some(src) = visible.chunk.text(&field.name) {
            chunk_starts.push(visible.chunk.start());
            views.push(SegmentView {
                source: src,
                visible,
                allowed,
            });
        }
    }
    let m = &snap.version.mutable;
    let total_rows: usize = segs.iter().map(|s| s.rows()).sum::<usize>() + m.rows();
    let k = k.min(total_rows);
    let (per_segment, stats) = quiver_text::search(&views, &terms, field.bm25, k)
        .map_err(|e| QueryError::Text(e.to_string()))?;
    let mut hits: Vec<(Loc, f32)> = Vec::new();
    let mut segments = Vec::new();
    let t_mut = Instant::now();
    let mut m_micros = 0u128;
    for (i, sh) in per_segment.iter().enumerate() {
        if let Some(&s_idx) = sealed_sources.get(i) {
            let seg = &segs[s_idx];
            hits.extend(
                sh.hits
                    .iter()
                    .map(|&(r, score)| (Loc::Sealed(s_idx, r), score)),
            );
            let (visible, allowed) = &sets[s_idx];
            segments.push(SegmentPlan {
                segment: seg.name.clone(),
                rows: seg.rows(),
                allowed: allowed.as_ref().unwrap_or(visible).count(),
                method: "bm25",
                micros: sh.micros + set_micros[s_idx],
            });
        } else {
            let start = chunk_starts[i - sealed_sources.len()];
            hits.extend(
                sh.hits
                    .iter()
                    .map(|&(r, score)| (Loc::Mutable(start + r), score)),
            );
            m_micros += sh.micros;
        }
    }
    {
        let allowed = chunk_filters
            .iter()
            .map(|(_, a)| (0..a.chunk.rows() as u32).filter(|&r| a.allows(r)).count())
            .sum();
        segments.push(SegmentPlan {
            segment: "mutable".into(),
            rows: m.rows(),
            allowed,
            method: "bm25",
            micros: m_micros + t_mut.elapsed().as_micros(),
        });
    }
    hits.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    hits.truncate(k);
    Ok(Bm25Candidates {
        hits,
        segments,
        stats,
    })
}

/// Runs `req` against `snap`; also returns the statistics the scores used.
pub fn bm25_search_stats(
    snap: &Snapshot,
    req: &Bm25Request,
) -> Result<(SearchResult, Bm25Stats), QueryError> {
    // Candidates tied at the cut are resolved by id, as dense search does: ask for every tie.
    let c = bm25_candidates(
        snap,
        req.field.as_deref(),
        &req.text,
        req.k.saturating_add(TIE_MARGIN),
        req.filter.as_ref(),
    )?;
    let mut all: Vec<(f32, DocId, Loc)> = c
        .hits
        .iter()
        .map(|&(loc, score)| (score, snap.doc_id(loc), loc))
        .collect();
    all.sort_by(|a, b| b.0.total_cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
    all.truncate(req.k);
    Ok((
        SearchResult {
            hits: all
                .into_iter()
                .map(|(score, id, loc)| Hit {
                    id,
                    score,
                    payload: req.with_payload.then(|| snap.payload(loc)),
                })
                .collect(),
            explain: c.segments,
        },
        c.stats,
    ))
}

/// Runs `req` against `snap`: the `k` documents with the highest BM25 scores (best first; ties
/// by id), restricted to `filter`. Statistics cover every visible document of the snapshot.
pub fn bm25_search(snap: &Snapshot, req: &Bm25Request) -> Result<SearchResult, QueryError> {
    bm25_search_stats(snap, req).map(|(r, _)| r)
}
