//! Runs `pytrec_eval` (PyPI `pytrec-eval-terrier`, which wraps trec_eval's C code) as the oracle
//! for Quiver's metrics. Shared by the quiver-eval and quiver-cli test suites.
//!
//! The Python interpreter is `$QUIVER_PYTREC_PYTHON`, else `~/.cache/quiver/eval-venv/bin/python`
//! when it exists (`.ci/run` creates that venv and sets the variable). Without either, the test
//! fails under CI (`CI` set) and is skipped with a printed message elsewhere.

#![allow(dead_code)]

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The oracle script: argv = qrels.json run.json measures.json; prints {query: {measure: value}}.
/// `mrr@k` is trec_eval's `recip_rank` on the run cut to its top k in trec_eval's order (score as
/// f32 descending, then document id descending); every other measure is trec_eval's own cut-off
/// measure. Queries pytrec_eval leaves out (no run) are absent from the output.
const SCRIPT: &str = r#"
import json, struct, sys
import pytrec_eval
qrels = json.load(open(sys.argv[1]))
run = json.load(open(sys.argv[2]))
measures = json.load(open(sys.argv[3]))
f32 = lambda x: struct.unpack('f', struct.pack('f', x))[0]
names = {'ndcg': 'ndcg_cut', 'recall': 'recall', 'p': 'P', 'map': 'map_cut'}
plain, cuts = {}, {}
for m in measures:
    name, k = m.split('@')
    if name == 'mrr':
        cuts[m] = int(k)
    else:
        plain[m] = ('%s.%s' % (names[name], k), '%s_%s' % (names[name], k))
out = {}
if plain:
    ev = pytrec_eval.RelevanceEvaluator(qrels, {req for req, _ in plain.values()})
    for q, vals in ev.evaluate(run).items():
        for m, (_, key) in plain.items():
            out.setdefault(q, {})[m] = vals[key]
for m, k in cuts.items():
    cut = {q: dict(sorted(d.items(), key=lambda kv: (f32(kv[1]), kv[0]), reverse=True)[:k]) for q, d in run.items()}
    ev = pytrec_eval.RelevanceEvaluator(qrels, {'recip_rank'})
    for q, vals in ev.evaluate(cut).items():
        out.setdefault(q, {})[m] = vals['recip_rank']
print(json.dumps(out))
"#;

/// The Python with pytrec_eval, or `None` (after printing why) when the test may be skipped.
pub fn python() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("QUIVER_PYTREC_PYTHON").filter(|v| !v.is_empty()) {
        return Some(PathBuf::from(p));
    }
    let default = std::env::var_os("HOME")
        .map(PathBuf::from)
        .map(|h| h.join(".cache/quiver/eval-venv/bin/python"));
    if let Some(p) = default.filter(|p| p.exists()) {
        return Some(p);
    }
    if std::env::var_os("CI").is_some() {
        panic!("QUIVER_PYTREC_PYTHON is not set and ~/.cache/quiver/eval-venv is missing: .ci/run must create the pytrec_eval venv");
    }
    eprintln!(
        "SKIPPED: no pytrec_eval (set QUIVER_PYTREC_PYTHON, or run: python3 -m venv ~/.cache/quiver/eval-venv && ~/.cache/quiver/eval-venv/bin/pip install pytrec-eval-terrier)"
    );
    None
}

/// pytrec_eval's values: {query: {measure key (ndcg@10, ...): value}}.
pub fn evaluate(
    python: &Path,
    dir: &Path,
    qrels: &Value,
    run: &Value,
    measures: &[String],
) -> serde_json::Map<String, Value> {
    let write = |name: &str, v: &Value| {
        let p = dir.join(name);
        std::fs::write(&p, v.to_string()).expect("write oracle input");
        p
    };
    let qp = write("qrels.json", qrels);
    let rp = write("run.json", run);
    let mp = write("measures.json", &serde_json::json!(measures));
    let sp = dir.join("oracle.py");
    std::fs::write(&sp, SCRIPT).expect("write oracle script");
    let out = Command::new(python)
        .arg(&sp)
        .args([&qp, &rp, &mp])
        .output()
        .expect("run python");
    assert!(
        out.status.success(),
        "pytrec_eval oracle failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    match serde_json::from_slice(&out.stdout).expect("oracle JSON") {
        Value::Object(m) => m,
        other => panic!("oracle printed {other}"),
    }
}

/// Compares per-query values `ours` ({query: {measure: value}}) with the oracle's, and the means
/// over `ours`' queries (a query the oracle leaves out must be 0 in `ours`: no results). Panics
/// naming the first disagreement beyond `tol`; returns the largest difference seen.
pub fn assert_agree(
    ours: &serde_json::Map<String, Value>,
    oracle: &serde_json::Map<String, Value>,
    measures: &[String],
    tol: f64,
) -> f64 {
    let num = |v: Option<&Value>| v.and_then(Value::as_f64);
    let mut worst = 0.0f64;
    let mut sums = vec![(0.0f64, 0.0f64); measures.len()];
    for (q, vals) in ours {
        for (i, m) in measures.iter().enumerate() {
            let a = num(vals.get(m)).unwrap_or_else(|| panic!("ours lacks {m} for {q}"));
            let b = match oracle.get(q) {
                Some(o) => num(o.get(m)).unwrap_or_else(|| panic!("oracle lacks {m} for {q}")),
                None => 0.0,
            };
            let d = (a - b).abs();
            worst = worst.max(d);
            assert!(d <= tol, "query {q:?}, {m}: quiver {a} vs pytrec_eval {b}");
            sums[i].0 += a;
            sums[i].1 += b;
        }
    }
    let n = ours.len().max(1) as f64;
    for (m, (a, b)) in measures.iter().zip(sums) {
        let d = (a / n - b / n).abs();
        worst = worst.max(d);
        assert!(
            d <= tol,
            "mean {m}: quiver {} vs pytrec_eval {}",
            a / n,
            b / n
        );
    }
    worst
}
