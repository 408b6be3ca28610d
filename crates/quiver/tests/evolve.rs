//! Schema evolution through the engine API: a dense field (potion-base-8M) and a BM25 text field
//! added to a collection of 300 SciFact documents spread over several sealed segments, with
//! deletes and a replacement among them; the backfill runs beside a thread that searches the new
//! field the whole time, is interrupted once (stop flag) and resumed from its durable partial
//! file. The oracle is a second collection that had the fields from the start and received the
//! same writes: every document's backfilled vector must equal the fresh ingest's bit for bit,
//! and BM25 must rank and score the same. Bad alterations must fail and change nothing.
//!
//! Needs potion-base-8M in the model cache (`./x setup`).

mod common;

use quiver::{
    BackfillOptions, Database, DocId, Document, FieldSpec, Mode, ModelPool, Progress, Query, Schema,
};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

const MODEL: &str = "potion-base-8M";
const N: usize = 300;

fn pool() -> Arc<ModelPool> {
    common::pool(&[MODEL])
}

fn scifact_docs() -> Vec<Document> {
    common::scifact_docs(N)
}

fn emb_spec() -> Value {
    json!({"type": "dense", "dim": 256, "metric": "cosine", "model": MODEL,
           "embed": ["title", "text"], "index": {"type": "hnsw", "m": 8, "ef_construction": 64}})
}

fn body_spec() -> Value {
    json!({"type": "text", "source": ["title", "text"]})
}

fn spec(v: Value) -> FieldSpec {
    serde_json::from_value(v).unwrap()
}

/// The same writes to both collections: batches of 30 (several seals), deletes, a replacement.
fn write_all(c: &quiver::Collection) {
    let docs = scifact_docs();
    for chunk in docs.chunks(30) {
        c.upsert(chunk.to_vec()).unwrap();
    }
    let gone: Vec<DocId> = docs
        .iter()
        .step_by(17)
        .map(|d| d.id.clone().unwrap())
        .collect();
    c.delete(&gone).unwrap();
    let mut changed = docs[1].clone();
    changed.payload.insert(
        "text".into(),
        json!("A replaced abstract about quokka sleep."),
    );
    c.upsert(vec![changed]).unwrap();
    c.flush().unwrap();
}

/// Sets `stop` once `after` rows of the backfill phase were reported (the index builds of the
/// segments it installs report to the same sink, in phases of their own).
struct StopAfter {
    rows: AtomicU64,
    after: u64,
    stop: Arc<AtomicBool>,
    phases: std::sync::Mutex<Vec<String>>,
}

impl Progress for StopAfter {
    fn start(&self, label: &str, _: u64) {
        self.phases.lock().unwrap().push(label.to_string());
    }
    fn inc(&self, n: u64) {
        if self.phases.lock().unwrap().last().map(String::as_str) != Some("backfill") {
            return;
        }
        if self.rows.fetch_add(n, Ordering::SeqCst) + n >= self.after {
            self.stop.store(true, Ordering::SeqCst);
        }
    }
    fn finish(&self) {
        self.phases.lock().unwrap().pop();
    }
}

