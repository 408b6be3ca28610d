//! BM25 as a search source: a query text against a text field, over every segment of a snapshot.
//!
//! ```text
//!   Bm25Request ─► analyzer(field).query_terms(text)
//!     per sealed segment:  visible = snapshot rows     allowed = payload_index(filter) ∧ visible
//!     mutable segment:     in-memory index (caught up)  allowed = visible ∧ filter(payload)
//!   quiver_text::search: statistics over all visible rows, top k per segment ─► merge ─► top k
//! ```

use crate::{Hit, QueryError, SearchResult, SegmentPlan};
use quiver_index::{Bitset, RowFilter};
use quiver_storage::{DocId, Filter, Snapshot, TextField};
use quiver_text::{Bm25Stats, SegmentView};
use serde_json::{Map, Value};
use std::time::Instant;

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

/// Runs `req` against `snap`; also returns the statistics the scores used.
pub fn bm25_search_stats(
    snap: &Snapshot,
    req: &Bm25Request,
) -> Result<(SearchResult, Bm25Stats), QueryError> {
    let field = resolve_text_field(snap, req.field.as_deref())?;
    let terms = field.build_analyzer().query_terms(&req.text);
    let segs = &snap.version.segments;
    let mut sets: Vec<(Bitset, Option<Bitset>)> = Vec::with_capacity(segs.len());
    let mut set_micros = Vec::with_capacity(segs.len());
    for s in 0..segs.len() {
        let t = Instant::now();
        let visible = snap.allowed(s, None);
        // `allowed` with a filter already excludes invisible rows.
        let allowed = req.filter.as_ref().map(|f| snap.allowed(s, Some(f)));
        sets.push((visible, allowed));
        set_micros.push(t.elapsed().as_micros());
    }
    let m = snap.version.mutable.read();
    let t_mut = Instant::now();
    let mem = m.text_index(&field);
    let mut_index_micros = t_mut.elapsed().as_micros();
    let m_visible = |r: u32| m.visible(r, snap.seq);
    let m_allowed = |r: u32| {
        m.visible(r, snap.seq) && req.filter.as_ref().is_none_or(|f| f.matches(m.payload(r)))
    };
    let mut views: Vec<SegmentView<'_>> = Vec::with_capacity(segs.len() + 1);
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
    views.push(SegmentView {
        source: &*mem,
        visible: &m_visible,
        allowed: &m_allowed,
    });
    let total_rows: usize = segs.iter().map(|s| s.rows()).sum::<usize>() + m.rows();
    let k = req.k.min(total_rows);
    let (per_segment, stats) = quiver_text::search(&views, &terms, field.bm25, k)
        .map_err(|e| QueryError::Text(e.to_string()))?;
    let mut all: Vec<(f32, DocId, Option<Map<String, Value>>)> = Vec::new();
    let mut explain = Vec::new();
    for (i, sh) in per_segment.iter().enumerate() {
        if i < sealed_sources.len() {
            let s_idx = sealed_sources[i];
            let seg = &segs[s_idx];
            for &(r, score) in &sh.hits {
                let payload = req.with_payload.then(|| seg.payload(r));
                all.push((score, seg.id(r).clone(), payload));
            }
            let (visible, allowed) = &sets[s_idx];
            explain.push(SegmentPlan {
                segment: seg.name.clone(),
                rows: seg.rows(),
                allowed: allowed.as_ref().unwrap_or(visible).count(),
                method: "bm25",
                micros: sh.micros + set_micros[s_idx],
            });
        } else {
            for &(r, score) in &sh.hits {
                let payload = req.with_payload.then(|| m.payload(r).clone());
                all.push((score, m.id(r).clone(), payload));
            }
            explain.push(SegmentPlan {
                segment: "mutable".into(),
                rows: m.rows(),
                allowed: (0..m.rows() as u32).filter(|&r| m_allowed(r)).count(),
                method: "bm25",
                micros: sh.micros + mut_index_micros,
            });
        }
    }
    drop(views);
    drop(mem);
    drop(m);
    all.sort_by(|a, b| b.0.total_cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
    all.truncate(k);
    Ok((
        SearchResult {
            hits: all
                .into_iter()
                .map(|(score, id, payload)| Hit { id, score, payload })
                .collect(),
            explain,
        },
        stats,
    ))
}

/// Runs `req` against `snap`: the `k` documents with the highest BM25 scores (best first; ties
/// by id), restricted to `filter`. Statistics cover every visible document of the snapshot.
pub fn bm25_search(snap: &Snapshot, req: &Bm25Request) -> Result<SearchResult, QueryError> {
    bm25_search_stats(snap, req).map(|(r, _)| r)
}
