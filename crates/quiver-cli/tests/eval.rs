//! `quiver eval` end to end: metrics of real runs against pytrec_eval, reproduction of published
//! quality figures, collection reuse and input errors.
//!
//! Needs ../shared/data (BEIR sets), the models and the pytrec_eval venv that `./x setup` makes
//! (all-MiniLM-L6-v2, potion-base-8M); without them the tests fail naming `./x setup`. Corpus
//! embeddings are cached under ~/.cache/quiver/eval, so only the first run on a machine pays for
//! embedding SciFact with MiniLM.

mod common;
#[path = "../../quiver-eval/tests/support/pytrec.rs"]
mod pytrec;

use common::require_model;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_quiver");

fn data(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/data")
        .join(name)
}

/// Runs `quiver eval ARGS --json` and returns its JSON object.
fn eval(db: &Path, args: &[&str]) -> Value {
    let out = Command::new(BIN)
        .arg("--db")
        .arg(db)
        .arg("eval")
        .args(args)
        .arg("--json")
        .output()
        .expect("run quiver");
    assert!(
        out.status.success(),
        "quiver eval {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let v: Value = serde_json::from_str(stdout.lines().last().unwrap_or(""))
        .unwrap_or_else(|e| panic!("not JSON ({e}): {stdout}"));
    eprintln!("quiver eval {args:?}: {v}");
    v
}

fn qrels_json(dir: &Path) -> Value {
    let q = quiver_eval::beir::read_qrels(&dir.join("qrels/test.tsv")).expect("qrels");
    let mut o: Map<String, Value> = Map::new();
    for (qid, doc, level) in q.pairs() {
        o.entry(qid.to_string())
            .or_insert_with(|| json!({}))
            .as_object_mut()
            .expect("object")
            .insert(doc.to_string(), json!(level));
    }
    Value::Object(o)
}

fn read_json(p: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(p).expect("read")).expect("JSON")
}

/// A real Quiver run (potion-base-8M, exact dense search) over SciFact and over Cranfield (graded
/// judgements 1–4): every measure of every query, and the means, agree with pytrec_eval to 1e-4.
#[test]
fn metrics_agree_with_pytrec_eval_on_real_runs() {
    let python = pytrec::python();
    require_model("potion-base-8M");
    let tmp = tempfile::tempdir().expect("tempdir");
    let names: Vec<String> = [
        "ndcg@10",
        "ndcg@100",
        "recall@2",
        "recall@10",
        "recall@100",
        "p@1",
        "p@10",
        "map@10",
        "map@100",
        "mrr@10",
        "mrr@100",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    for set in ["scifact", "cranfield"] {
        let dir = data(set);
        let run_file = tmp.path().join(format!("{set}-run.json"));
        let per_query = tmp.path().join(format!("{set}-per-query.json"));
        let v = eval(
            &tmp.path().join("db"),
            &[
                dir.to_str().expect("path"),
                "--model",
                "potion-base-8M",
                "--mode",
                "dense-exact",
                "--metrics",
                &names.join(","),
                "--run-file",
                run_file.to_str().expect("path"),
                "--per-query",
                per_query.to_str().expect("path"),
            ],
        );
        let ours = match read_json(&per_query) {
            Value::Object(m) => m,
            other => panic!("per-query file: {other}"),
        };
        let oracle_dir = tmp.path().join(set);
        std::fs::create_dir_all(&oracle_dir).expect("mkdir");
        let oracle = pytrec::evaluate(
            &python,
            &oracle_dir,
            &qrels_json(&dir),
            &read_json(&run_file),
            &names,
        );
        assert_eq!(ours.len() as u64, v["queries"].as_u64().expect("queries"));
        assert_eq!(oracle.len(), ours.len(), "every judged query has results");
        let worst = pytrec::assert_agree(&ours, &oracle, &names, 1e-4);
        for m in &names {
            let mean = oracle
                .values()
                .map(|q| q[m].as_f64().expect("value"))
                .sum::<f64>()
                / oracle.len() as f64;
            let printed = v[m].as_f64().expect("metric in --json");
            assert!(
                (printed - mean).abs() <= 1e-4,
                "{set} {m}: --json {printed} vs pytrec_eval {mean}"
            );
        }
        eprintln!(
            "{set}: {} queries x {} measures agree with pytrec_eval; largest difference {worst:.2e}",
            ours.len(),
            names.len()
        );
    }
}

fn row<'a>(sweep: &'a Value, mode: &str) -> &'a Value {
    sweep["sweep"]
        .as_array()
        .and_then(|rows| rows.iter().find(|r| r["mode"] == json!(mode)))
        .unwrap_or_else(|| panic!("no {mode} row in {sweep}"))
}

