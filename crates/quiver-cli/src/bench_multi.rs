//! `quiver bench multivector`: MUVERA + exact MaxSim rerank against Quiver's own brute-force
//! MaxSim, on all-MiniLM-L6-v2 token vectors of SciFact (5,183 documents, 300 judged test
//! queries), plus quality (SciFact nDCG@10, LIMIT-small recall@2/@10) and memory per document.
//!
//! Token vectors are computed once and cached under `~/.cache/quiver/bench/multi-<data>-<model>/`
//! (all tokens with their ids and special flags, so every variant — special tokens dropped,
//! punctuation dropped, k-means pruned — is derived from one cache). Token vectors are unit-
//! normalised (cosine MaxSim); the single-vector baseline is the model's own mean pooling of the
//! same tokens, normalised. Latencies are single-threaded, per query.

use crate::progress::bar;
use anyhow::{anyhow, bail, Context, Result};
use clap::Args;
use quiver::index::multi::maxsim;
use quiver::index::multi::muvera::{FdeEncoder, FdeParams};
use quiver::{AllRows, Hnsw, HnswParams, Metric, MultiVectorsBuf, Vectors};
use quiver_embed::{load_model, EmbedOptions, LoadOptions, Pooling};
use rayon::prelude::*;
use serde_json::{json, Value};
use std::collections::{HashMap, HashSet};
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

#[derive(Args, Debug)]
pub struct MultiBenchArgs {
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
    #[arg(long, value_delimiter = ',', default_value = "100,200,400,800")]
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

/// Token vectors of a list of texts, all tokens kept, with ids and special flags.
struct Tokens {
    dim: usize,
    data: Vec<f32>,
    offsets: Vec<u64>,
    ids: Vec<u32>,
    special: Vec<u8>,
}

impl Tokens {
    fn n(&self) -> usize {
        self.offsets.len() - 1
    }

    fn range(&self, i: usize) -> std::ops::Range<usize> {
        self.offsets[i] as usize..self.offsets[i + 1] as usize
    }

    /// Unit-normalised token vectors of every text, keeping tokens for which `keep(id, special)`
    /// (all of them when none would remain).
    fn sets(&self, keep: &dyn Fn(u32, bool) -> bool) -> MultiVectorsBuf {
        let mut buf = MultiVectorsBuf::new(self.dim);
        for i in 0..self.n() {
            let r = self.range(i);
            let mut rows: Vec<f32> = Vec::with_capacity(r.len() * self.dim);
            for t in r.clone() {
                if keep(self.ids[t], self.special[t] != 0) {
                    rows.extend_from_slice(&self.data[t * self.dim..(t + 1) * self.dim]);
                }
            }
            if rows.is_empty() {
                rows.extend_from_slice(&self.data[r.start * self.dim..r.end * self.dim]);
            }
            for v in rows.chunks_exact_mut(self.dim) {
                quiver::linalg::normalize(v);
            }
            buf.push_flat(&rows);
        }
        buf
    }

    /// The model's sentence vector: mean of all token vectors, normalised.
    fn pooled(&self) -> Vec<f32> {
        let mut out = vec![0.0f32; self.n() * self.dim];
        for i in 0..self.n() {
            let r = self.range(i);
            let o = &mut out[i * self.dim..(i + 1) * self.dim];
            for t in r.clone() {
                for (a, b) in o
                    .iter_mut()
                    .zip(&self.data[t * self.dim..(t + 1) * self.dim])
                {
                    *a += b;
                }
            }
            quiver::linalg::normalize(o);
        }
        out
    }
}

fn write_bytes(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))
}

fn read_vec<T: Copy, const N: usize>(path: &Path, f: fn([u8; N]) -> T) -> Result<Vec<T>> {
    let b = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    if b.len() % N != 0 {
        bail!("{}: truncated cache file", path.display());
    }
    Ok(b.chunks_exact(N)
        .map(|c| {
            let mut a = [0u8; N];
            a.copy_from_slice(c);
            f(a)
        })
        .collect())
}

