//! A dense field switched to a new model without re-importing (issue 17, item 2's switch-over):
//! 160 SciFact documents in several sealed segments (with deletes) whose field `emb` is
//! potion-base-8M's (256-d) get an adapter from all-MiniLM-L6-v2 (384-d, ridge), then
//! `begin_switch(emb, MiniLM)`: text queries keep working through the adapter while the
//! backfill re-embeds the corpus, a write during the switch carries both models' vectors, and
//! when the backfill completes `emb` holds MiniLM's vectors — equal (to 1e-4: the transformer's
//! batches differ) to a collection that had MiniLM from the start and took the same writes,
//! with the same exact ranking — the old files are gone from every segment and the adapter is
//! removed. Switching back to potion (generation 2) must then equal a potion collection bit
//! for bit. Bad switches fail and change nothing.
//!
//! Needs potion-base-8M and all-MiniLM-L6-v2 in the model cache (`./x setup`).

mod common;

use quiver::{AdaptOptions, BackfillOptions, Collection, DocId, Mode, Query, Schema};
use serde_json::{json, Value};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

const POTION: &str = "potion-base-8M";
const MINILM: &str = "all-MiniLM-L6-v2";
const N: usize = 160;

fn schema(model: &str, dim: usize) -> Schema {
    let v = json!({"fields": {"year": {"type": "integer"},
                   "emb": {"type": "dense", "dim": dim, "metric": "cosine", "model": model,
                           "embed": ["title", "text"],
                           "index": {"type": "hnsw", "m": 8, "ef_construction": 64}}},
                   "mutable_max_rows": 40});
    Schema::parse(&v.to_string()).unwrap()
}

/// Batches of 30 (several seals) and a few deletes.
fn write_all(c: &Collection) {
    let docs = common::scifact_docs(N);
    for chunk in docs.chunks(30) {
        c.upsert(chunk.to_vec()).unwrap();
    }
    let gone: Vec<DocId> = docs
        .iter()
        .step_by(13)
        .map(|d| d.id.clone().unwrap())
        .collect();
    c.delete(&gone).unwrap();
    c.flush().unwrap();
}

/// A document written while the switch runs.
fn late_write(c: &Collection) {
    let doc = serde_json::from_value(json!({"id": "late-1", "payload": {
        "title": "Quokka sleep", "text": "Quokkas sleep in the shade of trees by day.", "year": 2026}}))
    .unwrap();
    c.upsert(vec![doc]).unwrap();
}

/// Names of the files of every live sealed segment of `c` (in database `db`).
fn segment_files(db: &Path, c: &Collection) -> Vec<String> {
    let mut out = Vec::new();
    let dir = db.join("collections").join(c.name()).join("segments");
    for (seg, _, _) in c.info().segments {
        for f in std::fs::read_dir(dir.join(seg)).unwrap() {
            out.push(f.unwrap().file_name().to_string_lossy().into_owned());
        }
    }
    out
}

/// Every document of `want` is in `got` with the same payload and `emb` within `tol`; the
/// exact text rankings agree.
fn same_as(got: &Collection, want: &Collection, tol: f32) {
    let (mut n, mut after, mut worst) = (0, None, 0f32);
    loop {
        let (page, next) = want.scroll(after.as_ref(), 100, None).unwrap();
        for w in &page {
            let g = got.get(&w.id).unwrap().expect("document lost");
            assert_eq!(g.payload, w.payload);
            let (x, y) = (&g.vectors["emb"], &w.vectors["emb"]);
            assert_eq!(x.len(), y.len(), "doc {}", w.id);
            for (a, b) in x.iter().zip(y) {
                worst = worst.max((a - b).abs());
            }
            n += 1;
        }
        match next {
            Some(c) => after = Some(c),
            None => break,
        }
    }
    println!("{n} documents, max |Δ| of emb {worst:e}");
    assert!(worst <= tol, "max |Δ| {worst} > {tol}");
    assert_eq!(got.count(None).unwrap(), n);
    for text in ["quokka sleep", "white matter development in newborns"] {
        let q = Query {
            exact: true,
            ..Query::text(text).with_limit(10)
        };
        let ids = |c: &Collection| -> Vec<DocId> {
            c.query(&q)
                .unwrap()
                .hits
                .into_iter()
                .map(|h| h.id)
                .collect()
        };
        assert_eq!(ids(got), ids(want), "{text}");
    }
}