fn metric(sweep: &Value, mode: &str, m: &str) -> f64 {
    row(sweep, mode)[m]
        .as_f64()
        .unwrap_or_else(|| panic!("{mode} {m} missing"))
}

/// One query's list in a run file ({"query": {"doc": score}}); empty when the query is absent.
fn query_list<'a>(run: &'a Map<String, Value>, q: &str) -> &'a Map<String, Value> {
    static EMPTY: std::sync::OnceLock<Map<String, Value>> = std::sync::OnceLock::new();
    run.get(q)
        .and_then(Value::as_object)
        .unwrap_or_else(|| EMPTY.get_or_init(Map::new))
}

/// The two best documents of one run-file list (score descending, then id), as a sorted set.
fn top2(list: &Map<String, Value>) -> Vec<&String> {
    let mut v: Vec<(&String, f64)> = list
        .iter()
        .map(|(d, s)| (d, s.as_f64().expect("score")))
        .collect();
    v.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(b.0)));
    let mut t: Vec<&String> = v.into_iter().take(2).map(|x| x.0).collect();
    t.sort();
    t
}

/// Z-score fusion computed by hand from its definition (quiver_query::fusion's module doc): each
/// list's scores become `(s - mean) / sd` (population sd; a list of equal scores gives 0), a
/// document missing from a list gets that list's lowest z, and the fused score is `Σ w_i z_i`.
/// `lists` holds one query's {doc: score} per source, with the source's weight.
fn zscore_by_hand(lists: &[(&Map<String, Value>, f64)]) -> BTreeMap<String, f64> {
    let mut normed = Vec::new();
    for (list, w) in lists {
        let s: Vec<(&String, f64)> = list
            .iter()
            .map(|(d, v)| (d, v.as_f64().expect("score")))
            .collect();
        let n = s.len() as f64;
        let mean = s.iter().map(|x| x.1).sum::<f64>() / n;
        let sd = (s.iter().map(|x| (x.1 - mean).powi(2)).sum::<f64>() / n).sqrt();
        let z: BTreeMap<&String, f64> = s
            .iter()
            .map(|&(d, x)| (d, if sd > 0.0 { (x - mean) / sd } else { 0.0 }))
            .collect();
        let missing = z.values().copied().fold(f64::INFINITY, f64::min);
        let missing = if missing.is_finite() { missing } else { 0.0 };
        normed.push((z, missing, *w));
    }
    let docs: std::collections::BTreeSet<&String> =
        lists.iter().flat_map(|(l, _)| l.keys()).collect();
    docs.into_iter()
        .map(|d| {
            let fused = normed
                .iter()
                .map(|(z, missing, w)| w * z.get(d).copied().unwrap_or(*missing))
                .sum();
            (d.clone(), fused)
        })
        .collect()
}

