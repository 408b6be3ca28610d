//! Schema evolution through the engine API: a dense field (potion-base-8M) and a BM25 text field
//! added to a collection of 300 SciFact documents spread over several sealed segments, with
//! deletes and a replacement among them; the backfill runs beside a thread that searches the new
//! field the whole time, is interrupted once (stop flag) and resumed from its durable partial
//! file. The oracle is a second collection that had the fields from the start and received the
//! same writes: every document's backfilled vector must equal the fresh ingest's bit for bit,
//! and BM25 must rank and score the same. Bad alterations must fail and change nothing.
//!
//! Needs potion-base-8M in the model cache (`./x setup`).

use quiver::{
    BackfillOptions, Database, DocId, Document, FieldSpec, Mode, ModelPool, PoolOptions, Progress,
    Query, Schema,
};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

const MODEL: &str = "potion-base-8M";
const N: usize = 300;

fn pool() -> Arc<ModelPool> {
    if let Err(e) = quiver::embed::fetch::cached_model(MODEL) {
        panic!("model {MODEL} is not in the cache ({e}): run `./x setup` first");
    }
    Arc::new(ModelPool::new(PoolOptions {
        auto_pull: false,
        threads: Some(2),
        ..Default::default()
    }))
}

fn scifact_docs() -> Vec<Document> {
    let p = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../shared/data/scifact/corpus.jsonl"
    );
    let text = std::fs::read_to_string(p)
        .unwrap_or_else(|e| panic!("{p}: {e} (../shared/data must lie beside the repository)"));
    text.lines()
        .take(N)
        .enumerate()
        .map(|(i, l)| {
            let v: Value = serde_json::from_str(l).unwrap();
            let mut d = Document {
                id: Some(DocId::Str(v["_id"].as_str().unwrap().to_string())),
                ..Default::default()
            };
            d.payload.insert("title".into(), v["title"].clone());
            d.payload.insert("text".into(), v["text"].clone());
            d.payload
                .insert("year".into(), json!(2015 + (i % 10) as i64));
            d
        })
        .collect()
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
    let open = || {
        Database::open_with(
            dir.path(),
            quiver::OpenOptions {
                pool: Some(pool.clone()),
                ..Default::default()
            },
        )
        .unwrap()
    };
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