fn full_speed() -> BackfillOptions {
    BackfillOptions {
        duty: 1.0,
        ..Default::default()
    }
}

#[test]
fn a_field_switches_models_when_its_backfill_completes() {
    let dir = tempfile::tempdir().unwrap();
    let pool = common::pool(&[POTION, MINILM]);
    let open = || common::open(dir.path(), &pool);
    let db = open();
    let a = db.create_collection("a", &schema(POTION, 256)).unwrap();
    let mini = db.create_collection("mini", &schema(MINILM, 384)).unwrap();
    let pot = db.create_collection("pot", &schema(POTION, 256)).unwrap();
    for c in [&a, &mini, &pot] {
        write_all(c);
    }
    let live = a.count(None).unwrap();
    assert!(a.info().segments.len() >= 3, "{:?}", a.info().segments);

    // Bad switches fail and change nothing.
    let before = a.schema().to_json();
    for (field, model) in [
        ("emb", "no-such-model"),
        ("emb", POTION),
        ("year", MINILM),
        ("nope", MINILM),
    ] {
        let e = a.begin_switch(field, model).unwrap_err();
        println!("switch {field} to {model}: {e}");
        assert_eq!(a.schema().to_json(), before);
    }

    let adapter = a
        .adapt(
            "emb",
            MINILM,
            &AdaptOptions {
                sample: 150,
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(adapter.kind, "ridge");
    let r = a.begin_switch("emb", MINILM).unwrap();
    assert_eq!((r.field.as_str(), r.pending_documents), ("emb~1", live));
    let s = a.schema();
    assert_eq!(s.successors.get("emb").map(String::as_str), Some("emb~1"));
    assert_eq!(s.dense("emb~1").unwrap().dim, 384);
    assert!(a.begin_switch("emb", MINILM).is_err(), "already switching");
    let e = a.drop_field("emb").unwrap_err();
    assert!(e.to_string().contains("cancel"), "{e}");
    assert_eq!(a.describe().unwrap()["switching"], json!({"emb": "emb~1"}));

    // Until the switch, text queries (no field named: the successor is not a candidate) are
    // embedded by MiniLM and mapped onto the potion vectors.
    let q = Query::text("brain development in infants").with_limit(5);
    let res = a.query(&q).unwrap();
    assert_eq!(res.mode, Mode::Dense);
    assert_eq!(res.hits.len(), 5);
    assert!(
        res.pending.is_empty(),
        "emb itself is whole: {:?}",
        res.pending
    );
    for c in [&a, &mini, &pot] {
        late_write(c);
    }

    let searching = Arc::new(AtomicBool::new(true));
    let searcher = {
        let (a, searching, q) = (a.clone(), searching.clone(), q.clone());
        std::thread::spawn(move || {
            let mut n = 0;
            while searching.load(Ordering::SeqCst) {
                let res = a.query(&q).expect("a search during the switch failed");
                assert_eq!(res.hits.len(), 5);
                n += 1;
            }
            n
        })
    };
    let report = a.backfill(&full_speed()).unwrap();
    searching.store(false, Ordering::SeqCst);
    let searches = searcher.join().unwrap();
    println!("{report:?}; {searches} searches during the switch");
    assert_eq!(report.switched, vec!["emb".to_string()]);

    // Switched: emb is MiniLM's, stored as emb~1; the potion files and the adapter are gone.
    let s = a.schema();
    let f = s.dense("emb").unwrap();
    assert_eq!((f.dim, f.embedding.model.as_deref()), (384, Some(MINILM)));
    assert_eq!(f.stored, "emb~1");
    assert!(s.successors.is_empty() && s.dropping.is_empty() && s.backfill.is_empty());
    assert!(a.adapters().is_empty());
    let files = segment_files(dir.path(), &a);
    assert!(files.iter().any(|f| f == "vec.emb~1.f32"), "{files:?}");
    assert!(
        !files
            .iter()
            .any(|f| f == "vec.emb.f32" || f == "hnsw.emb.bin"),
        "old files left: {files:?}"
    );
    same_as(&a, &mini, 1e-4);
    a.wait_for_maintenance().unwrap();
    same_as(&a, &mini, 1e-4);
    drop((a, mini, pot, db));

    // Durable; and a second switch (back to potion) is generation 2 and bit-exact.
    let db = open();
    let a = db.collection("a").unwrap();
    let pot = db.collection("pot").unwrap();
    assert_eq!(a.schema().dense("emb").unwrap().stored, "emb~1");
    assert!(a.verify().is_empty(), "{:?}", a.verify());
    let r = a.begin_switch("emb", POTION).unwrap();
    assert_eq!(r.field, "emb~2");
    let report = a.backfill(&full_speed()).unwrap();
    assert_eq!(report.switched, vec!["emb".to_string()]);
    assert_eq!(a.schema().dense("emb").unwrap().stored, "emb~2");
    let files = segment_files(dir.path(), &a);
    assert!(
        !files.iter().any(|f| f.contains("emb~1")),
        "generation 1 left: {files:?}"
    );
    same_as(&a, &pot, 0.0);
    assert!(a.verify().is_empty(), "{:?}", a.verify());
}

/// Dropping the successor cancels a switch: the field keeps its model and vectors; the next
/// switch gets a new successor name; `stored_as` cannot be written by users.
#[test]
fn dropping_the_successor_cancels_a_switch() {
    let dir = tempfile::tempdir().unwrap();
    let db = common::open(dir.path(), &common::pool(&[POTION, MINILM]));
    let a = db.create_collection("a", &schema(POTION, 256)).unwrap();
    write_all(&a);
    let before: Value = serde_json::from_str(&a.schema().to_json()).unwrap();
    a.begin_switch("emb", MINILM).unwrap();
    let r = a.drop_field("emb~1").unwrap();
    assert_eq!(r.rewritten_segments, 0, "nothing was backfilled");
    let mut after: Value = serde_json::from_str(&a.schema().to_json()).unwrap();
    // Only the count of successors made remains (names are not reused).
    assert_eq!(after["successors_made"], json!(1));
    after.as_object_mut().unwrap().remove("successors_made");
    assert_eq!(after, before);
    let report = a.backfill(&BackfillOptions::default()).unwrap();
    assert!(report.switched.is_empty() && report.rows == 0, "{report:?}");
    let res = a.query(&Query::text("infants").with_limit(3)).unwrap();
    assert_eq!(res.hits.len(), 3);
    // A successor's name is never reused, so nothing a cancelled switch left can be taken for
    // the next one's.
    let r = a.begin_switch("emb", MINILM).unwrap();
    assert_eq!(r.field, "emb~2");
    // What only a switch writes cannot come from a user.
    let mut forged = serde_json::to_value(schema(POTION, 256)).unwrap();
    forged["fields"]["emb"]["stored_as"] = json!("emb~1");
    let forged: Schema = serde_json::from_value(forged).unwrap();
    let e = db.create_collection("forged", &forged).unwrap_err();
    assert!(e.to_string().contains("stored_as"), "{e}");
    let spec = serde_json::from_value(json!({"type": "dense", "dim": 256, "model": POTION,
        "embed": ["text"], "stored_as": "e9~1"}))
    .unwrap();
    assert!(a.add_field("e9", spec).is_err());
}
