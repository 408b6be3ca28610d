//! The plans `quiver bench codecs` measures, each a per-query closure over prepared arrays.
//!
//! ```text
//!  f32-flat / f32-hnsw                full vectors in RAM (the references)
//!  CODEC-flat(+rerankR)               scan codes in RAM -> top R -> exact f32 from the mmap'd file
//!  hnsw-CODEC+rerank efE              walk the f32-built graph with code scores -> top E -> exact
//!  pcaP-binary funnel R               binary codes of the PCA-rotated P-dim prefix -> top R,
//!                                     then prefixes 2P, 4P, ... from the mmap'd file, the list
//!                                     halving as the dimension doubles, then full dimension
//!  pcaP-hnsw funnel efE               HNSW over the f32 P-dim rotated prefix -> top E -> same funnel
//! ```

use super::{as_f32, graph_cached, mmap_f32, Data, Row};
use crate::error::Result;
use quiver::index::{rerank, TopK};
use quiver::linalg::{dot, Pca};
use quiver::quant::prefix::{prefix_all, prefix_into};
use quiver::quant::{Codec, CodecSpec, ScoreMode};
use quiver::{flat, AllRows, Metric, Neighbor, Vectors};
use std::time::Instant;

const K: usize = 10;

struct Ctx<'a> {
    d: &'a Data,
    reps: usize,
    wanted: &'a dyn Fn(&str) -> bool,
    emit: &'a mut dyn FnMut(Row),
}

impl Ctx<'_> {
    /// Times `search` over every query (one thread, best of `reps`) and emits the row.
    fn plan(
        &mut self,
        name: String,
        family: &'static str,
        (ram, disk): (f64, f64),
        mut search: impl FnMut(usize) -> Vec<Neighbor>,
    ) {
        let nq = self.d.nq;
        let truth = &self.d.gt10;
        self.measure(name, family, (ram, disk), truth, || {
            (0..nq).map(&mut search).collect()
        });
    }

    /// Times `answer_all` (every query's answer from one call; one thread, best of `reps`) and
    /// emits the row, recall measured against `truth`.
    fn measure(
        &mut self,
        name: String,
        family: &'static str,
        (ram, disk): (f64, f64),
        truth: &[Vec<u32>],
        mut answer_all: impl FnMut() -> Vec<Vec<Neighbor>>,
    ) {
        if !(self.wanted)(&name) {
            return;
        }
        let nq = self.d.nq;
        let mut best = f64::INFINITY;
        let mut found: Vec<Vec<Neighbor>> = Vec::new();
        for _ in 0..self.reps {
            let t = Instant::now();
            let res = answer_all();
            best = best.min(t.elapsed().as_secs_f64());
            found = res;
        }
        let hits: usize = found
            .iter()
            .zip(truth)
            .map(|(f, g)| f.iter().take(K).filter(|n| g.contains(&n.id)).count())
            .sum();
        (self.emit)(Row {
            plan: name,
            family,
            recall: hits as f64 / (K * nq) as f64,
            qps: nq as f64 / best,
            ram,
            disk,
        });
    }
}

/// Prefix dimensions of a funnel: `p0, 2·p0, 4·p0, ...` below `dim`, then `dim`.
fn stages(p0: usize, dim: usize) -> Vec<usize> {
    let mut s = Vec::new();
    let mut p = p0;
    while p < dim {
        s.push(p);
        p *= 2;
    }
    s.push(dim);
    s
}

/// The funnel after its first stage: `cands` (from the `p0`-dim stage) are re-scored on prefixes
/// `2·p0, 4·p0, ...` read from `full` (renormalised for cosine), the list halving per stage, and
/// finally at full dimension, returning the best `K`.
fn funnel_rest(
    full: Vectors<'_>,
    metric: Metric,
    q: &[f32],
    cands: &[Neighbor],
    p0: usize,
    scratch: &mut Vec<f32>,
) -> Vec<Neighbor> {
    let dim = full.dim();
    let mut ids: Vec<u32> = cands.iter().map(|c| c.id).collect();
    let mut keep = ids.len() / 2;
    for &p in stages(p0, dim).iter().skip(1) {
        if p == dim {
            break;
        }
        keep = keep.max(K);
        scratch.resize(p, 0.0);
        prefix_into(q, metric, scratch);
        ids.sort_unstable();
        let mut top = TopK::new(keep);
        for &id in &ids {
            let x = &full.row(id)[..p];
            let mut s = dot(scratch, x);
            if metric.normalizes() {
                let nx = dot(x, x).sqrt();
                if nx > 0.0 {
                    s /= nx;
                }
            }
            top.push(Neighbor { id, score: s });
        }
        ids = top.into_sorted().into_iter().map(|n| n.id).collect();
        keep /= 2;
    }
    let c: Vec<Neighbor> = ids.iter().map(|&id| Neighbor { id, score: 0.0 }).collect();
    rerank(full, metric, q, &c, K)
}

