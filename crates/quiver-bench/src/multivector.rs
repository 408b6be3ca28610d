//! `quiver bench multivector`: MUVERA + exact MaxSim rerank against Quiver's own brute-force
//! MaxSim, on all-MiniLM-L6-v2 token vectors of SciFact (5,183 documents, 300 judged test
//! queries), plus quality (SciFact nDCG@10, LIMIT-small recall@2/@10) and memory per document.
//!
//! Token vectors are computed once and cached ([`tokens`]). Token vectors are unit-normalised (cosine MaxSim); the single-vector baseline is the model's own mean pooling of the
//! same tokens, normalised. Latencies are single-threaded, per query.

//!
//! Quality figures (nDCG@10, recall@k) are `quiver_eval::metrics`' (trec_eval semantics) over
//! `quiver_eval::beir`'s reading of the datasets.

mod tokens;

use crate::error::{Context, Result};
use crate::progress::bar;
use clap::Args;
use quiver::index::multi::maxsim;
use quiver::index::multi::muvera::{FdeEncoder, FdeParams};
use quiver::{AllRows, Hnsw, HnswParams, Metric, MultiVectorsBuf, Vectors};
use quiver_eval::beir::{self, BeirDataset, TextMode};
use quiver_eval::metrics::{Evaluator, Measure, Run, Scored};
use rayon::prelude::*;
use serde_json::{json, Value};
use std::collections::HashSet;
use std::path::PathBuf;
use std::time::Instant;
use tokens::{punctuation_ids, tokens_for, Tokens};

/// Options of `quiver bench multivector`.
#[derive(Args, Debug, Clone)]
pub struct MultivectorOptions {
    /// BEIR SciFact directory.
    #[arg(long, default_value = "../shared/data/scifact")]
    pub data: PathBuf,
    /// LIMIT-small directory (BEIR layout); `none` skips it.
    #[arg(long, default_value = "../shared/data/limit-small")]
    pub limit: PathBuf,
    /// Model (registry name or directory).
    #[arg(long, default_value = "all-MiniLM-L6-v2")]
    pub model: String,
    /// Threads for embedding and for the (untimed) ground-truth computation.
    #[arg(long, default_value_t = 2)]
    pub threads: usize,
    /// Queries whose brute-force latency is timed (single-threaded).
    #[arg(long, default_value_t = 20)]
    pub latency_queries: usize,
    /// MUVERA candidates reranked exactly (a sweep; HNSW ef = candidates).
    #[arg(long, value_delimiter = ',', default_value = "100,200,300,400,800")]
    pub candidates: Vec<usize>,
    /// MUVERA SimHash bits.
    #[arg(long, default_value_t = 5)]
    pub k_sim: u32,
    /// MUVERA inner projection (0 = identity).
    #[arg(long, default_value_t = 16)]
    pub d_proj: usize,
    /// MUVERA repetitions.
    #[arg(long, default_value_t = 20)]
    pub r_reps: usize,
    /// MUVERA final projection (0 = none).
    #[arg(long, default_value_t = 0)]
    pub d_final: usize,
    /// PQ of the FDEs: sub-spaces (bytes per document code); 0 skips PQ.
    #[arg(long, default_value_t = 640)]
    pub pq_m: usize,
    /// k-means pruning: keep this fraction of each document's vectors.
    #[arg(long, default_value_t = 0.33)]
    pub prune_fraction: f32,
}

/// Overlap of `found` with the exact top-`k` (recall relative to exact MaxSim).
fn overlap(found: &[Vec<u32>], exact: &[Vec<u32>], k: usize) -> f64 {
    let mut s = 0.0;
    for (f, e) in found.iter().zip(exact) {
        let want: HashSet<u32> = e.iter().take(k).copied().collect();
        s +=
            f.iter().take(k).filter(|x| want.contains(x)).count() as f64 / want.len().max(1) as f64;
    }
    s / found.len().max(1) as f64
}