fn save_tokens(dir: &Path, name: &str, t: &Tokens) -> Result<()> {
    write_bytes(
        &dir.join(format!("{name}.f32")),
        &t.data
            .iter()
            .flat_map(|x| x.to_le_bytes())
            .collect::<Vec<u8>>(),
    )?;
    write_bytes(
        &dir.join(format!("{name}.ids")),
        &t.ids
            .iter()
            .flat_map(|x| x.to_le_bytes())
            .collect::<Vec<u8>>(),
    )?;
    write_bytes(&dir.join(format!("{name}.special")), &t.special)?;
    write_bytes(
        &dir.join(format!("{name}.off")),
        &t.offsets
            .iter()
            .flat_map(|x| x.to_le_bytes())
            .collect::<Vec<u8>>(),
    )
}

fn load_tokens(dir: &Path, name: &str, dim: usize) -> Result<Tokens> {
    let t = Tokens {
        dim,
        data: read_vec(&dir.join(format!("{name}.f32")), f32::from_le_bytes)?,
        offsets: read_vec(&dir.join(format!("{name}.off")), u64::from_le_bytes)?,
        ids: read_vec(&dir.join(format!("{name}.ids")), u32::from_le_bytes)?,
        special: std::fs::read(dir.join(format!("{name}.special")))?,
    };
    let total = t.offsets.last().copied().unwrap_or(0) as usize;
    if t.ids.len() != total || t.special.len() != total || t.data.len() != total * dim {
        bail!(
            "{}: inconsistent token cache {name}; delete the folder to rebuild it",
            dir.display()
        );
    }
    Ok(t)
}

fn embed_all(model: &dyn quiver_embed::Embedder, texts: &[String], label: &str) -> Result<Tokens> {
    let dim = model.info().dim;
    let mut t = Tokens {
        dim,
        data: Vec::new(),
        offsets: vec![0],
        ids: Vec::new(),
        special: Vec::new(),
    };
    let pb = bar(label, texts.len() as u64);
    for chunk in texts.chunks(64) {
        let refs: Vec<&str> = chunk.iter().map(String::as_str).collect();
        let opts = EmbedOptions {
            allow_empty: true,
            ..Default::default()
        };
        for e in model.embed_tokens(&refs, &opts)? {
            t.data.extend_from_slice(&e.data);
            t.ids.extend_from_slice(&e.ids);
            t.special.extend(e.special.iter().map(|&s| s as u8));
            let last = *t.offsets.last().unwrap_or(&0);
            t.offsets.push(last + e.ids.len() as u64);
        }
        pb.inc(chunk.len() as u64);
    }
    pb.finish_and_clear();
    Ok(t)
}

/// A BEIR dataset: corpus ids and texts, judged queries (id, text), qrels.
struct Beir {
    doc_ids: Vec<String>,
    docs: Vec<String>,
    query_ids: Vec<String>,
    queries: Vec<String>,
    qrels: HashMap<String, HashMap<String, f64>>,
}

fn read_beir(dir: &Path) -> Result<Beir> {
    let lines = |p: PathBuf| -> Result<Vec<Value>> {
        let f = std::fs::File::open(&p)
            .with_context(|| format!("opening {} (set --data / --limit)", p.display()))?;
        std::io::BufReader::new(f)
            .lines()
            .enumerate()
            .filter(|(_, l)| l.as_ref().map_or(true, |l| !l.trim().is_empty()))
            .map(|(i, l)| {
                let l = l.with_context(|| format!("{}:{}", p.display(), i + 1))?;
                serde_json::from_str(&l).with_context(|| format!("{}:{}", p.display(), i + 1))
            })
            .collect()
    };
    let s = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).unwrap_or("").to_string();
    let id = |v: &Value| match v.get("_id") {
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
        None => String::new(),
    };
    let mut qrels: HashMap<String, HashMap<String, f64>> = HashMap::new();
    let qp = dir.join("qrels").join("test.tsv");
    let text = std::fs::read_to_string(&qp).with_context(|| format!("reading {}", qp.display()))?;
    for (i, line) in text.lines().enumerate().skip(1) {
        let f: Vec<&str> = line.split('\t').collect();
        if f.len() < 3 {
            continue;
        }
        let g: f64 = f[2]
            .trim()
            .parse()
            .map_err(|_| anyhow!("{}:{}: bad score", qp.display(), i + 1))?;
        qrels
            .entry(f[0].to_string())
            .or_default()
            .insert(f[1].to_string(), g);
    }
    let corpus = lines(dir.join("corpus.jsonl"))?;
    let mut b = Beir {
        doc_ids: Vec::new(),
        docs: Vec::new(),
        query_ids: Vec::new(),
        queries: Vec::new(),
        qrels,
    };
    for v in &corpus {
        b.doc_ids.push(id(v));
        let (t, x) = (s(v, "title"), s(v, "text"));
        b.docs
            .push(if t.is_empty() { x } else { format!("{t} {x}") });
    }
    for v in lines(dir.join("queries.jsonl"))? {
        let qid = id(&v);
        if b.qrels.contains_key(&qid) {
            b.query_ids.push(qid);
            b.queries.push(s(&v, "text"));
        }
    }
    Ok(b)
}

