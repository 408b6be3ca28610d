//! Crash test for schema evolution (issue 17): `quiver collection alter --add-field` and
//! `quiver collection backfill` child processes are SIGKILLed at points their own events prove
//! (after the nth durable batch, between a segment copy's write and its manifest entry, right
//! after an install, at a random moment), several seeds. After every kill the collection opens,
//! holds all its documents, and its durable progress (rows in installed segments plus rows in
//! partial files) grew by at least the rows whose batches the child reported durable and by at
//! most one batch more: nothing durable is lost and nothing is computed twice. The last run
//! completes the field, and every document's vector equals, bit for bit, what a fresh ingest of
//! the same documents into a collection that had the field from the start computed.
//!
//! Needs potion-base-8M (`./x setup`) and ../shared/data/scifact.

mod common;

use common::kill::{spawn_then_kill, KillAt, Killed};
use common::{ok_json, require_model, run, write_scifact, BIN};
use quiver::{Database, DocId};
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::path::Path;
use std::process::Command;

const MODEL: &str = "potion-base-8M";
const N: usize = 1_000;
const BATCH: usize = 16;

fn emb_spec() -> Value {
    json!({"type": "dense", "dim": 256, "metric": "cosine", "model": MODEL,
           "embed": ["title", "text"], "index": {"type": "hnsw", "m": 8, "ef_construction": 40}})
}

fn must(db: &Path, args: &[&str]) {
    let (ok, _, err) = run(db, args);
    assert!(ok, "quiver {args:?} failed: {err}");
}

/// Rows of the added field that are durable: in installed segments, or in partial files.
fn durable_rows(db: &Path) -> (usize, Value) {
    let info = ok_json(db, &["collection", "info", "c"]);
    assert_eq!(info["documents"], json!(N), "documents lost: {info}");
    let b = info["backfill"].as_array().cloned().unwrap_or_default();
    match b.as_slice() {
        [] => (N, info),
        [f] => {
            assert_eq!(f["field"], "emb");
            let pending = f["pending_documents"].as_u64().expect("pending") as usize;
            let partial = f["partial_rows"].as_u64().expect("partial") as usize;
            (N - pending + partial, info)
        }
        more => panic!("one field is being added, info says {more:?}"),
    }
}

/// Rows the child reported durable (`backfill-rows K` events, one per appended batch).
fn reported_rows(k: &Killed) -> usize {
    k.events
        .iter()
        .filter_map(|e| e.strip_prefix("backfill-rows "))
        .map(|n| n.parse::<usize>().expect("row count"))
        .sum()
}

/// Where the kill landed, from the last event the child printed before it died.
fn phase(k: &Killed) -> &'static str {
    if k.exited_first {
        return "after the child had finished";
    }
    match k.events.last().map(String::as_str) {
        Some("install-start") => "while a segment copy was being written",
        Some("install-written") => "after a segment copy was written, before its install ended",
        Some("backfill-segment") => "right after a segment's install",
        Some(e) if e.starts_with("backfill-") => "between batches",
        _ => "before the first batch",
    }
}

fn backfill_cmd(db: &Path, first: bool) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.arg("--db").arg(db).arg("collection");
    if first {
        let spec = emb_spec().to_string();
        cmd.args(["alter", "c", "--add-field", "emb", "--schema-json", &spec]);
    } else {
        cmd.args(["backfill", "c"]);
    }
    cmd.args(["--batch", &BATCH.to_string(), "--duty", "1"]);
    if !first {
        // One model thread, as a server machine would run a backfill beside searches.
        cmd.args(["--threads", "1"]);
    }
    cmd
}

