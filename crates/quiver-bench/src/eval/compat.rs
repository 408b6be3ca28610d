//! `quiver eval DATASET --model OLD --adapter NEW`: can a new model's queries search an old
//! model's vectors? (issue 17, compatibility metrics)
//!
//! ```text
//!   corpus, queries ─► embedded by OLD and by NEW (corpus vectors cached as `quiver eval` does)
//!   (a) old:       OLD queries  vs OLD documents
//!   (b) new:       NEW queries  vs NEW documents (the corpus re-embedded)
//!   (c) adapters:  NEW queries mapped by an adapter vs OLD documents, one per kind and sample
//!                  size; the sample is that many corpus texts (seeded), embedded by both models
//! ```
//!
//! Every list is an exact scan (`flat::search_batch`), so the figures are the spaces' and not an
//! index's. Reported per row: nDCG@10 and recall@100 (trec_eval semantics), the fraction of (b)
//! that (c) recovers (nDCG@10 of (c) / nDCG@10 of (b)), and the empirical compatibility criterion
//! of Stationary Representations (new-query-to-old-gallery at least old-to-old: nDCG@10 of (c) >=
//! (a)).

use super::{cache, load_dataset, EvalOptions, Setup};
use crate::error::{invalid, Context, Result};
use quiver::linalg::{normalize, Adapter, AdapterKind};
use quiver::{flat, AllRows, Metric, Vectors};
use quiver_eval::beir::{BeirDataset, TextMode};
use quiver_eval::metrics::{Evaluator, Measure, Run, Scored};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use serde_json::json;
use std::time::Instant;

const NDCG10: Measure = Measure::Ndcg(10);
const RECALL100: Measure = Measure::Recall(100);

/// One model's vectors of the corpus and of the judged queries (unit length, row-major).
struct Space {
    model: String,
    dim: usize,
    docs: Vec<f32>,
    queries: Vec<f32>,
}

/// nDCG@10 and recall@100 of one way of searching.
#[derive(Debug, Clone, Copy)]
struct Quality {
    ndcg10: f64,
    recall100: f64,
}

/// One row of the report.
struct Row {
    what: String,
    adapter: Option<AdapterKind>,
    sample: Option<usize>,
    quality: Quality,
    fit_s: f64,
}

/// `quiver eval --adapter NEW`.
pub(super) fn run(as_json: bool, a: &EvalOptions, new_model: &str) -> Result<()> {
    if a.samples.is_empty() || a.samples.contains(&0) {
        return invalid!("--samples needs sizes of at least 1");
    }
    let text_mode = if a.no_title {
        TextMode::TextOnly
    } else {
        TextMode::TitleText
    };
    let mut setup = Setup::default();
    let ds = load_dataset(a, text_mode, &mut setup)?;
    let texts: Vec<String> = ds.corpus.iter().map(|d| d.joined(text_mode)).collect();
    let old_model = crate::data::model_reference(&a.model, a.precision)?;
    let old = embed_space(&old_model, &ds, &texts, !a.no_cache)?;
    let new = embed_space(new_model, &ds, &texts, !a.no_cache)?;
    let evaluator = Evaluator::new(vec![NDCG10, RECALL100]);
    let t = Instant::now();
    let mut rows = vec![
        Row {
            what: format!("(a) old: {} queries vs {} documents", old.model, old.model),
            adapter: None,
            sample: None,
            quality: quality(&ds, &evaluator, &old.docs, &old.queries, old.dim),
            fit_s: 0.0,
        },
        Row {
            what: format!("(b) new: {} re-embedded", new.model),
            adapter: None,
            sample: None,
            quality: quality(&ds, &evaluator, &new.docs, &new.queries, new.dim),
            fit_s: 0.0,
        },
    ];
    let n = ds.corpus.len();
    let mut order: Vec<usize> = (0..n).collect();
    order.shuffle(&mut rand::rngs::StdRng::seed_from_u64(a.sample_seed));
    eprintln!(
        "sample seed {}; {} corpus texts; adapters fitted on the first N of a seeded shuffle",
        a.sample_seed, n
    );
    for &want in &a.samples {
        let size = want.min(n);
        if size < want {
            eprintln!("warning: sample {want} is larger than the corpus; using all {n} texts");
        }
        let pick = &order[..size];
        let x = gather(&new.docs, new.dim, pick);
        let y = gather(&old.docs, old.dim, pick);
        for kind in AdapterKind::ALL {
            let t_fit = Instant::now();
            let adapter = Adapter::fit(kind, &x, &y, new.dim, old.dim)
                .with_context(|| format!("fitting the {} adapter on {size} texts", kind.name()))?;
            let fit_s = t_fit.elapsed().as_secs_f64();
            let (docs, queries, dim) = adapted(&adapter, &old, &new)?;
            rows.push(Row {
                what: format!("(c) {} adapter, {size} texts", kind.name()),
                adapter: Some(kind),
                sample: Some(size),
                quality: quality(&ds, &evaluator, &docs, &queries, dim),
                fit_s,
            });
        }
    }
    let (qa, qb) = (rows[0].quality, rows[1].quality);
    let recovered = |q: Quality| (qb.ndcg10 > 0.0).then(|| q.ndcg10 / qb.ndcg10);
    if as_json {
        let list: Vec<_> = rows
            .iter()
            .map(|r| {
                json!({
                    "what": r.what, "adapter": r.adapter.map(AdapterKind::name),
                    "sample": r.sample, "ndcg_at_10": r.quality.ndcg10,
                    "recall_at_100": r.quality.recall100,
                    "fraction_of_new_recovered": r.adapter.and(recovered(r.quality)),
                    "compatible": r.adapter.map(|_| r.quality.ndcg10 >= qa.ndcg10),
                    "fit_s": r.fit_s,
                })
            })
            .collect();
        let out = json!({
            "dataset": ds.name, "old_model": old.model, "new_model": new.model,
            "old_dim": old.dim, "new_dim": new.dim, "documents": n,
            "queries": ds.queries.len(), "sample_seed": a.sample_seed, "rows": list,
            "search": "exact (flat::search_batch), cosine", "eval_s": t.elapsed().as_secs_f64(),
        });
        println!("{out}");
        return Ok(());
    }
    println!(
        "{}: {} documents, {} judged queries; old {} ({}-d), new {} ({}-d); exact search",
        ds.name,
        n,
        ds.queries.len(),
        old.model,
        old.dim,
        new.model,
        new.dim
    );
    println!(
        "{:<44}{:>9}{:>11}{:>11}{:>12}{:>8}",
        "", "nDCG@10", "recall@100", "of (b)", "compatible", "fit s"
    );
    for r in &rows {
        let frac = r.adapter.and(recovered(r.quality));
        println!(
            "{:<44}{:>9.4}{:>11.4}{:>11}{:>12}{:>8.2}",
            r.what,
            r.quality.ndcg10,
            r.quality.recall100,
            frac.map_or("-".into(), |f| format!("{:.1}%", 100.0 * f)),
            r.adapter.map_or("-", |_| if r.quality.ndcg10 >= qa.ndcg10 {
                "yes"
            } else {
                "no"
            }),
            r.fit_s
        );
    }
    Ok(())
}