fn exact_topk(
    docs: &MultiVectorsBuf,
    queries: &MultiVectorsBuf,
    k: usize,
    label: &str,
) -> Vec<Vec<u32>> {
    let pb = bar(label, queries.view().len() as u64);
    let out = (0..queries.view().len() as u32)
        .into_par_iter()
        .map(|q| {
            let r = maxsim::search(docs.view(), queries.view().doc(q), k, &AllRows)
                .iter()
                .map(|n| n.id)
                .collect();
            pb.inc(1);
            r
        })
        .collect();
    pb.finish_and_clear();
    out
}

fn pruned(docs: &MultiVectorsBuf, fraction: f32) -> Result<MultiVectorsBuf> {
    let v = docs.view();
    let sets: Vec<Result<Vec<f32>>> = (0..v.len() as u32)
        .into_par_iter()
        .map(|i| {
            let d = v.doc(i);
            let k = ((fraction as f64 * d.len() as f64).ceil() as usize).clamp(1, d.len().max(1));
            let mut c = quiver::index::multi::prune::kmeans_prune(d, k, 10, 7 + i as u64)?;
            for row in c.chunks_exact_mut(v.dim()) {
                quiver::linalg::normalize(row);
            }
            Ok(c)
        })
        .collect();
    let mut out = MultiVectorsBuf::new(v.dim());
    for s in sets {
        out.push_flat(&s?);
    }
    Ok(out)
}

/// Mean of each of `measures` over the judged queries of `ds`, for `ranked` row ids per query
/// (best first, in `ds.queries` order).
fn measures(ds: &BeirDataset, ranked: &[Vec<u32>], measures: &[Measure]) -> Vec<f64> {
    let run: Run = ds
        .queries
        .iter()
        .zip(ranked)
        .map(|(q, r)| {
            let list = r
                .iter()
                .enumerate()
                .filter_map(|(i, &d)| {
                    let doc = ds.corpus.get(d as usize)?;
                    Some(Scored::new(doc.id.clone(), (r.len() - i) as f32))
                })
                .collect();
            (q.id.clone(), list)
        })
        .collect();
    Evaluator::new(measures.to_vec())
        .evaluate(&ds.qrels, &run, ds.queries.iter().map(|q| q.id.as_str()))
        .mean
}

fn ndcg10(ds: &BeirDataset, ranked: &[Vec<u32>]) -> f64 {
    measures(ds, ranked, &[Measure::Ndcg(10)])
        .first()
        .copied()
        .unwrap_or(0.0)
}

fn texts(ds: &BeirDataset) -> (Vec<String>, Vec<String>) {
    (
        ds.corpus
            .iter()
            .map(|d| d.joined(TextMode::TitleText))
            .collect(),
        ds.queries.iter().map(|q| q.text.clone()).collect(),
    )
}

/// Exact single-vector search (the model's pooled vectors) for every query: top-10 row ids.
fn single_vector_top10(dt: &Tokens, qt: &Tokens) -> Vec<Vec<u32>> {
    let dim = dt.dim;
    let dense_docs = dt.pooled();
    let dv = Vectors::new(&dense_docs, dim);
    qt.pooled()
        .chunks_exact(dim.max(1))
        .map(|q| {
            quiver::flat::search(dv, Metric::Cosine, q, 10, &AllRows)
                .iter()
                .map(|n| n.id)
                .collect()
        })
        .collect()
}

/// What the run shares between its stages.
struct Ctx<'a> {
    a: &'a MultivectorOptions,
    sf: &'a BeirDataset,
    docs: &'a MultiVectorsBuf,
    queries: &'a MultiVectorsBuf,
    exact: &'a [Vec<u32>],
    /// The fastest brute-force MaxSim measured (ms/query): what speed-ups are against.
    exact_ms: f64,
}

/// The MUVERA index and its sweep.
struct Muvera {
    enc: FdeEncoder,
    fdes: Vec<f32>,
    graph: Hnsw,
    json: Value,
    sweep: Vec<Value>,
    pick: Value,
}

