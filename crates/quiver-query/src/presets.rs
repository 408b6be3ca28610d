//! Plan presets: the plans behind `quiver search --funnel` and friends, built from what a dense
//! field declares.
//!
//! **Funnel** (Matryoshka-style cascade, DESIGN.md §4): start with the cheapest representation in
//! RAM, re-score a shrinking shortlist with richer ones, finish with the full f32 vectors (read
//! from disk when the field's tier is `disk`):
//!
//! ```text
//!   cheapest codec (e.g. binary on a 64-d prefix)   shortlist S   (default max(100·k, 1000))
//!     └► the richest other codec (e.g. int8)         keep S/10     (at least 2·k)
//!         └► f32 on the full vector                  keep k
//! ```
//!
//! Only two codecs take part: every lossy stage in between can drop a true neighbour, and a
//! shortlist of a thousand costs little to re-score with int8 codes in RAM.
//!
//! A field without codecs but with `matryoshka` levels gets the prefix cascade instead: an exact
//! scan of the shortest prefix, then each longer level, then the full vector, the shortlist halving
//! as the dimension grows.

use crate::plan::{
    DenseQuery, DenseRescore, Dims, Plan, Precision, Prefetch, Rescore, Source, Stage,
};
use crate::QueryError;
use quiver_storage::{CodecKind, DenseField};

/// The funnel plan for `query` on `field`, returning `k` hits. `shortlist` overrides the first
/// stage's size.
pub fn funnel(
    field: &DenseField,
    query: DenseQuery,
    k: usize,
    shortlist: Option<usize>,
) -> Result<Plan, QueryError> {
    let k = k.max(1);
    let first = shortlist.unwrap_or((100 * k).max(1000)).max(k);
    let mut levels: Vec<(Option<CodecKind>, usize)> = Vec::new();
    if !field.codecs.is_empty() {
        let mut codecs = field.codecs.clone();
        codecs.sort_by_key(|c| (c.code_bytes(field.dim), c.dims_of(field.dim)));
        let mut pick = vec![codecs[0]];
        if let Some(last) = codecs
            .last()
            .filter(|l| codecs.len() > 1 && **l != codecs[0])
        {
            pick.push(*last);
        }
        levels.extend(pick.iter().map(|c| (Some(c.kind), c.dims_of(field.dim))));
    } else if !field.matryoshka.is_empty() {
        levels.extend(
            field
                .matryoshka
                .iter()
                .filter(|&&d| d < field.dim)
                .map(|&d| (None, d)),
        );
    }
    let Some(&(codec, dims)) = levels.first() else {
        return Err(QueryError::BadPlan(format!(
            "the funnel needs codecs or matryoshka levels on field {:?}; declare e.g. \
             codecs = [{{ type = \"binary\" }}, {{ type = \"int8\" }}] in its schema",
            field.name
        )));
    };
    let dims_of = |d: usize| {
        if d == field.dim {
            Dims::Full
        } else {
            Dims::Prefix(d)
        }
    };
    let source = DenseQuery {
        field: Some(field.name.clone()),
        dims: dims_of(dims),
        codec,
        exact: codec.is_some_and(|_| dims < field.dim),
        ..query
    };
    let mut rescore = Vec::new();
    let mut keep = first;
    let shrink = if field.codecs.is_empty() { 2 } else { 10 };
    for &(codec, dims) in &levels[1..] {
        keep = (keep / shrink).max(2 * k);
        rescore.push(Rescore {
            stage: Stage::Dense(DenseRescore {
                field: Some(field.name.clone()),
                dims: dims_of(dims),
                precision: match codec {
                    None => Precision::F32,
                    Some(CodecKind::Int8) => Precision::Int8,
                    Some(CodecKind::Binary) => Precision::Binary,
                    Some(CodecKind::Pq) => Precision::Pq,
                },
            }),
            limit: keep,
        });
    }
    rescore.push(Rescore {
        stage: Stage::Dense(DenseRescore {
            field: Some(field.name.clone()),
            dims: Dims::Full,
            precision: Precision::F32,
        }),
        limit: k,
    });
    Ok(Plan {
        prefetch: vec![Prefetch {
            source: Source::Dense(source),
            limit: first,
        }],
        fusion: None,
        rescore,
        filter: None,
        limit: k,
        offset: 0,
        with_payload: true,
    })
}