/// `model`'s unit vectors of the corpus (cached under the `quiver eval` cache key) and of the
/// judged queries.
fn embed_space(model: &str, ds: &BeirDataset, texts: &[String], use_cache: bool) -> Result<Space> {
    let embedder = crate::data::load_model(model, None)?;
    let info = embedder.info();
    let dim = info.dim;
    let ids: Vec<&str> = ds.corpus.iter().map(|d| d.id.as_str()).collect();
    let t = Instant::now();
    let label = format!("embedding the corpus ({model})");
    let mut docs = cache::vectors_or_embed(embedder.as_ref(), &ids, texts, use_cache, &label)
        .with_context(|| format!("embedding with {model}"))?;
    eprintln!(
        "{model}: {} documents in {:.1}s",
        texts.len(),
        t.elapsed().as_secs_f64()
    );
    let qtexts: Vec<String> = ds.queries.iter().map(|q| q.text.clone()).collect();
    let mut queries = crate::data::embed_texts(
        embedder.as_ref(),
        &qtexts,
        &format!("embedding queries ({model})"),
    )
    .with_context(|| format!("embedding with {model}"))?;
    for v in docs.chunks_mut(dim).chain(queries.chunks_mut(dim)) {
        normalize(v);
    }
    Ok(Space {
        model: info.name.clone(),
        dim,
        docs,
        queries,
    })
}

/// Rows `pick` of a row-major matrix.
fn gather(m: &[f32], dim: usize, pick: &[usize]) -> Vec<f32> {
    pick.iter()
        .flat_map(|&i| &m[i * dim..(i + 1) * dim])
        .copied()
        .collect()
}

/// The searched space under `adapter`: old documents (as [`Adapter::map_stored`] sees them) and
/// new queries mapped by [`Adapter::map_query`].
fn adapted(adapter: &Adapter, old: &Space, new: &Space) -> Result<(Vec<f32>, Vec<f32>, usize)> {
    let mut docs = Vec::with_capacity(old.docs.len() / old.dim * adapter.search_dim());
    for v in old.docs.chunks_exact(old.dim) {
        docs.extend(adapter.map_stored(v)?);
    }
    let mut queries = Vec::new();
    for v in new.queries.chunks_exact(new.dim) {
        queries.extend(adapter.map_query(v)?);
    }
    Ok((docs, queries, adapter.search_dim()))
}

/// Exact top-100 of every judged query, scored with trec_eval semantics.
fn quality(ds: &BeirDataset, ev: &Evaluator, docs: &[f32], queries: &[f32], dim: usize) -> Quality {
    let hits = flat::search_batch(
        Vectors::new(docs, dim),
        Metric::Dot,
        Vectors::new(queries, dim),
        100,
        &AllRows,
    );
    let mut run = Run::new();
    for (q, list) in ds.queries.iter().zip(hits) {
        let scored = list
            .iter()
            .map(|h| Scored::new(ds.corpus[h.id as usize].id.clone(), h.score))
            .collect();
        run.insert(q.id.clone(), scored);
    }
    let e = ev.evaluate_all(&ds.qrels, &run);
    Quality {
        ndcg10: e.mean_of(NDCG10).unwrap_or(0.0),
        recall100: e.mean_of(RECALL100).unwrap_or(0.0),
    }
}