/// `quiver bench multivector`.
pub fn run(as_json: bool, a: MultivectorOptions) -> Result<()> {
    let out = measure(&a)?;
    if as_json {
        println!("{out}");
    } else {
        println!("{}", serde_json::to_string_pretty(&out)?);
    }
    Ok(())
}

/// Runs the whole benchmark; the report as JSON.
pub fn measure(a: &MultivectorOptions) -> Result<Value> {
    rayon::ThreadPoolBuilder::new()
        .num_threads(a.threads.max(1))
        .build_global()
        .ok();
    let model_name = a.model.clone();
    let load = || crate::data::load_model(&a.model, Some(a.threads));
    let mut model = None;
    let sf = beir::load(&a.data, "test")
        .with_context(|| format!("loading {} (set --data)", a.data.display()))?;
    let (dtexts, qtexts) = texts(&sf);
    let (dt, qt) = tokens_for(&dtexts, &qtexts, &sf.name, &model_name, &mut model, &load)?;
    let punct = punctuation_ids(&crate::data::model_dir(&a.model)?)?;
    let docs = dt.sets(&|_, special| !special);
    let queries = qt.sets(&|_, special| !special);
    let nq = queries.view().len();
    let raw_tokens = docs.view().total_vectors() as f64 / docs.view().len().max(1) as f64;
    eprintln!("scifact: {} documents ({raw_tokens:.1} token vectors each, special tokens dropped), {nq} queries", docs.view().len());

    // Exact MaxSim: ground truth (parallel, untimed) and latency (single-threaded).
    let t = Instant::now();
    let exact = exact_topk(&docs, &queries, 100, "exact MaxSim (ground truth)");
    eprintln!(
        "exact MaxSim top-100 for {nq} queries: {:.1}s on {} threads",
        t.elapsed().as_secs_f64(),
        a.threads
    );
    let (blocked_ms, naive_ms) = bruteforce_latency(&docs, &queries, a.latency_queries);
    // Every speed-up is against the fastest exact method measured.
    let exact_ms = blocked_ms.min(naive_ms);
    let fastest = if blocked_ms <= naive_ms {
        "blocked"
    } else {
        "naive"
    };
    let cx = Ctx {
        a,
        sf: &sf,
        docs: &docs,
        queries: &queries,
        exact: &exact,
        exact_ms,
    };
    let mv = muvera(&cx)?;
    let (pq_row, pq_bytes) = pq_codes(&cx, &mv)?;
    let quality = quality(&cx, &dt, &qt, &punct, raw_tokens, &mv.pick)?;
    let limit = if a.limit.as_os_str() != "none" {
        limit_small(a, &model_name, &mut model, &load)?
    } else {
        Value::Null
    };
    let dim = dt.dim;
    let bytes = |n: f64| n * dim as f64 * 4.0;
    let od = mv.enc.out_dim();
    let memory = json!({
        "raw_tokens_bytes_per_doc": bytes(raw_tokens),
        "pruned_bytes_per_doc": quality.pruned_tokens.map(bytes),
        "punctuation_dropped_bytes_per_doc": bytes(quality.np_tokens),
        "fde_f32_bytes_per_doc": od * 4,
        "fde_pq_bytes_per_doc": pq_bytes,
        "fde_hnsw_bytes_per_doc": mv.graph.stats().bytes as f64 / docs.view().len().max(1) as f64,
    });
    let pick = &mv.pick;
    Ok(json!({
        "dataset": sf.name, "model": model_name, "documents": docs.view().len(), "queries": nq, "dim": dim,
        "tokens_per_doc": raw_tokens,
        "muvera": mv.json,
        "bruteforce_ms_per_query": exact_ms, "bruteforce_blocked_ms_per_query": blocked_ms,
        "bruteforce_naive_ms_per_query": naive_ms, "bruteforce_fastest": fastest,
        "muvera_recall_at_10": pick["recall_at_10"], "muvera_recall_at_100": pick["recall_at_100"],
        "muvera_ms_per_query": pick["ms_per_query"], "speedup_vs_bruteforce": pick["speedup_vs_bruteforce"], "muvera_candidates": pick["candidates"],
        "sweep": mv.sweep, "muvera_pq": pq_row,
        "ndcg_at_10": quality.json,
        "limit_small": limit,
        "memory": memory,
    }))
}