pub(super) fn run_all(
    d: &Data,
    reps: usize,
    wanted: &dyn Fn(&str) -> bool,
    emit: &mut dyn FnMut(Row),
) -> Result<()> {
    let mut cx = Ctx {
        d,
        reps,
        wanted,
        emit,
    };
    let (metric, dim, n) = (d.metric, d.dim, d.n);
    let fb = d.f32_bytes() as f64;
    let gb = d.graph.stats().bytes as f64 / n as f64;
    let vectors = Vectors::new(&d.base, dim);
    let full_map = mmap_f32(&d.dir.join("codecs-full.f32"), &d.base)?;
    let full = Vectors::new(as_f32(&full_map)?, dim);
    let big = n > 100_000;

    // References: exact scans (one query per call, and the whole batch per call as FAISS is
    // timed; unfiltered and with the 10% filter) and the f32 graph.
    let queries = Vectors::new(&d.queries, dim);
    cx.plan("f32-flat".into(), "f32-flat", (fb, 0.0), |qi| {
        flat::search(vectors, metric, d.query(qi), K, &AllRows)
    });
    cx.measure(
        "f32-flat batch".into(),
        "f32-flat",
        (fb, 0.0),
        &d.gt10,
        || flat::search_batch(vectors, metric, queries, K, &AllRows),
    );
    let (f10, gt_f10) = (&d.filter10, &d.gt10_filtered);
    cx.measure(
        "f32-flat filter10%".into(),
        "f32-flat-filter10",
        (fb, 0.0),
        gt_f10,
        || {
            (0..d.nq)
                .map(|qi| flat::search(vectors, metric, d.query(qi), K, f10))
                .collect()
        },
    );
    let name = "f32-flat batch filter10%";
    cx.measure(name.into(), "f32-flat-filter10", (fb, 0.0), gt_f10, || {
        flat::search_batch(vectors, metric, queries, K, f10)
    });
    for ef in [10, 16, 24, 32, 48, 64, 96, 128, 192, 256] {
        cx.plan(
            format!("f32-hnsw ef{ef}"),
            "f32-hnsw",
            (fb + gb, 0.0),
            |qi| d.graph.search(vectors, d.query(qi), K, ef, &AllRows),
        );
    }

    // Codecs over the full vector: flat scans, then exact rerank from the mmap'd file.
    let specs = [
        CodecSpec::Int8,
        CodecSpec::Binary,
        CodecSpec::Pq { m: dim / 2 },
        CodecSpec::Pq { m: dim / 4 },
    ];
    let mut trained: Vec<(Codec, Vec<u8>)> = Vec::new();
    for spec in specs {
        // Trained even when --only skips its plans: cheap next to the scans (PQ takes seconds).
        let t = Instant::now();
        let codec = Codec::train(spec, &d.base, dim, metric, d.seed)?;
        let codes = codec.encode_all(&d.base)?;
        eprintln!(
            "{}: {} trained and encoded in {:.1}s ({} B/code)",
            d.name,
            spec.name(),
            t.elapsed().as_secs_f64(),
            codec.code_len()
        );
        trained.push((codec, codes));
    }
    for (codec, codes) in &trained {
        let ram = codec.code_len() as f64 + codec.model_bytes() as f64 / n as f64;
        let modes: &[(ScoreMode, &str, &[usize])] = match codec.spec() {
            CodecSpec::Int8 => &[(ScoreMode::Asymmetric, "int8", &[10, 20, 40])],
            CodecSpec::Binary if big => &[
                (
                    ScoreMode::Symmetric,
                    "binary-hamming",
                    &[100, 400, 1600, 6400],
                ),
                (
                    ScoreMode::Asymmetric,
                    "binary-asym",
                    &[100, 400, 1600, 6400],
                ),
            ],
            CodecSpec::Binary => &[
                (ScoreMode::Symmetric, "binary-hamming", &[50, 100, 200, 400]),
                (ScoreMode::Asymmetric, "binary-asym", &[25, 50, 100, 200]),
            ],
            CodecSpec::Pq { .. } => &[(ScoreMode::Asymmetric, "pq", &[10, 50, 100, 200])],
        };
        for &(mode, fam, rs) in modes {
            let label = if fam == "pq" {
                codec.spec().name()
            } else {
                fam.to_string()
            };
            for &r in rs {
                let (name, disk) = if r == K {
                    (format!("{label}-flat"), 0.0)
                } else {
                    (format!("{label}-flat+rerank{r}"), fb)
                };
                cx.plan(name, family(fam), (ram, disk), |qi| {
                    let q = d.query(qi);
                    let Ok(s) = codec.query_with(q, mode) else {
                        return Vec::new();
                    };
                    let short = s.scan_topk(codes, &AllRows, r);
                    if r == K {
                        short
                    } else {
                        rerank(full, metric, q, &short, K)
                    }
                });
            }
        }
    }

    // The f32-built graph walked with code scores, then exact rerank.
    for (codec, codes) in &trained {
        if codec.spec() == (CodecSpec::Pq { m: dim / 4 }) {
            continue;
        }
        let ram = codec.code_len() as f64 + gb + codec.model_bytes() as f64 / n as f64;
        let label = match codec.spec() {
            CodecSpec::Binary => "binary-asym".to_string(),
            s => s.name(),
        };
        for ef in [16, 32, 64, 128, 256] {
            cx.plan(
                format!("hnsw-{label}+rerank ef{ef}"),
                "hnsw-codes",
                (ram, fb),
                |qi| {
                    let q = d.query(qi);
                    let Ok(s) = codec.query(q) else {
                        return Vec::new();
                    };
                    let short = d.graph.search_by(&s.over(codes), ef, ef, &AllRows);
                    rerank(full, metric, q, &short, K)
                },
            );
        }
    }

    funnels(&mut cx, &full, big)
}

