//! quiver-eval's metrics against pytrec_eval (trec_eval's own code) on random runs built to be
//! awkward: many tied scores (ties broken by document id, where "d10" < "d9" in byte order),
//! graded and zero-level judgements, queries with nothing relevant, empty runs, and runs shorter
//! than the cut-offs. The seed is fixed ([`DEFAULT_SEED`]) and printed; `QUIVER_TEST_SEED`
//! runs another. Without pytrec_eval the test fails, naming `./x setup`.

mod support;

use quiver_eval::metrics::{Evaluator, Measure, Qrels, Run, Scored};
use rand::{Rng, SeedableRng};
use serde_json::{json, Map, Value};
use support::pytrec;

/// The seed of every run unless `QUIVER_TEST_SEED` names another.
const DEFAULT_SEED: u64 = 0x7EC_5EED;

/// A missing oracle is a failure that names what is missing and the set-up command, never a
/// silent pass: no interpreter at all, and an interpreter that cannot import pytrec_eval.
#[test]
fn missing_pytrec_eval_fails_naming_the_setup_command() {
    let dir = tempfile::tempdir().expect("tempdir");
    let nowhere = dir.path().join("no-venv/bin/python");
    let e = pytrec::locate(None, std::slice::from_ref(&nowhere)).expect_err("no python");
    assert!(
        e.contains("./x setup") && e.contains("QUIVER_PYTREC_PYTHON"),
        "{e}"
    );
    assert!(e.contains(&nowhere.display().to_string()), "{e}");
    // Set but not runnable.
    let e = pytrec::locate(Some(nowhere.clone().into()), &[]).expect_err("no python");
    assert!(e.contains("./x setup") && e.contains("cannot run"), "{e}");
    // Runs, but the import fails (`false` exits 1 whatever its arguments).
    let e = pytrec::locate(Some("false".into()), &[]).expect_err("no pytrec_eval");
    assert!(
        e.contains("./x setup") && e.contains("cannot import pytrec_eval"),
        "{e}"
    );
}

#[test]
fn random_runs_agree_with_pytrec_eval() {
    let python = pytrec::python();
    let seed: u64 = match std::env::var("QUIVER_TEST_SEED") {
        Ok(s) => s
            .parse()
            .unwrap_or_else(|e| panic!("QUIVER_TEST_SEED={s:?} is not a u64: {e}")),
        Err(_) => DEFAULT_SEED,
    };
    eprintln!("seed {seed} (QUIVER_TEST_SEED={seed} repeats this run)");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);

    let mut qrels = Qrels::default();
    let mut run = Run::new();
    let mut qrels_json = Map::new();
    let mut run_json = Map::new();
    let tied = [1.0f32, 0.5, 0.25, 0.125];
    for qi in 0..200 {
        let q = format!("q{qi}");
        let mut judged = Map::new();
        let n_judged = rng.random_range(1..15);
        for _ in 0..n_judged {
            let d = format!("d{}", rng.random_range(0..40));
            // Mostly graded relevant, some explicitly non-relevant; query 0 mod 10: nothing relevant.
            let level: i64 = if qi % 10 == 0 {
                0
            } else {
                rng.random_range(0..4)
            };
            qrels.insert(q.clone(), d.clone(), level);
            judged.insert(d, json!(level));
        }
        qrels_json.insert(q.clone(), Value::Object(judged));
        if qi % 17 == 3 {
            continue; // no run for this query
        }
        let mut list = Vec::new();
        let mut docs = Map::new();
        for _ in 0..rng.random_range(1..60) {
            let d = format!("d{}", rng.random_range(0..40));
            if docs.contains_key(&d) {
                continue;
            }
            let score = if rng.random_bool(0.7) {
                tied[rng.random_range(0..tied.len())]
            } else {
                rng.random::<f32>()
            };
            list.push(Scored::new(d.clone(), score));
            docs.insert(d, json!(score));
        }
        run.insert(q.clone(), list);
        run_json.insert(q, Value::Object(docs));
    }
    let measures: Vec<Measure> = [
        "ndcg@1",
        "ndcg@3",
        "ndcg@10",
        "ndcg@100",
        "recall@1",
        "recall@2",
        "recall@10",
        "p@1",
        "p@5",
        "p@10",
        "map@5",
        "map@100",
        "mrr@1",
        "mrr@3",
        "mrr@10",
        "mrr@1000",
    ]
    .iter()
    .map(|s| s.parse().expect("measure"))
    .collect();
    let names: Vec<String> = measures.iter().map(Measure::to_string).collect();
    let ours = Evaluator::new(measures.clone()).evaluate_all(&qrels, &run);
    let ours_json: Map<String, Value> = ours
        .per_query
        .iter()
        .map(|(q, vals)| {
            let m: Map<String, Value> = names
                .iter()
                .cloned()
                .zip(vals.iter().map(|v| json!(v)))
                .collect();
            (q.clone(), Value::Object(m))
        })
        .collect();
    let dir = tempfile::tempdir().expect("tempdir");
    let oracle = pytrec::evaluate(
        &python,
        dir.path(),
        &Value::Object(qrels_json),
        &Value::Object(run_json),
        &names,
    );
    let worst = pytrec::assert_agree(&ours_json, &oracle, &names, 1e-9);
    eprintln!(
        "{} queries, {} measures: largest difference from pytrec_eval {worst:.2e}",
        ours_json.len(),
        names.len()
    );
}