/// Brute-force MaxSim latency (ms/query, single thread, the same queries): the blocked kernel
/// and one pair at a time.
fn bruteforce_latency(docs: &MultiVectorsBuf, queries: &MultiVectorsBuf, n: usize) -> (f64, f64) {
    let lat_n = n.clamp(1, queries.view().len().max(1));
    let t = Instant::now();
    for q in 0..lat_n as u32 {
        std::hint::black_box(maxsim::search(
            docs.view(),
            queries.view().doc(q),
            10,
            &AllRows,
        ));
    }
    let exact_ms = t.elapsed().as_secs_f64() * 1e3 / lat_n as f64;
    let t = Instant::now();
    for q in 0..lat_n as u32 {
        let qv = queries.view().doc(q);
        for d in 0..docs.view().len() as u32 {
            std::hint::black_box(maxsim::maxsim_naive(qv, docs.view().doc(d)));
        }
    }
    let naive_ms = t.elapsed().as_secs_f64() * 1e3 / lat_n as f64;
    eprintln!("brute-force MaxSim: {exact_ms:.1} ms/query (blocked kernel), {naive_ms:.1} ms/query (one pair at a time)");
    (exact_ms, naive_ms)
}

/// MUVERA FDEs, an HNSW over them, and the candidates sweep (MaxSim rerank of each list).
fn muvera(cx: &Ctx) -> Result<Muvera> {
    let (a, docs, queries) = (cx.a, cx.docs, cx.queries);
    let nq = queries.view().len();
    let params = FdeParams {
        k_sim: a.k_sim,
        d_proj: (a.d_proj > 0).then_some(a.d_proj),
        r_reps: a.r_reps,
        d_final: (a.d_final > 0).then_some(a.d_final),
        seed: 42,
        fill_empty: true,
    };
    let enc = FdeEncoder::new(docs.view().dim(), params)?;
    let t = Instant::now();
    let fdes = enc.encode_documents(docs.view());
    let fde_secs = t.elapsed().as_secs_f64();
    let od = enc.out_dim();
    let fv = Vectors::new(&fdes, od);
    let t = Instant::now();
    let pb = bar("HNSW over FDEs", docs.view().len() as u64);
    let hnsw_params = HnswParams::default();
    let graph = Hnsw::build_with_progress(fv, Metric::Dot, hnsw_params, 42, &|n| pb.inc(n));
    pb.finish_and_clear();
    let build_secs = t.elapsed().as_secs_f64();
    eprintln!("MUVERA: {od}-dim FDEs in {fde_secs:.1}s, HNSW in {build_secs:.1}s");
    let mut sweep = Vec::new();
    for &c in &a.candidates {
        let c = c.max(10);
        let t = Instant::now();
        let found: Vec<Vec<u32>> = (0..nq as u32)
            .map(|q| {
                let qv = queries.view().doc(q);
                let qf = enc.encode_query(qv);
                let cands = graph.search(fv, &qf, c, c, &AllRows);
                maxsim::search_rows(docs.view(), qv, 100, cands.iter().map(|n| n.id))
                    .iter()
                    .map(|n| n.id)
                    .collect()
            })
            .collect();
        let ms = t.elapsed().as_secs_f64() * 1e3 / nq.max(1) as f64;
        let r10 = overlap(&found, cx.exact, 10);
        let r100 = overlap(&found, cx.exact, 100);
        let ndcg = ndcg10(cx.sf, &found);
        let speedup = cx.exact_ms / ms;
        eprintln!("MUVERA candidates {c:>4}: recall@10 {r10:.4} recall@100 {r100:.4} (vs exact MaxSim), {ms:.2} ms/query, {speedup:.1}x faster, nDCG@10 {ndcg:.4}");
        sweep.push(json!({"candidates": c, "ef": c, "recall_at_10": r10, "recall_at_100": r100, "ms_per_query": ms, "speedup_vs_bruteforce": speedup, "ndcg_at_10": ndcg}));
    }
    // Headline: the fewest candidates reaching recall@10 >= 0.95, else the best recall.
    let r10 = |v: &Value| v["recall_at_10"].as_f64().unwrap_or(0.0);
    let pick = sweep
        .iter()
        .find(|s| r10(s) >= 0.95)
        .or_else(|| sweep.iter().max_by(|x, y| r10(x).total_cmp(&r10(y))))
        .cloned()
        .unwrap_or(Value::Null);
    let json = json!({"k_sim": a.k_sim, "d_proj": a.d_proj, "r_reps": a.r_reps, "d_final": a.d_final, "fde_dim": od, "fde_seconds": fde_secs, "hnsw_seconds": build_secs, "hnsw": {"m": hnsw_params.m, "ef_construction": hnsw_params.ef_construction}});
    Ok(Muvera {
        enc,
        fdes,
        graph,
        json,
        sweep,
        pick,
    })
}