#[test]
fn added_fields_backfill_to_what_a_fresh_ingest_computes() {
    let dir = tempfile::tempdir().unwrap();
    let pool = pool();
    let open = || common::open(dir.path(), &pool);
    let db = open();
    let base = r#"{"fields": {"year": {"type": "integer"}}, "mutable_max_rows": 60}"#;
    let a = db
        .create_collection("a", &Schema::parse(base).unwrap())
        .unwrap();
    let full = json!({"fields": {"year": {"type": "integer"}, "emb": emb_spec(), "body": body_spec()},
                      "mutable_max_rows": 60});
    let b = db
        .create_collection("b", &Schema::parse(&full.to_string()).unwrap())
        .unwrap();
    write_all(&a);
    write_all(&b);
    let live = a.count(None).unwrap();
    assert!(a.info().segments.len() >= 4, "{:?}", a.info().segments);

    // Bad alterations fail and change nothing.
    let before = a.schema().to_json();
    let bad: Vec<(&str, Value)> = vec![
        ("year", json!({"type": "integer"})),
        (
            "e2",
            json!({"type": "dense", "dim": 256, "model": "no-such-model", "embed": ["text"]}),
        ),
        (
            "e3",
            json!({"type": "dense", "dim": 100, "model": MODEL, "embed": ["text"]}),
        ),
        ("e4", json!({"type": "dense", "dim": 8})),
        ("title", json!({"type": "integer"})),
        // A vector field cannot take a name stored payloads use.
        (
            "text",
            json!({"type": "dense", "dim": 256, "model": MODEL, "embed": ["title"]}),
        ),
        (
            "e5",
            json!({"type": "dense", "dim": 256, "model": MODEL, "embed": ["nothing"]}),
        ),
    ];
    for (name, s) in bad {
        let e = a.add_field(name, spec(s.clone())).unwrap_err();
        println!("add {name} {s}: {e}");
        assert_eq!(a.schema().to_json(), before, "{name} changed the schema");
    }
    let e = a
        .add_field("title", spec(json!({"type": "integer"})))
        .unwrap_err();
    assert!(e.to_string().contains("does not fit"), "{e}");
    assert!(a.drop_field("nope").is_err());
    assert!(a.drop_field("year").is_err(), "the only field");
    assert_eq!(a.schema().to_json(), before);

    // Add the dense field: every stored document is pending.
    let r = a.add_field("emb", spec(emb_spec())).unwrap();
    assert_eq!(r.pending_documents, live);
    assert_eq!(a.snapshot().pending("emb"), live);
    assert_eq!(a.backfill_info()[0].pending_documents, live);
    let res = a.query(&Query::text("infants").with_limit(5)).unwrap();
    assert!(res.hits.is_empty(), "nothing holds the field yet");
    assert_eq!(res.pending.get("emb"), Some(&live), "{:?}", res.pending);

    // Searches on the new field never fail while the backfill runs; what they reach only grows.
    let searching = Arc::new(AtomicBool::new(true));
    let searcher = {
        let (a, searching) = (a.clone(), searching.clone());
        std::thread::spawn(move || {
            let (mut n, mut last_pending) = (0usize, usize::MAX);
            while searching.load(Ordering::SeqCst) {
                let res = a
                    .query(&Query::text("brain development in infants").with_limit(5))
                    .expect("a search during the backfill failed");
                assert_eq!(res.mode, Mode::Dense);
                // The query says how many documents it could not reach yet.
                let pending = res.pending.get("emb").copied().unwrap_or(0);
                assert!(
                    pending <= last_pending,
                    "pending grew: {last_pending} -> {pending}"
                );
                last_pending = pending;
                n += 1;
            }
            n
        })
    };
    // Interrupted inside a segment (after the first batch of 32 rows of the second one), then
    // resumed from that segment's partial file.
    let tasks = a.storage().backfill_tasks();
    println!("backfill tasks: {tasks:?}");
    assert!(tasks.len() >= 2 && tasks[1].rows > 32, "{tasks:?}");
    let stop = Arc::new(AtomicBool::new(false));
    a.set_progress(Arc::new(StopAfter {
        rows: AtomicU64::new(0),
        // The first batch of the second segment.
        after: tasks[0].rows as u64 + 1,
        stop: stop.clone(),
        phases: Default::default(),
    }));
    let first = a
        .backfill(&BackfillOptions {
            batch: 32,
            duty: 1.0,
            stop: Some(stop),
        })
        .unwrap();
    assert!(first.stopped && first.completed.is_empty(), "{first:?}");
    let info = a.backfill_info();
    println!("after the stop: {info:?}");
    assert!(info[0].pending_documents > 0);
    assert!(
        info[0].partial_rows > 0,
        "the stop should land inside a segment: {info:?}"
    );
    a.set_progress(Arc::new(quiver::NoProgress));
    let rest = a
        .backfill(&BackfillOptions {
            batch: 32,
            duty: 0.8,
            stop: None,
        })
        .unwrap();
    searching.store(false, Ordering::SeqCst);
    let searches = searcher.join().unwrap();
    println!("first run {first:?}\nsecond run {rest:?}\n{searches} searches during the backfill");
    assert_eq!(rest.completed, vec!["emb".to_string()]);
    assert!(a.backfill_info().is_empty());
    assert_eq!(a.snapshot().pending("emb"), 0);
    let res = a.query(&Query::text("infants").with_limit(5)).unwrap();
    assert!(res.pending.is_empty() && res.hits.len() == 5, "{res:?}");

    // Add the text field, drop it, add it again: the drop leaves nothing behind.
    a.add_field("body", spec(body_spec())).unwrap();
    let r = a.drop_field("body").unwrap();
    assert!(
        r.rewritten_segments == 0,
        "nothing was backfilled yet: {r:?}"
    );
    a.add_field("body", spec(body_spec())).unwrap();
    let q = Query::text("infants").with_mode(Mode::Bm25);
    assert_eq!(a.query(&q).unwrap().pending.get("body"), Some(&live));
    let r = a.backfill(&BackfillOptions::default()).unwrap();
    assert_eq!(r.completed, vec!["body".to_string()]);

    // The oracle: every vector bit-equal to the fresh ingest's; BM25 the same.
    let check = |a: &quiver::Collection| {
        let (mut n, mut after) = (0, None);
        loop {
            let (page, next) = b.scroll(after.as_ref(), 100, None).unwrap();
            for want in &page {
                let got = a.get(&want.id).unwrap().expect("document lost");
                assert_eq!(got.payload, want.payload);
                assert_eq!(got.vectors["emb"], want.vectors["emb"], "doc {}", want.id);
                n += 1;
            }
            match next {
                Some(c) => after = Some(c),
                None => break,
            }
        }
        assert_eq!(n, live);
        assert_eq!(a.count(None).unwrap(), live);
        for text in ["quokka sleep", "white matter development in newborns"] {
            let q = Query::text(text).with_mode(Mode::Bm25).with_limit(10);
            let (x, y) = (a.query(&q).unwrap().hits, b.query(&q).unwrap().hits);
            assert_eq!(x.len(), y.len());
            for (h, w) in x.iter().zip(&y) {
                assert_eq!(h.id, w.id, "{text}");
                assert!(
                    (h.score - w.score).abs() < 1e-4,
                    "{text}: {} vs {}",
                    h.score,
                    w.score
                );
            }
            let q = Query {
                exact: true,
                ..Query::text(text).with_limit(10)
            };
            let (x, y) = (a.query(&q).unwrap().hits, b.query(&q).unwrap().hits);
            let ids = |h: &[quiver::Hit]| h.iter().map(|h| h.id.clone()).collect::<Vec<_>>();
            assert_eq!(ids(&x), ids(&y), "{text}");
        }
    };
    check(&a);
    // New writes carry the fields; merges resume once nothing is pending.
    a.wait_for_maintenance().unwrap();
    check(&a);
    drop((a, b, db));
    // Durable: the reopened collection has the schema and the vectors.
    let db = open();
    let a = db.collection("a").unwrap();
    let b = db.collection("b").unwrap();
    assert!(a.schema().backfill.is_empty() && a.schema().fields.contains_key("emb"));
    let want = b.scroll(None, 5, None).unwrap().0;
    for w in want {
        assert_eq!(
            a.get(&w.id).unwrap().unwrap().vectors["emb"],
            w.vectors["emb"]
        );
    }
    assert!(a.verify().is_empty(), "{:?}", a.verify());
}

