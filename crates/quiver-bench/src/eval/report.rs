//! What `quiver eval` reports: per-mode figures as JSON (`--json`) or a table, run files and
//! per-query values, latency percentiles and index sizes.

use super::{Mode, Setup, DENSE_FIELD};
use crate::error::{Context, Result};
use quiver::{Collection, Database};
use quiver_eval::beir::BeirDataset;
use quiver_eval::metrics::{Evaluation, Run};
use serde_json::{json, Map, Value};
use std::path::Path;

/// One mode's measured quality and cost.
pub(crate) struct ModeReport {
    pub(crate) mode: Mode,
    pub(crate) eval: Evaluation,
    pub(crate) latencies_ms: Vec<f64>,
    pub(crate) query_embed_ms: f64,
    pub(crate) index_bytes: Option<usize>,
}

/// Prints the reports: one JSON object (one mode's row, or the header with a `sweep` array of
/// rows), or the table.
pub(crate) fn print(head: &Header, reports: &[ModeReport], as_json: bool, sweep: bool) {
    if !as_json {
        print_table(head, reports);
        return;
    }
    let rows: Vec<Value> = reports.iter().map(|r| report_json(head, r)).collect();
    if sweep {
        let mut o = header_json(head);
        o.insert("sweep".into(), Value::Array(rows));
        println!("{}", Value::Object(o));
    } else if let Some(row) = rows.into_iter().next() {
        println!("{row}");
    }
}

/// Bytes of the structures `mode` searches, from the collection's own figures (`collection
/// info`): f32 vectors, plus HNSW graphs for graph search, codes for the funnel; for BM25 the
/// bytes of the sealed tantivy indexes (memory-mapped), read from the segment folders.
pub(crate) fn index_bytes(c: &Collection, db: &Database, name: &str, mode: Mode) -> Option<usize> {
    let info = c.info();
    let d = info.dense.iter().find(|d| d.field == DENSE_FIELD);
    let text = || text_index_bytes(&db.path().join("collections").join(name));
    Some(match mode {
        Mode::Dense => d?.ram_vectors + d?.ram_graph,
        Mode::DenseExact => d?.ram_vectors,
        Mode::Funnel => d?.ram_vectors + d?.ram_codes,
        Mode::Bm25 => text()?,
        Mode::Hybrid => d?.ram_vectors + d?.ram_graph + text()?,
    })
}

/// Total size of the `text.*` folders of every sealed segment under `collection_dir`.
fn text_index_bytes(collection_dir: &Path) -> Option<usize> {
    fn size(p: &Path) -> usize {
        match std::fs::metadata(p) {
            Ok(m) if m.is_dir() => std::fs::read_dir(p)
                .map(|rd| rd.filter_map(|e| e.ok()).map(|e| size(&e.path())).sum())
                .unwrap_or(0),
            Ok(m) => m.len() as usize,
            Err(_) => 0,
        }
    }
    let mut total = 0;
    for seg in std::fs::read_dir(collection_dir.join("segments")).ok()? {
        let seg = seg.ok()?.path();
        for e in std::fs::read_dir(&seg).ok()?.filter_map(|e| e.ok()) {
            if e.file_name().to_string_lossy().starts_with("text.") {
                total += size(&e.path());
            }
        }
    }
    Some(total)
}

/// Peak resident memory of this process (Linux `VmHWM`), model weights included.
pub(crate) fn peak_rss_bytes() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

pub(crate) fn write_run(path: &Path, run: &Run, mode: Mode) -> Result<()> {
    let is_json = path.extension().is_some_and(|e| e == "json");
    let mut buf = Vec::new();
    if is_json {
        let mut o = Map::new();
        let mut qs: Vec<&String> = run.keys().collect();
        qs.sort();
        for q in qs {
            let docs: Map<String, Value> = run[q]
                .iter()
                .map(|s| (s.doc.clone(), json!(s.score)))
                .collect();
            o.insert(q.clone(), Value::Object(docs));
        }
        serde_json::to_writer(&mut buf, &Value::Object(o))?;
    } else {
        quiver_eval::metrics::write_trec_run(&mut buf, run, &format!("quiver-{}", mode.name()))
            .with_context(|| format!("writing run file {}", path.display()))?;
    }
    std::fs::write(path, buf).with_context(|| format!("writing {}", path.display()))
}

pub(crate) fn write_per_query(path: &Path, eval: &Evaluation) -> Result<()> {
    let o: Map<String, Value> = eval
        .per_query
        .iter()
        .map(|(q, vals)| {
            let m: Map<String, Value> = eval
                .measures
                .iter()
                .zip(vals)
                .map(|(m, v)| (m.to_string(), json!(v)))
                .collect();
            (q.clone(), Value::Object(m))
        })
        .collect();
    std::fs::write(path, Value::Object(o).to_string())
        .with_context(|| format!("writing {}", path.display()))
}