#[test]
fn sigkill_during_a_backfill_loses_no_progress_and_ends_with_fresh_ingest_vectors() {
    require_model(MODEL);
    let work = tempfile::tempdir().expect("tempdir");
    let docs = work.path().join("docs.jsonl");
    let ids = write_scifact(&docs, N);
    let docs_arg = docs.to_str().expect("path");

    // The oracle: a collection that had the field from the start.
    let oracle_db = work.path().join("oracle");
    let full =
        json!({"mutable_max_rows": 200, "fields": {"n": {"type": "integer"}, "emb": emb_spec()}});
    must(
        &oracle_db,
        &[
            "collection",
            "create",
            "r",
            "--schema-json",
            &full.to_string(),
        ],
    );
    must(&oracle_db, &["ingest", "r", docs_arg]);
    let want: HashMap<String, Vec<f32>> = {
        let d = Database::open(&oracle_db).expect("open oracle");
        let r = d.collection("r").expect("oracle collection");
        ids.iter()
            .map(|id| {
                let doc = r.get(&DocId::Str(id.clone())).unwrap().expect("oracle doc");
                (id.clone(), doc.vectors["emb"].clone())
            })
            .collect()
    };

    let base = r#"{"mutable_max_rows": 200, "fields": {"n": {"type": "integer"}}}"#;
    for seed in [31u64, 32, 33] {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        println!("seed {seed}");
        let db = work.path().join(format!("db-{seed}"));
        must(&db, &["collection", "create", "c", "--schema-json", base]);
        // Batches of 40 with seals every 200 rows: five segments or so.
        must(&db, &["ingest", "c", docs_arg, "--batch-size", "40"]);
        let segments = ok_json(&db, &["collection", "info", "c"])["segments"]
            .as_array()
            .map_or(0, Vec::len);
        assert!(segments >= 4, "seed {seed}: {segments} segments");
        let plan = [
            KillAt::Event("backfill-batch", rng.random_range(1..=8)),
            KillAt::Event("install-written", 1),
            KillAt::Event("backfill-segment", 1),
            KillAt::Delay(rng.random_range(50..400)),
            KillAt::Event("backfill-batch", rng.random_range(1..=20)),
        ];
        let mut done = 0usize;
        let mut landed_mid = 0;
        for (round, at) in plan.into_iter().enumerate() {
            if done == N {
                break;
            }
            let k = spawn_then_kill(backfill_cmd(&db, round == 0), at);
            let reported = reported_rows(&k);
            let (now, info) = durable_rows(&db);
            println!(
                "seed {seed} round {}: kill at {at:?} landed {}: {reported} rows reported \
                 durable, durable rows {done} -> {now} ({} in partial files); {} batch events, other events {:?}",
                round + 1,
                phase(&k),
                info["backfill"][0]["partial_rows"],
                k.count("backfill-batch"),
                k.events
                    .iter()
                    .filter(|e| !e.starts_with("backfill-"))
                    .collect::<Vec<_>>()
            );
            if let KillAt::Event(e, nth) = at {
                assert!(
                    !k.exited_first,
                    "seed {seed}: the child finished before {e} #{nth}"
                );
                assert!(k.count(e) >= nth, "seed {seed}: {:?}", k.events);
            }
            if round == 0 {
                assert!(
                    info["backfill"].as_array().is_some_and(|b| b.len() == 1),
                    "the alter's schema change must be durable: {info}"
                );
            }
            assert!(
                now >= done + reported,
                "seed {seed}: progress lost: {done} + {reported} reported > {now} durable"
            );
            assert!(
                now <= done + reported + BATCH,
                "seed {seed}: more durable than computed ({done} + {reported} + one batch < {now})"
            );
            landed_mid += (!k.exited_first && now < N) as usize;
            done = now;
            // A search on the field says how many documents it cannot reach yet.
            let res = ok_json(&db, &["search", "c", "cancer", "-k", "3"]);
            let pending = info["backfill"][0]["pending_documents"]
                .as_u64()
                .unwrap_or(0);
            assert_eq!(
                res["pending"]["emb"].as_u64().unwrap_or(0),
                pending,
                "{res}"
            );
        }
        assert!(
            landed_mid >= 3,
            "seed {seed}: only {landed_mid} kills landed mid-backfill"
        );
        // The last run completes the field, computing only what was not durable (a kill that
        // came after the child finished leaves nothing to do).
        let (_, info) = durable_rows(&db);
        let finished = info["backfill"].as_array().is_none_or(|b| b.is_empty());
        let out = ok_json(
            &db,
            &["collection", "backfill", "c", "--batch", &BATCH.to_string()],
        );
        println!("seed {seed} final run: {out}");
        let completed = if finished { json!([]) } else { json!(["emb"]) };
        assert_eq!(out["backfill"]["completed"], completed, "{out}");
        assert_eq!(out["backfill"]["rows"], json!(N - done), "{out}");
        let (now, info) = durable_rows(&db);
        assert_eq!(now, N);
        assert!(
            info["backfill"].as_array().is_none_or(|b| b.is_empty()),
            "{info}"
        );
        let d = Database::open(&db).expect("open");
        let c = d.collection("c").expect("collection");
        for id in &ids {
            let doc = c.get(&DocId::Str(id.clone())).unwrap().expect("doc lost");
            assert_eq!(doc.vectors["emb"], want[id], "seed {seed}: doc {id}");
        }
        assert_eq!(c.count(None).unwrap(), N);
        assert!(c.verify().is_empty(), "{:?}", c.verify());
    }
}