/// Cached (or computed now) token vectors of a dataset's documents and judged queries.
fn tokens_for(
    b: &Beir,
    tag: &str,
    model_name: &str,
    model: &mut Option<Box<dyn quiver_embed::Embedder>>,
    load: &dyn Fn() -> Result<Box<dyn quiver_embed::Embedder>>,
) -> Result<(Tokens, Tokens)> {
    let base = dirs::cache_dir()
        .unwrap_or_else(|| PathBuf::from("."))
        .join("quiver")
        .join("bench")
        .join(format!("multi-{tag}-{}", model_name.replace('/', "_")));
    let meta_path = base.join("meta.json");
    if let Ok(m) = std::fs::read(&meta_path) {
        let m: Value = serde_json::from_slice(&m)?;
        let dim = m["dim"].as_u64().unwrap_or(0) as usize;
        if m["docs"].as_u64() == Some(b.docs.len() as u64)
            && m["queries"].as_u64() == Some(b.queries.len() as u64)
        {
            eprintln!("using cached token vectors in {}", base.display());
            return Ok((
                load_tokens(&base, "docs", dim)?,
                load_tokens(&base, "queries", dim)?,
            ));
        }
    }
    if model.is_none() {
        *model = Some(load()?);
    }
    let m = model
        .as_deref()
        .ok_or_else(|| anyhow!("model not loaded"))?;
    if m.info().pooling != Pooling::Mean {
        bail!(
            "the single-vector baseline assumes mean pooling; {} pools with {:?}",
            m.info().name,
            m.info().pooling
        );
    }
    std::fs::create_dir_all(&base).with_context(|| format!("creating {}", base.display()))?;
    let t0 = Instant::now();
    let docs = embed_all(m, &b.docs, &format!("{tag}: document tokens"))?;
    let queries = embed_all(m, &b.queries, &format!("{tag}: query tokens"))?;
    eprintln!(
        "{tag}: embedded {} documents and {} queries in {:.1}s",
        b.docs.len(),
        b.queries.len(),
        t0.elapsed().as_secs_f64()
    );
    save_tokens(&base, "docs", &docs)?;
    save_tokens(&base, "queries", &queries)?;
    write_bytes(
        &meta_path,
        json!({"dim": docs.dim, "docs": docs.n(), "queries": queries.n(), "model": model_name})
            .to_string()
            .as_bytes(),
    )?;
    Ok((docs, queries))
}

/// nDCG@k with linear gains (trec_eval `ndcg_cut`), averaged over judged queries.
fn ndcg_at(b: &Beir, ranked: &[Vec<u32>], k: usize) -> f64 {
    let mut total = 0.0;
    for (qi, r) in ranked.iter().enumerate() {
        let rel = &b.qrels[&b.query_ids[qi]];
        let dcg: f64 = r
            .iter()
            .take(k)
            .enumerate()
            .map(|(i, &d)| {
                rel.get(&b.doc_ids[d as usize]).copied().unwrap_or(0.0) / ((i + 2) as f64).log2()
            })
            .sum();
        let mut gains: Vec<f64> = rel.values().copied().filter(|g| *g > 0.0).collect();
        gains.sort_by(|a, b| b.total_cmp(a));
        let idcg: f64 = gains
            .iter()
            .take(k)
            .enumerate()
            .map(|(i, g)| g / ((i + 2) as f64).log2())
            .sum();
        if idcg > 0.0 {
            total += dcg / idcg;
        }
    }
    total / ranked.len().max(1) as f64
}