/// What every row shares: the dataset, the model, the setup.
pub(crate) struct Header<'a> {
    pub(crate) ds: &'a BeirDataset,
    pub(crate) model: Option<&'a str>,
    pub(crate) depth: usize,
    pub(crate) setup: &'a Setup,
    pub(crate) rss_peak_bytes: Option<u64>,
}

/// Nearest-rank percentile of sorted values.
fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

struct Latency {
    mean: f64,
    p50: f64,
    p99: f64,
}

fn latency(ms: &[f64]) -> Latency {
    let mut s = ms.to_vec();
    s.sort_by(f64::total_cmp);
    Latency {
        mean: s.iter().sum::<f64>() / s.len().max(1) as f64,
        p50: percentile(&s, 50.0),
        p99: percentile(&s, 99.0),
    }
}

fn header_json(h: &Header) -> Map<String, Value> {
    let s = h.setup;
    let mut o = Map::new();
    o.insert("dataset".into(), json!(h.ds.name));
    o.insert("model".into(), json!(h.model));
    o.insert("queries".into(), json!(h.ds.queries.len()));
    o.insert("documents".into(), json!(h.ds.corpus.len()));
    o.insert(
        "skipped_empty_documents".into(),
        json!(h.setup.skipped_empty),
    );
    o.insert("depth".into(), json!(h.depth));
    o.insert(
        "setup".into(),
        json!({"load_s": s.load_s, "embed_corpus_s": s.embed_corpus_s, "embed_cached": s.embed_cached,
               "ingest_s": s.ingest_s, "reused_collection": s.reused_collection,
               "embed_queries_s": s.embed_queries_s}),
    );
    o.insert("rss_peak_bytes".into(), json!(h.rss_peak_bytes));
    o
}

fn report_json(h: &Header, r: &ModeReport) -> Value {
    let mut o = header_json(h);
    o.insert("mode".into(), json!(r.mode.name()));
    for (m, v) in r.eval.measures.iter().zip(&r.eval.mean) {
        o.insert(m.to_string(), json!(v));
    }
    let l = latency(&r.latencies_ms);
    o.insert(
        "timings".into(),
        json!({"latency_ms": {"mean": l.mean, "p50": l.p50, "p99": l.p99},
               "query_embed_ms": r.query_embed_ms,
               "queries_s": r.latencies_ms.iter().sum::<f64>() / 1e3}),
    );
    o.insert("index_bytes".into(), json!(r.index_bytes));
    Value::Object(o)
}

fn print_table(h: &Header, reports: &[ModeReport]) {
    let s = h.setup;
    println!(
        "{}: {} judged queries ({} unjudged not evaluated), {} documents{}, depth {}{}",
        h.ds.name,
        h.ds.queries.len(),
        h.ds.unjudged_queries,
        h.ds.corpus.len(),
        if s.skipped_empty > 0 {
            format!(" ({} without text left out)", s.skipped_empty)
        } else {
            String::new()
        },
        h.depth,
        h.model.map(|m| format!(", model {m}")).unwrap_or_default()
    );
    let collection = if s.reused_collection {
        "collection reused".to_string()
    } else {
        format!("ingest {:.1}s", s.ingest_s)
    };
    println!(
        "setup: load {:.1}s, embed corpus {:.1}s{}, {collection}, embed queries {:.1}s{}",
        s.load_s,
        s.embed_corpus_s,
        if s.embed_cached { " (cached)" } else { "" },
        s.embed_queries_s,
        h.rss_peak_bytes
            .map(|b| format!(", peak RSS {:.0} MB", b as f64 / 1e6))
            .unwrap_or_default()
    );
    let Some(first) = reports.first() else {
        return;
    };
    let mut line = format!("{:<14}", "mode");
    for m in &first.eval.measures {
        line.push_str(&format!(" {:>10}", m.to_string()));
    }
    line.push_str(&format!(
        " | {:>8} {:>8} {:>8} {:>9} {:>9}",
        "mean ms", "p50 ms", "p99 ms", "+embed ms", "index MB"
    ));
    println!("{line}");
    for r in reports {
        let mut line = format!("{:<14}", r.mode.name());
        for v in &r.eval.mean {
            line.push_str(&format!(" {v:>10.4}"));
        }
        let l = latency(&r.latencies_ms);
        line.push_str(&format!(
            " | {:>8.3} {:>8.3} {:>8.3} {:>9.2} {:>9}",
            l.mean,
            l.p50,
            l.p99,
            r.query_embed_ms,
            r.index_bytes
                .map(|b| format!("{:.1}", b as f64 / 1e6))
                .unwrap_or_else(|| "-".into())
        ));
        println!("{line}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 50.0), 50.0);
        assert_eq!(percentile(&v, 99.0), 99.0);
        assert_eq!(percentile(&v, 100.0), 100.0);
        assert_eq!(percentile(&[3.0], 99.0), 3.0);
    }
}