/// Published quality, reproduced with every mode of one sweep per dataset (all-MiniLM-L6-v2):
/// SciFact nDCG@10 — BM25 0.665 (BEIR) to 0.679 (Pyserini) within 0.01, MiniLM 0.645 (MTEB)
/// within 0.005 (exact search, so the figure is the model's); LIMIT-small recall@2 — BM25 >= 0.97
/// (paper 0.978), MiniLM 0.162 (sentence-transformers, see ../shared/data/README.md) within 0.01.
/// The funnel preset (binary -> int8 -> f32) must stay within 0.005 nDCG@10 of exact dense search
/// on SciFact.
///
/// Hybrid must add to its sources, not just reproduce one of them. On SciFact (default RRF, k 60)
/// it must beat the best single source by 0.02 nDCG@10: measured dense 0.6451, BM25 0.6777,
/// hybrid 0.7193, a gain of 0.042; 0.02 is under half of it, and a hybrid that returned either
/// list alone scores a gain of 0 and fails. On LIMIT-small, MiniLM is close to noise (0.162), so
/// hybrid (z-score fusion, BM25 weighted 2) is not expected to beat BM25; 0.98 recall@2 is the
/// benchmark's target, printed, not a test floor. What is asserted there is that the hybrid run is
/// exactly the z-score fusion of the dense and the BM25 runs, computed here by hand from their run
/// files: a hybrid that dropped or mis-normalised the dense list gives other scores and fails.
#[test]
fn published_quality_is_reproduced() {
    require_model("all-MiniLM-L6-v2");
    let tmp = tempfile::tempdir().expect("tempdir");
    let db = tmp.path().join("db");
    let sf = data("scifact");
    let v = eval(&db, &[sf.to_str().expect("path"), "--sweep"]);
    assert_eq!(v["queries"], json!(300));
    for mode in ["dense", "dense-exact", "bm25", "hybrid", "funnel"] {
        eprintln!(
            "SciFact {mode:<12} nDCG@10 {:.4}",
            metric(&v, mode, "ndcg@10")
        );
    }
    let dense = metric(&v, "dense-exact", "ndcg@10");
    assert!((dense - 0.645).abs() <= 0.005, "MiniLM nDCG@10 {dense}");
    let bm25 = metric(&v, "bm25", "ndcg@10");
    assert!((0.655..=0.689).contains(&bm25), "BM25 nDCG@10 {bm25}");
    let best_source = dense.max(metric(&v, "dense", "ndcg@10")).max(bm25);
    let hybrid = metric(&v, "hybrid", "ndcg@10");
    eprintln!(
        "SciFact hybrid gain over the best source: {:+.4} nDCG@10 (asserted >= 0.02)",
        hybrid - best_source
    );
    assert!(
        hybrid - best_source >= 0.02,
        "hybrid nDCG@10 {hybrid} adds less than 0.02 to the best source {best_source}"
    );
    let funnel = metric(&v, "funnel", "ndcg@10");
    assert!(
        dense - funnel <= 0.005,
        "funnel nDCG@10 {funnel} vs exact {dense}"
    );

    let limit = data("limit-small");
    let fusion = ["--fusion", "zscore", "--bm25-weight", "2"];
    let mut args = vec![limit.to_str().expect("path"), "--sweep"];
    args.extend_from_slice(&fusion);
    let v = eval(&db, &args);
    for mode in ["dense", "dense-exact", "bm25", "hybrid", "funnel"] {
        eprintln!(
            "LIMIT-small {mode:<12} recall@2 {:.4}",
            metric(&v, mode, "recall@2")
        );
    }
    let dense = metric(&v, "dense-exact", "recall@2");
    assert!((dense - 0.162).abs() <= 0.01, "MiniLM recall@2 {dense}");
    let bm25 = metric(&v, "bm25", "recall@2");
    assert!(bm25 >= 0.97, "BM25 recall@2 {bm25}");
    let hybrid = metric(&v, "hybrid", "recall@2");
    eprintln!(
        "LIMIT-small hybrid recall@2 {hybrid:.4} (benchmark target 0.98, BM25 {bm25:.4}; not a test floor)"
    );

    // The hybrid run against z-score fusion by hand. -k 100 makes the dense and BM25 runs the
    // very candidate lists hybrid fuses (it takes max(depth, 100) from each source).
    let runs = tmp.path().join("runs");
    std::fs::create_dir_all(&runs).expect("mkdir");
    let run_of = |mode: &str| -> Map<String, Value> {
        let path = runs.join(format!("{mode}.json"));
        let mut args = vec![
            limit.to_str().expect("path"),
            "--mode",
            mode,
            "-k",
            "100",
            "--run-file",
            path.to_str().expect("path"),
        ];
        args.extend_from_slice(&fusion);
        eval(&db, &args);
        match read_json(&path) {
            Value::Object(m) => m,
            other => panic!("{mode} run file: {other}"),
        }
    };
    let (dense_run, bm25_run, hybrid_run) = (run_of("dense"), run_of("bm25"), run_of("hybrid"));
    assert_eq!(hybrid_run.len(), 1000, "one hybrid list per judged query");
    let (mut worst, mut top2_differs) = (0.0f64, 0);
    for (q, got) in &hybrid_run {
        let got = got.as_object().expect("hybrid list");
        let want = zscore_by_hand(&[
            (query_list(&dense_run, q), 1.0),
            (query_list(&bm25_run, q), 2.0),
        ]);
        let got_docs: std::collections::BTreeSet<&String> = got.keys().collect();
        let want_docs: std::collections::BTreeSet<&String> = want.keys().collect();
        assert_eq!(got_docs, want_docs, "query {q}: hybrid documents");
        for (d, w) in &want {
            let g = got[d].as_f64().expect("score");
            worst = worst.max((g - w).abs());
            assert!(
                (g - w).abs() <= 1e-5,
                "query {q}, {d}: hybrid {g} vs by hand {w}"
            );
        }
        if top2(got) != top2(query_list(&bm25_run, q)) {
            top2_differs += 1;
        }
    }
    eprintln!(
        "LIMIT-small hybrid = z-score fusion by hand over {} queries (largest difference {worst:.2e}); top 2 differs from BM25's on {top2_differs} queries",
        hybrid_run.len()
    );
    // A hybrid whose fused scores were a monotone function of BM25's alone would rank every
    // query's top 2 as BM25 does (measured: 38 of 1000 queries differ).
    assert!(
        top2_differs > 0,
        "hybrid ranks every query's top 2 as BM25 does: the dense list has no effect"
    );
}