/// Recall@k of relevant documents (LIMIT's definition), averaged over queries.
fn recall_rel(b: &Beir, ranked: &[Vec<u32>], k: usize) -> f64 {
    let mut total = 0.0;
    for (qi, r) in ranked.iter().enumerate() {
        let rel: HashSet<&String> = b.qrels[&b.query_ids[qi]]
            .iter()
            .filter(|(_, g)| **g > 0.0)
            .map(|(d, _)| d)
            .collect();
        let hit = r
            .iter()
            .take(k)
            .filter(|&&d| rel.contains(&b.doc_ids[d as usize]))
            .count();
        total += hit as f64 / rel.len().max(1) as f64;
    }
    total / ranked.len().max(1) as f64
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

pub fn run(a: MultiBenchArgs, as_json: bool) -> Result<()> {
    rayon::ThreadPoolBuilder::new()
        .num_threads(a.threads.max(1))
        .build_global()
        .ok();
    let (model_dir, model_name) = crate::embed_cmd::model_path(&a.model)?;
    let threads = a.threads;
    let load = || -> Result<Box<dyn quiver_embed::Embedder>> {
        load_model(
            &model_dir,
            &LoadOptions {
                threads: Some(threads),
                name: Some(model_name.clone()),
                ..Default::default()
            },
        )
        .with_context(|| format!("loading model from {}", model_dir.display()))
    };
    let mut model = None;
    let sf = read_beir(&a.data)?;
    let (dt, qt) = tokens_for(&sf, "scifact", &model_name, &mut model, &load)?;
    let dim = dt.dim;
    let punct = crate::multi_cmd::punctuation_ids(&model_dir)?;
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
    let lat_n = a.latency_queries.clamp(1, nq);
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
    for q in 0..lat_n.min(5) as u32 {
        let qv = queries.view().doc(q);
        for d in 0..docs.view().len() as u32 {
            std::hint::black_box(maxsim::maxsim_naive(qv, docs.view().doc(d)));
        }
    }
    let naive_ms = t.elapsed().as_secs_f64() * 1e3 / lat_n.min(5) as f64;
    eprintln!("brute-force MaxSim: {exact_ms:.1} ms/query (blocked kernel), {naive_ms:.1} ms/query (one pair at a time)");

    // MUVERA.
    let params = FdeParams {
        k_sim: a.k_sim,
        d_proj: (a.d_proj > 0).then_some(a.d_proj),
        r_reps: a.r_reps,
        d_final: (a.d_final > 0).then_some(a.d_final),
        seed: 42,
        fill_empty: true,
    };
    let enc = FdeEncoder::new(dim, params)?;
    let t = Instant::now();
    let fdes = enc.encode_documents(docs.view());
    let fde_secs = t.elapsed().as_secs_f64();
    let od = enc.out_dim();
    let fv = Vectors::new(&fdes, od);
    let t = Instant::now();
    let pb = bar("HNSW over FDEs", docs.view().len() as u64);
    let hnsw_params = HnswParams::default();
    let g = Hnsw::build_with_progress(fv, Metric::Dot, hnsw_params, 42, &|n| pb.inc(n));
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
                let cands = g.search(fv, &qf, c, c, &AllRows);
                maxsim::search_rows(docs.view(), qv, 100, cands.iter().map(|n| n.id))
                    .iter()
                    .map(|n| n.id)
                    .collect()
            })
            .collect();
        let ms = t.elapsed().as_secs_f64() * 1e3 / nq as f64;
        let r10 = overlap(&found, &exact, 10);
        let r100 = overlap(&found, &exact, 100);
        let ndcg = ndcg_at(&sf, &found, 10);
        eprintln!("MUVERA candidates {c:>4}: recall@10 {r10:.4} recall@100 {r100:.4} (vs exact MaxSim), {ms:.2} ms/query, {:.1}x faster, nDCG@10 {ndcg:.4}", exact_ms / ms);
        sweep.push(json!({"candidates": c, "ef": c, "recall_at_10": r10, "recall_at_100": r100, "ms_per_query": ms, "speedup_vs_bruteforce": exact_ms / ms, "ndcg_at_10": ndcg}));
    }
    // Headline: the fewest candidates reaching recall@10 >= 0.95, else the best recall.
    let pick = sweep
        .iter()
        .find(|s| s["recall_at_10"].as_f64().unwrap_or(0.0) >= 0.95)
        .or_else(|| {
            sweep.iter().max_by(|x, y| {
                x["recall_at_10"]
                    .as_f64()
                    .unwrap_or(0.0)
                    .total_cmp(&y["recall_at_10"].as_f64().unwrap_or(0.0))
            })
        })
        .cloned()
        .unwrap_or(Value::Null);

    // PQ codes of the FDEs: an exact ADC scan over codes for candidates, then the MaxSim rerank.
    let mut pq_row = Value::Null;
    let mut pq_bytes = Value::Null;
    if a.pq_m > 0 {
        let c = pick["candidates"].as_u64().unwrap_or(200) as usize;
        let t = Instant::now();
        let pq = quiver_quant::Codec::train(
            quiver_quant::CodecSpec::Pq { m: a.pq_m },
            &fdes,
            od,
            Metric::Dot,
            42,
        )?;
        let codes = pq.encode_all(&fdes)?;
        let train_secs = t.elapsed().as_secs_f64();
        let t = Instant::now();
        let mut found = Vec::with_capacity(nq);
        for q in 0..nq as u32 {
            let qv = queries.view().doc(q);
            let qs = pq.query(&enc.encode_query(qv))?;
            let cands = qs.scan_topk(&codes, &AllRows, c);
            found.push(
                maxsim::search_rows(docs.view(), qv, 100, cands.iter().map(|n| n.id))
                    .iter()
                    .map(|n| n.id)
                    .collect::<Vec<u32>>(),
            );
        }
        let ms = t.elapsed().as_secs_f64() * 1e3 / nq as f64;
        let per_doc =
            pq.code_len() as f64 + pq.model_bytes() as f64 / docs.view().len().max(1) as f64;
        let (r10, r100) = (overlap(&found, &exact, 10), overlap(&found, &exact, 100));
        eprintln!("MUVERA PQ{} codes ({per_doc:.0} bytes/doc incl. codebooks, trained in {train_secs:.1}s), ADC scan of {c} candidates + rerank: recall@10 {r10:.4} recall@100 {r100:.4}, {ms:.2} ms/query", a.pq_m);
        pq_bytes = json!(per_doc);
        pq_row = json!({"m": a.pq_m, "candidates": c, "recall_at_10": r10, "recall_at_100": r100, "ms_per_query": ms, "speedup_vs_bruteforce": exact_ms / ms, "bytes_per_doc": per_doc, "code_bytes": pq.code_len(), "train_seconds": train_secs});
    }

    // Quality on SciFact.
    let dense_docs = dt.pooled();
    let dense_q = qt.pooled();
    let dv = Vectors::new(&dense_docs, dim);
    let dense_ranked: Vec<Vec<u32>> = dense_q
        .chunks_exact(dim)
        .map(|q| {
            quiver::flat::search(dv, Metric::Cosine, q, 10, &AllRows)
                .iter()
                .map(|n| n.id)
                .collect()
        })
        .collect();
    let ndcg_dense = ndcg_at(&sf, &dense_ranked, 10);
    let ndcg_exact = ndcg_at(&sf, &exact, 10);
    eprintln!("SciFact nDCG@10: single-vector {ndcg_dense:.4}, exact MaxSim {ndcg_exact:.4}");
    let docs_np = dt.sets(&|id, special| !special && !punct.contains(&id));
    let np_tokens = docs_np.view().total_vectors() as f64 / docs_np.view().len().max(1) as f64;
    let ndcg_np = ndcg_at(
        &sf,
        &exact_topk(&docs_np, &queries, 10, "MaxSim, punctuation dropped"),
        10,
    );
    eprintln!("  punctuation dropped ({np_tokens:.1} vectors/doc): nDCG@10 {ndcg_np:.4}");
    let mut prune_rows = Vec::new();
    let mut pruned_tokens = None;
    for (label, base) in [("kmeans", &docs), ("punctuation+kmeans", &docs_np)] {
        let t = Instant::now();
        match pruned(base, a.prune_fraction) {
            Ok(p) => {
                let secs = t.elapsed().as_secs_f64();
                let per = p.view().total_vectors() as f64 / p.view().len().max(1) as f64;
                let nd = ndcg_at(
                    &sf,
                    &exact_topk(&p, &queries, 10, &format!("MaxSim, {label}")),
                    10,
                );
                eprintln!("  {label} to {:.2} of the vectors ({per:.1} vectors/doc, {secs:.1}s): nDCG@10 {nd:.4} ({:+.4} vs exact)", a.prune_fraction, nd - ndcg_exact);
                if pruned_tokens.is_none() {
                    pruned_tokens = Some(per);
                }
                prune_rows.push(json!({"variant": label, "fraction": a.prune_fraction, "vectors_per_doc": per, "fraction_of_raw": per / raw_tokens, "ndcg_at_10": nd, "delta_vs_exact": nd - ndcg_exact, "seconds": secs}));
            }
            Err(e) => {
                eprintln!("  {label}: pruning unavailable: {e:#}");
                prune_rows.push(json!({"variant": label, "error": format!("{e:#}")}));
            }
        }
    }

    // LIMIT-small.
    let mut limit = Value::Null;
    if a.limit.as_os_str() != "none" {
        let lb = read_beir(&a.limit)?;
        let (ldt, lqt) = tokens_for(&lb, "limit-small", &model_name, &mut model, &load)?;
        let ld = ldt.sets(&|_, s| !s);
        let lq = lqt.sets(&|_, s| !s);
        let ranked = exact_topk(&ld, &lq, 10, "LIMIT-small MaxSim");
        let (r2, r10) = (recall_rel(&lb, &ranked, 2), recall_rel(&lb, &ranked, 10));
        let ldd = ldt.pooled();
        let ldv = Vectors::new(&ldd, dim);
        let dr: Vec<Vec<u32>> = lqt
            .pooled()
            .chunks_exact(dim)
            .map(|q| {
                quiver::flat::search(ldv, Metric::Cosine, q, 10, &AllRows)
                    .iter()
                    .map(|n| n.id)
                    .collect()
            })
            .collect();
        let (d2, d10) = (recall_rel(&lb, &dr, 2), recall_rel(&lb, &dr, 10));
        eprintln!("LIMIT-small recall@2 / @10: MaxSim {r2:.4} / {r10:.4}; single-vector {d2:.4} / {d10:.4}");
        limit = json!({"maxsim_recall_at_2": r2, "maxsim_recall_at_10": r10, "single_vector_recall_at_2": d2, "single_vector_recall_at_10": d10, "queries": lq.view().len(), "documents": ld.view().len()});
    }

    let bytes = |n: f64| n * dim as f64 * 4.0;
    let memory = json!({
        "raw_tokens_bytes_per_doc": bytes(raw_tokens),
        "pruned_bytes_per_doc": pruned_tokens.map(bytes),
        "punctuation_dropped_bytes_per_doc": bytes(np_tokens),
        "fde_f32_bytes_per_doc": od * 4,
        "fde_pq_bytes_per_doc": pq_bytes,
        "fde_hnsw_bytes_per_doc": g.stats().bytes as f64 / docs.view().len().max(1) as f64,
    });
    let out = json!({
        "dataset": "scifact", "model": model_name, "documents": docs.view().len(), "queries": nq, "dim": dim,
        "tokens_per_doc": raw_tokens,
        "muvera": {"k_sim": a.k_sim, "d_proj": a.d_proj, "r_reps": a.r_reps, "d_final": a.d_final, "fde_dim": od, "fde_seconds": fde_secs, "hnsw_seconds": build_secs, "hnsw": {"m": hnsw_params.m, "ef_construction": hnsw_params.ef_construction}},
        "bruteforce_ms_per_query": exact_ms, "bruteforce_naive_ms_per_query": naive_ms,
        "muvera_recall_at_10": pick["recall_at_10"], "muvera_recall_at_100": pick["recall_at_100"],
        "muvera_ms_per_query": pick["ms_per_query"], "speedup_vs_bruteforce": pick["speedup_vs_bruteforce"], "muvera_candidates": pick["candidates"],
        "sweep": sweep, "muvera_pq": pq_row,
        "ndcg_at_10": {"single_vector": ndcg_dense, "exact_maxsim": ndcg_exact, "muvera_rerank": pick["ndcg_at_10"], "punctuation_dropped": ndcg_np, "pruned": prune_rows},
        "limit_small": limit,
        "memory": memory,
    });
    if as_json {
        println!("{out}");
    } else {
        let mut so = std::io::stdout().lock();
        writeln!(so, "{}", serde_json::to_string_pretty(&out)?)?;
    }
    Ok(())
}