/// PQ codes of the FDEs: an exact ADC scan over codes for candidates, then the MaxSim rerank.
/// The row and the bytes per document (null when `--pq-m 0`).
fn pq_codes(cx: &Ctx, mv: &Muvera) -> Result<(Value, Value)> {
    let (a, docs, queries) = (cx.a, cx.docs, cx.queries);
    if a.pq_m == 0 {
        return Ok((Value::Null, Value::Null));
    }
    let nq = queries.view().len();
    let od = mv.enc.out_dim();
    let c = mv.pick["candidates"].as_u64().unwrap_or(200) as usize;
    let t = Instant::now();
    let pq = quiver::quant::Codec::train(
        quiver::quant::CodecSpec::Pq { m: a.pq_m },
        &mv.fdes,
        od,
        Metric::Dot,
        42,
    )?;
    let codes = pq.encode_all(&mv.fdes)?;
    let train_secs = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let mut found = Vec::with_capacity(nq);
    for q in 0..nq as u32 {
        let qv = queries.view().doc(q);
        let qs = pq.query(&mv.enc.encode_query(qv))?;
        let cands = qs.scan_topk(&codes, &AllRows, c);
        found.push(
            maxsim::search_rows(docs.view(), qv, 100, cands.iter().map(|n| n.id))
                .iter()
                .map(|n| n.id)
                .collect::<Vec<u32>>(),
        );
    }
    let ms = t.elapsed().as_secs_f64() * 1e3 / nq.max(1) as f64;
    let per_doc = pq.code_len() as f64 + pq.model_bytes() as f64 / docs.view().len().max(1) as f64;
    let (r10, r100) = (
        overlap(&found, cx.exact, 10),
        overlap(&found, cx.exact, 100),
    );
    eprintln!("MUVERA PQ{} codes ({per_doc:.0} bytes/doc incl. codebooks, trained in {train_secs:.1}s), ADC scan of {c} candidates + rerank: recall@10 {r10:.4} recall@100 {r100:.4}, {ms:.2} ms/query", a.pq_m);
    Ok((
        json!({"m": a.pq_m, "candidates": c, "recall_at_10": r10, "recall_at_100": r100, "ms_per_query": ms, "speedup_vs_bruteforce": cx.exact_ms / ms, "bytes_per_doc": per_doc, "code_bytes": pq.code_len(), "train_seconds": train_secs}),
        json!(per_doc),
    ))
}

/// SciFact quality of each variant.
struct Quality {
    json: Value,
    np_tokens: f64,
    pruned_tokens: Option<f64>,
}