/// A named collection is kept and reused when it matches; the graph search and the exact scan
/// give the same quality on a small set; the sweep lists every mode.
#[test]
fn named_collection_is_reused_and_sweep_lists_modes() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let db = tmp.path().join("db");
    let adi = data("adi");
    let args = [
        adi.to_str().expect("path"),
        "--model",
        "potion-base-8M",
        "--collection",
        "adi",
    ];
    let first = eval(&db, &args);
    assert_eq!(first["setup"]["reused_collection"], json!(false));
    let second = eval(&db, &args);
    assert_eq!(second["setup"]["reused_collection"], json!(true));
    assert_eq!(first["ndcg@10"], second["ndcg@10"]);
    assert_eq!(second["documents"], json!(82));

    let sweep = eval(
        &db,
        &[
            adi.to_str().expect("path"),
            "--model",
            "potion-base-8M",
            "--sweep",
        ],
    );
    let rows = sweep["sweep"].as_array().expect("rows");
    let modes: Vec<&str> = rows.iter().filter_map(|r| r["mode"].as_str()).collect();
    assert!(
        modes.contains(&"dense") && modes.contains(&"dense-exact"),
        "{modes:?}"
    );
    for r in rows {
        assert!(r["ndcg@10"].as_f64().is_some(), "{r}");
        assert!(r["timings"]["latency_ms"]["p99"].as_f64().is_some(), "{r}");
    }
    // 82 documents: the HNSW graph finds the exact neighbours.
    assert_eq!(rows[0]["ndcg@10"], rows[1]["ndcg@10"]);
}

#[test]
fn bad_input_is_named() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let run = |args: &[&str]| {
        let out = Command::new(BIN)
            .arg("--db")
            .arg(tmp.path().join("db"))
            .arg("eval")
            .args(args)
            .output()
            .expect("run quiver");
        assert!(!out.status.success(), "{args:?} should fail");
        String::from_utf8_lossy(&out.stderr).to_string()
    };
    let adi = data("adi");
    let e = run(&[adi.to_str().expect("path"), "--mode", "telepathy"]);
    assert!(e.contains("telepathy") && e.contains("dense-exact"), "{e}");
    let e = run(&[adi.to_str().expect("path"), "--metrics", "ndcg@0"]);
    assert!(e.contains("ndcg@0"), "{e}");
    let missing = tmp.path().join("nowhere");
    let e = run(&[missing.to_str().expect("path")]);
    assert!(e.contains("corpus.jsonl"), "{e}");

    // A dataset with a malformed qrels line: the file and line are named.
    let bad = tmp.path().join("bad");
    std::fs::create_dir_all(bad.join("qrels")).expect("mkdir");
    std::fs::write(
        bad.join("corpus.jsonl"),
        "{\"_id\": \"d1\", \"text\": \"x\"}\n",
    )
    .expect("w");
    std::fs::write(
        bad.join("queries.jsonl"),
        "{\"_id\": \"q1\", \"text\": \"x\"}\n",
    )
    .expect("w");
    std::fs::write(
        bad.join("qrels/test.tsv"),
        "query-id\tcorpus-id\tscore\nq1\td1\n",
    )
    .expect("w");
    let e = run(&[bad.to_str().expect("path")]);
    assert!(e.contains("test.tsv:2"), "{e}");
}
