//! Runs `pytrec_eval` (PyPI `pytrec-eval-terrier`, which wraps trec_eval's C code) as the oracle
//! for Quiver's metrics. Shared by the quiver-eval and quiver-cli test suites.
//!
//! The Python interpreter is `$QUIVER_PYTREC_PYTHON`, else the first that exists of
//! `$QUIVER_TEST_VENV/bin/python`, `${QUIVER_HOME:-~/.cache/quiver}/test-venv/bin/python` (the
//! venv `./x setup` makes) and `~/.cache/quiver/eval-venv/bin/python`. A missing interpreter, or
//! one that cannot import `pytrec_eval`, FAILS the test with a message naming what is missing and
//! `./x setup`: an oracle test that did not run must never report "ok".

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

/// What to run when the oracle is missing.
pub const SETUP_HINT: &str = "run `./x setup` (it makes the test venv with pytrec-eval-terrier), \
then `eval \"$(./x env)\"`, or set QUIVER_PYTREC_PYTHON to a Python that has pytrec_eval";

/// Where a venv with pytrec_eval is looked for when `QUIVER_PYTREC_PYTHON` is not set, in order.
pub fn default_pythons() -> Vec<PathBuf> {
    let var = |k: &str| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    let home = var("HOME");
    let quiver_home = var("QUIVER_HOME").or_else(|| home.as_ref().map(|h| h.join(".cache/quiver")));
    let mut venvs = Vec::new();
    venvs.extend(var("QUIVER_TEST_VENV"));
    venvs.extend(quiver_home.map(|q| q.join("test-venv")));
    venvs.extend(home.map(|h| h.join(".cache/quiver/eval-venv")));
    venvs.into_iter().map(|v| v.join("bin/python")).collect()
}

/// The Python to use: `env` (the value of `QUIVER_PYTREC_PYTHON`) when set and non-empty, else
/// the first of `candidates` that exists; then checked by importing `pytrec_eval` with it. `Err`
/// names what is missing and the set-up command.
pub fn locate(env: Option<std::ffi::OsString>, candidates: &[PathBuf]) -> Result<PathBuf, String> {
    let python = match env.filter(|v| !v.is_empty()) {
        Some(p) => PathBuf::from(p),
        None => match candidates.iter().find(|p| p.exists()) {
            Some(p) => p.clone(),
            None => {
                let tried: Vec<String> =
                    candidates.iter().map(|p| p.display().to_string()).collect();
                return Err(format!(
                    "pytrec_eval is missing: QUIVER_PYTREC_PYTHON is not set and no test venv \
                     exists (looked for {}); {SETUP_HINT}",
                    tried.join(", ")
                ));
            }
        },
    };
    let out = Command::new(&python)
        .args(["-c", "import pytrec_eval"])
        .output()
        .map_err(|e| {
            format!(
                "pytrec_eval is missing: cannot run Python {} ({e}); {SETUP_HINT}",
                python.display()
            )
        })?;
    if !out.status.success() {
        return Err(format!(
            "pytrec_eval is missing: {} cannot import pytrec_eval ({}); {SETUP_HINT}",
            python.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(python)
}

/// The Python with pytrec_eval; panics, naming what is missing and `./x setup`, without one.
pub fn python() -> PathBuf {
    match locate(std::env::var_os("QUIVER_PYTREC_PYTHON"), &default_pythons()) {
        Ok(p) => p,
        Err(e) => panic!("{e}"),
    }
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