/// A multi field (all-MiniLM-L6-v2 token vectors, pruned to half, MUVERA with an HNSW over the
/// encodings) added to 60 stored SciFact documents in three segments: the backfill, stopped
/// after its first segment and resumed, ends with the vector sets a fresh ingest stored (same
/// lengths, same raw counts, values within 1e-4: the transformer's batches differ) and the same
/// exact MaxSim ranking; queries report the pending documents until then.
#[test]
fn an_added_multi_field_backfills_to_what_a_fresh_ingest_computes() {
    const M: usize = 60;
    const MINILM: &str = "all-MiniLM-L6-v2";
    let dir = tempfile::tempdir().unwrap();
    let db = Database::open_with(
        dir.path(),
        quiver::OpenOptions {
            pool: Some(common::pool(&[MINILM])),
            ..Default::default()
        },
    )
    .unwrap();
    let tok = json!({"type": "multi", "dim": 384, "metric": "cosine", "model": MINILM,
                     "embed": ["title", "text"], "prune": {"fraction": 0.5},
                     "muvera": {"k_sim": 3, "d_proj": 8, "r_reps": 4},
                     "index": {"type": "hnsw", "m": 8, "ef_construction": 40}});
    let a = db
        .create_collection(
            "a",
            &Schema::parse(r#"{"fields": {"year": {"type": "integer"}}, "mutable_max_rows": 20}"#)
                .unwrap(),
        )
        .unwrap();
    let full = json!({"fields": {"year": {"type": "integer"}, "tok": tok}, "mutable_max_rows": 20});
    let b = db
        .create_collection("b", &Schema::parse(&full.to_string()).unwrap())
        .unwrap();
    let docs: Vec<Document> = scifact_docs().into_iter().take(M).collect();
    for chunk in docs.chunks(20) {
        a.upsert(chunk.to_vec()).unwrap();
        b.upsert(chunk.to_vec()).unwrap();
    }
    a.flush().unwrap();
    a.add_field("tok", spec(tok.clone())).unwrap();
    let q = Query {
        exact: true,
        ..Query::text("cancer cells").with_mode(Mode::Multi)
    }
    .with_limit(10);
    let res = a.query(&q).unwrap();
    assert_eq!(res.pending.get("tok"), Some(&M), "{:?}", res.pending);
    assert!(res.hits.is_empty());
    let tasks = a.storage().backfill_tasks();
    println!("multi backfill tasks: {tasks:?}");
    assert!(tasks.len() >= 3, "{tasks:?}");
    let stop = Arc::new(AtomicBool::new(false));
    a.set_progress(Arc::new(StopAfter {
        rows: AtomicU64::new(0),
        after: tasks[0].rows as u64 + 1,
        stop: stop.clone(),
        phases: Default::default(),
    }));
    let first = a
        .backfill(&BackfillOptions {
            batch: 8,
            duty: 1.0,
            stop: Some(stop),
        })
        .unwrap();
    println!("first run {first:?}");
    assert!(first.stopped && first.segments >= 1, "{first:?}");
    let pending = a.query(&q).unwrap().pending["tok"];
    assert!(pending > 0 && pending < M, "pending {pending}");
    a.set_progress(Arc::new(quiver::NoProgress));
    let rest = a.backfill(&BackfillOptions::default()).unwrap();
    println!("second run {rest:?}");
    assert_eq!(rest.completed, vec!["tok".to_string()]);
    for d in &docs {
        let id = d.id.as_ref().unwrap();
        let (x, y) = (a.get(id).unwrap().unwrap(), b.get(id).unwrap().unwrap());
        assert_eq!(x.multi_raw["tok"], y.multi_raw["tok"], "{id}");
        assert_eq!(x.multi["tok"].len(), y.multi["tok"].len(), "{id}");
        for (u, v) in x.multi["tok"].iter().zip(&y.multi["tok"]) {
            let worst = u
                .iter()
                .zip(v)
                .map(|(p, q)| (p - q).abs())
                .fold(0f32, f32::max);
            assert!(worst < 1e-4, "{id}: a token vector differs by {worst}");
        }
    }
    let (x, y) = (a.query(&q).unwrap(), b.query(&q).unwrap());
    assert!(x.pending.is_empty());
    let ids = |h: &[quiver::Hit]| h.iter().map(|h| h.id.clone()).collect::<Vec<_>>();
    assert_eq!(ids(&x.hits), ids(&y.hits));
    // MUVERA (the HNSW over the encodings, then MaxSim rerank) finds the same best document.
    let fast = Query::text("cancer cells")
        .with_mode(Mode::Multi)
        .with_limit(3);
    assert_eq!(
        a.query(&fast).unwrap().hits[0].id,
        b.query(&fast).unwrap().hits[0].id
    );
    assert!(a.verify().is_empty(), "{:?}", a.verify());
}

/// Upserts from another thread while a dense field is added and backfilled: none fails (a write
/// whose vectors were computed before the field existed is completed and written again), and
/// every document — stored before, written during, written after — ends with the vector a fresh
/// ingest computes.
#[test]
fn upserts_racing_an_added_field_never_fail() {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::open_with(
        dir.path(),
        quiver::OpenOptions {
            pool: Some(pool()),
            ..Default::default()
        },
    )
    .unwrap();
    let base = r#"{"fields": {"year": {"type": "integer"}}, "mutable_max_rows": 50}"#;
    let a = db
        .create_collection("a", &Schema::parse(base).unwrap())
        .unwrap();
    let full = json!({"fields": {"year": {"type": "integer"}, "emb": emb_spec()}});
    let oracle = db
        .create_collection("oracle", &Schema::parse(&full.to_string()).unwrap())
        .unwrap();
    let docs = scifact_docs();
    oracle.upsert(docs.clone()).unwrap();
    a.upsert(docs[..100].to_vec()).unwrap();
    let written = Arc::new(AtomicU64::new(0));
    let writer = {
        let (a, rest, written) = (a.clone(), docs[100..].to_vec(), written.clone());
        std::thread::spawn(move || {
            for chunk in rest.chunks(4) {
                a.upsert(chunk.to_vec())
                    .expect("an upsert beside add_field failed");
                written.fetch_add(chunk.len() as u64, Ordering::SeqCst);
                std::thread::sleep(std::time::Duration::from_millis(2));
            }
        })
    };
    while written.load(Ordering::SeqCst) < 40 {
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    let stale = a.schema();
    a.add_field("emb", spec(emb_spec())).unwrap();
    let during = written.load(Ordering::SeqCst);
    // A write prepared under the schema before the change comes back unwritten.
    let back = a
        .storage()
        .upsert_under(vec![docs[0].clone()], &stale)
        .unwrap()
        .expect_err("a write under a stale schema went through");
    assert_eq!(back.len(), 1);
    writer.join().unwrap();
    let r = a.backfill(&BackfillOptions::default()).unwrap();
    println!("{during} of 200 written when the field was added; {r:?}");
    assert!(
        during < 200,
        "the writer had finished before the field was added"
    );
    assert!(r.rows < N, "no write carried the new field: {r:?}");
    assert_eq!(a.count(None).unwrap(), N);
    for d in &docs {
        let id = d.id.as_ref().unwrap();
        assert_eq!(
            a.get(id).unwrap().unwrap().vectors["emb"],
            oracle.get(id).unwrap().unwrap().vectors["emb"],
            "{id}"
        );
    }
}
