//! BM25 as a search source: a query text against a text field, over every segment of a snapshot.
//!
//! ```text
//!   Bm25Request ─► analyzer(field).query_terms(text)
//!     per segment:  visible = snapshot rows    allowed = filter ∧ visible
//!                   text parts: one sealed index, or one in-memory index per mutable chunk
//!                   (built at upsert), rows offset to the segment's
//!   quiver_text::search: statistics over all visible rows, top k per part ─► merge ─► top k
//! ```

use crate::{Hit, QueryError, SearchResult, SegmentPlan};
use quiver_index::Bitset;
use quiver_storage::{DocId, Filter, Loc, Offset, Snapshot, TextField};
use quiver_text::{Bm25Stats, CorpusStats, SegmentView, TextSource};
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
    /// Statistics of a larger corpus to score with (a sharded collection's); `None`: this
    /// snapshot's own.
    pub corpus: Option<CorpusStats>,
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
            corpus: None,
        }
    }
}

/// The text field a request names, or the collection's only one.
pub fn resolve_text_field(snap: &Snapshot, field: Option<&str>) -> Result<TextField, QueryError> {
    match field {
        Some(f) => snap
            .schema()
            .text(f)
            .ok_or_else(|| QueryError::UnknownTextField(f.to_string())),
        None => {
            let all = snap.schema().text_fields();
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

/// BM25 candidates of one query: locations and scores, best first (ties by location).
pub struct Bm25Candidates {
    /// (location, score), best first.
    pub hits: Vec<(Loc, f32)>,
    /// Per segment: rows, allowed rows, time.
    pub segments: Vec<SegmentPlan>,
    /// The statistics the scores used.
    pub stats: Bm25Stats,
}

/// Per segment: visible rows (they make the statistics) and, with a filter, allowed rows; and
/// the microseconds each took.
type RowSets = (Vec<(Bitset, Option<Bitset>)>, Vec<u128>);

fn row_sets(snap: &Snapshot, filter: Option<&Filter>) -> RowSets {
    let n_segs = snap.segments();
    let mut sets = Vec::with_capacity(n_segs);
    let mut micros = Vec::with_capacity(n_segs);
    for s in 0..n_segs {
        let t = Instant::now();
        let visible = snap.allowed(s, None);
        // `allowed` with a filter already excludes invisible rows.
        let allowed = filter.map(|f| snap.allowed(s, Some(f)));
        sets.push((visible, allowed));
        micros.push(t.elapsed().as_micros());
    }
    (sets, micros)
}

/// Each segment's text index comes in parts (one per chunk of the mutable segment), each
/// numbering its rows from 0: (segment, first row, part).
fn text_parts<'a>(snap: &'a Snapshot, field: &str) -> Vec<(usize, u32, &'a dyn TextSource)> {
    let mut parts = Vec::new();
    for s in 0..snap.segments() {
        for (start, src) in snap.segment(s).text(field) {
            parts.push((s, start, src));
        }
    }
    parts
}

/// The segments' row filters, offset to each part's first row: (visible, allowed).
fn part_filters<'a>(
    parts: &[(usize, u32, &dyn TextSource)],
    sets: &'a [(Bitset, Option<Bitset>)],
) -> Vec<(Offset<'a>, Offset<'a>)> {
    parts
        .iter()
        .map(|&(s, start, _)| {
            let (visible, allowed) = &sets[s];
            let allowed = allowed.as_ref().unwrap_or(visible);
            (
                Offset {
                    inner: visible,
                    start,
                },
                Offset {
                    inner: allowed,
                    start,
                },
            )
        })
        .collect()
}

fn views<'a>(
    parts: &[(usize, u32, &'a dyn TextSource)],
    filters: &'a [(Offset<'a>, Offset<'a>)],
) -> Vec<SegmentView<'a>> {
    parts
        .iter()
        .zip(filters)
        .map(|(&(_, _, source), (visible, allowed))| SegmentView {
            source,
            visible,
            allowed,
        })
        .collect()
}

/// The statistics a BM25 search of `text` on `field` (`None`: the only text field) would use:
/// N, total length and df per query term over the snapshot's visible documents. Summed over the
/// shards of a sharded collection ([`CorpusStats::add`]), they make every shard score as one
/// collection would.
pub fn bm25_stats(
    snap: &Snapshot,
    field: Option<&str>,
    text: &str,
) -> Result<Bm25Stats, QueryError> {
    let field = resolve_text_field(snap, field)?;
    let terms = field.build_analyzer().query_terms(text);
    let (sets, _) = row_sets(snap, None);
    let parts = text_parts(snap, &field.name);
    let filters = part_filters(&parts, &sets);
    quiver_text::stats(&views(&parts, &filters), &terms)
        .map_err(|e| QueryError::Text(e.to_string()))
}

/// The top `k` BM25 candidates of `text` in text field `field` (`None`: the only one), restricted
/// to `filter`, as row locations of `snap` (the plan executor's form). With `corpus`, the scores
/// use its statistics instead of the snapshot's (see [`CorpusStats`]).
pub fn bm25_candidates(
    snap: &Snapshot,
    field: Option<&str>,
    text: &str,
    k: usize,
    filter: Option<&Filter>,
    corpus: Option<&CorpusStats>,
) -> Result<Bm25Candidates, QueryError> {
    let field = resolve_text_field(snap, field)?;
    let terms = field.build_analyzer().query_terms(text);
    let n_segs = snap.segments();
    let (sets, set_micros) = row_sets(snap, filter);
    let parts = text_parts(snap, &field.name);
    let filters = part_filters(&parts, &sets);
    let views = views(&parts, &filters);
    let k = k.min(snap.total_rows());
    let (per_part, stats) = quiver_text::search(&views, &terms, field.bm25, k, corpus)
        .map_err(|e| QueryError::Text(e.to_string()))?;
    let mut hits: Vec<(Loc, f32)> = Vec::new();
    let mut micros = set_micros;
    for (&(s, start, _), ph) in parts.iter().zip(&per_part) {
        hits.extend(
            ph.hits
                .iter()
                .map(|&(r, score)| (snap.loc(s, start + r), score)),
        );
        micros[s] += ph.micros;
    }
    let mut segments = Vec::new();
    for s in 0..n_segs {
        let seg = snap.segment(s);
        let (visible, allowed) = &sets[s];
        segments.push(SegmentPlan {
            segment: seg.name().to_string(),
            rows: seg.rows(),
            allowed: allowed.as_ref().unwrap_or(visible).count(),
            method: "bm25",
            micros: micros[s],
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
        req.corpus.as_ref(),
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