fn family(fam: &str) -> &'static str {
    match fam {
        "int8" => "int8",
        "binary-hamming" => "binary-hamming",
        "binary-asym" => "binary-asym",
        _ => "pq",
    }
}

/// Matryoshka/PCA funnels on the rotated vectors (the one stored vector, rotated at seal time).
fn funnels(cx: &mut Ctx<'_>, raw_full: &Vectors<'_>, big: bool) -> Result<()> {
    let d = cx.d;
    let (metric, dim, n) = (d.metric, d.dim, d.n);
    if !(cx.wanted)("funnel") || dim < 32 {
        return Ok(());
    }
    let fb = d.f32_bytes() as f64;
    let t = Instant::now();
    let pca = Pca::fit(&d.base, dim, 50_000, d.seed)?;
    let rb = pca.apply_all(&d.base);
    let rq = pca.apply_all(&d.queries);
    let map = mmap_f32(&d.dir.join("codecs-full-pca.f32"), &rb)?;
    let full = Vectors::new(as_f32(&map)?, dim);
    let p0 = if dim >= 256 { 64 } else { 16 };
    eprintln!(
        "{}: PCA fitted and applied in {:.1}s; first {p0} of {dim} axes carry {:.1}% of the variance",
        d.name,
        t.elapsed().as_secs_f64(),
        100.0 * pca.explained(p0)
    );
    let rquery = |qi: usize| &rq[qi * dim..(qi + 1) * dim];
    let stage_names = stages(p0, dim)
        .iter()
        .map(|p| p.to_string())
        .collect::<Vec<_>>()
        .join(">");
    let r0s: &[usize] = if big {
        &[400, 800, 1600, 3200]
    } else {
        &[50, 100, 200, 400]
    };

    // Binary codes of the PCA-rotated prefix (and, for contrast, of the raw prefix).
    for (tag, base, vecs, rot) in [("pca", &rb, &full, true), ("raw", &d.base, raw_full, false)] {
        let pre = prefix_all(base, dim, p0, metric)?;
        let codec = Codec::train(CodecSpec::Binary, &pre, p0, metric, d.seed)?;
        let codes = codec.encode_all(&pre)?;
        let ram = codec.code_len() as f64 + codec.model_bytes() as f64 / n as f64;
        let list: &[usize] = if rot { r0s } else { &r0s[r0s.len() - 1..] };
        let modes: &[(ScoreMode, &str)] = if rot {
            &[
                (ScoreMode::Asymmetric, "binary"),
                (ScoreMode::Symmetric, "hamming"),
            ]
        } else {
            &[(ScoreMode::Asymmetric, "binary")]
        };
        for &(mode, mname) in modes {
            for &r0 in list {
                let mut qp = vec![0.0f32; p0];
                let mut scratch = Vec::new();
                cx.plan(
                    format!("{tag}{p0}-{mname} funnel {stage_names} R{r0}"),
                    "funnel",
                    (ram, fb),
                    |qi| {
                        let q = if rot { rquery(qi) } else { d.query(qi) };
                        prefix_into(q, metric, &mut qp);
                        let Ok(s) = codec.query_with(&qp, mode) else {
                            return Vec::new();
                        };
                        let short = s.scan_topk(&codes, &AllRows, r0);
                        funnel_rest(*vecs, metric, q, &short, p0, &mut scratch)
                    },
                );
            }
        }
    }

    // HNSW over the f32 rotated prefix, then the funnel.
    let pre = prefix_all(&rb, dim, p0, metric)?;
    let params = d.params;
    let g = graph_cached(
        &d.dir.join(format!(
            "codecs-hnsw-pca{p0}-m{}-efc{}-s{}.bin",
            params.m, params.ef_construction, d.seed
        )),
        &pre,
        p0,
        params,
        d.seed,
        "HNSW prefix build",
    )?;
    let gbp = g.stats().bytes as f64 / n as f64;
    let pv = Vectors::new(&pre, p0);
    for ef in [16, 32, 64, 128, 256] {
        let mut qp = vec![0.0f32; p0];
        let mut scratch = Vec::new();
        cx.plan(
            format!("pca{p0}-hnsw funnel {stage_names} ef{ef}"),
            "funnel-hnsw",
            (4.0 * p0 as f64 + gbp, fb),
            |qi| {
                let q = rquery(qi);
                prefix_into(q, metric, &mut qp);
                let short = g.search(pv, &qp, ef, ef, &AllRows);
                funnel_rest(full, metric, q, &short, p0, &mut scratch)
            },
        );
    }
    Ok(())
}