/// SciFact nDCG@10: single vector, exact MaxSim, punctuation dropped, k-means pruned.
fn quality(
    cx: &Ctx,
    dt: &Tokens,
    qt: &Tokens,
    punct: &HashSet<u32>,
    raw_tokens: f64,
    pick: &Value,
) -> Result<Quality> {
    let (a, sf, docs, queries) = (cx.a, cx.sf, cx.docs, cx.queries);
    let ndcg_dense = ndcg10(sf, &single_vector_top10(dt, qt));
    let ndcg_exact = ndcg10(sf, cx.exact);
    eprintln!("SciFact nDCG@10: single-vector {ndcg_dense:.4}, exact MaxSim {ndcg_exact:.4}");
    let docs_np = dt.sets(&|id, special| !special && !punct.contains(&id));
    let np_tokens = docs_np.view().total_vectors() as f64 / docs_np.view().len().max(1) as f64;
    let ndcg_np = ndcg10(
        sf,
        &exact_topk(&docs_np, queries, 10, "MaxSim, punctuation dropped"),
    );
    eprintln!("  punctuation dropped ({np_tokens:.1} vectors/doc): nDCG@10 {ndcg_np:.4}");
    let mut prune_rows = Vec::new();
    let mut pruned_tokens = None;
    for (label, base) in [("kmeans", docs), ("punctuation+kmeans", &docs_np)] {
        let t = Instant::now();
        match pruned(base, a.prune_fraction) {
            Ok(p) => {
                let secs = t.elapsed().as_secs_f64();
                let per = p.view().total_vectors() as f64 / p.view().len().max(1) as f64;
                let nd = ndcg10(
                    sf,
                    &exact_topk(&p, queries, 10, &format!("MaxSim, {label}")),
                );
                eprintln!("  {label} to {:.2} of the vectors ({per:.1} vectors/doc, {secs:.1}s): nDCG@10 {nd:.4} ({:+.4} vs exact)", a.prune_fraction, nd - ndcg_exact);
                pruned_tokens.get_or_insert(per);
                prune_rows.push(json!({"variant": label, "fraction": a.prune_fraction, "vectors_per_doc": per, "fraction_of_raw": per / raw_tokens, "ndcg_at_10": nd, "delta_vs_exact": nd - ndcg_exact, "seconds": secs}));
            }
            Err(e) => {
                eprintln!("  {label}: pruning unavailable: {e}");
                prune_rows.push(json!({"variant": label, "error": e.to_string()}));
            }
        }
    }
    Ok(Quality {
        json: json!({"single_vector": ndcg_dense, "exact_maxsim": ndcg_exact, "muvera_rerank": pick["ndcg_at_10"], "punctuation_dropped": ndcg_np, "pruned": prune_rows}),
        np_tokens,
        pruned_tokens,
    })
}

/// LIMIT-small recall@2 / @10: exact MaxSim against the single-vector baseline.
fn limit_small(
    a: &MultivectorOptions,
    model_name: &str,
    model: &mut Option<std::sync::Arc<dyn quiver_embed::Embedder>>,
    load: &dyn Fn() -> Result<std::sync::Arc<dyn quiver_embed::Embedder>>,
) -> Result<Value> {
    let lb = beir::load(&a.limit, "test").with_context(|| {
        format!(
            "loading {} (set --limit, or --limit none)",
            a.limit.display()
        )
    })?;
    let (dtexts, qtexts) = texts(&lb);
    let (ldt, lqt) = tokens_for(&dtexts, &qtexts, &lb.name, model_name, model, load)?;
    let ld = ldt.sets(&|_, s| !s);
    let lq = lqt.sets(&|_, s| !s);
    let recall = [Measure::Recall(2), Measure::Recall(10)];
    let ranked = exact_topk(&ld, &lq, 10, "LIMIT-small MaxSim");
    let m = measures(&lb, &ranked, &recall);
    let d = measures(&lb, &single_vector_top10(&ldt, &lqt), &recall);
    let (r2, r10, d2, d10) = (m[0], m[1], d[0], d[1]);
    eprintln!(
        "LIMIT-small recall@2 / @10: MaxSim {r2:.4} / {r10:.4}; single-vector {d2:.4} / {d10:.4}"
    );
    Ok(
        json!({"maxsim_recall_at_2": r2, "maxsim_recall_at_10": r10, "single_vector_recall_at_2": d2, "single_vector_recall_at_10": d10, "queries": lq.view().len(), "documents": ld.view().len()}),
    )
}
