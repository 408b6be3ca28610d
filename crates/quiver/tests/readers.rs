//! Readers beside writers, through the engine API:
//!
//! - an on-disk fixture of collection format 1 (`fixtures/format1`, written by the version that
//!   kept recent writes in `wal.redb`) opens read-only without a change on disk, then for writing,
//!   which moves its WAL into the new log, and every answer matches what that version printed;
//! - search latency while a writer ingests (seals included): p99 within 3x of idle.

use quiver::{Database, DocId, Document, Mode, Query, Schema};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dest = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &dest);
        } else {
            std::fs::copy(e.path(), &dest).unwrap();
        }
    }
}

fn tree(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            out.extend(tree(&e.path()));
        } else {
            out.push((e.path(), std::fs::read(e.path()).unwrap()));
        }
    }
    out.sort();
    out
}

fn fixture() -> (tempfile::TempDir, PathBuf, PathBuf) {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/format1");
    let tmp = tempfile::tempdir().unwrap();
    copy_dir(&src.join("db"), &tmp.path().join("db"));
    let db = tmp.path().join("db");
    (tmp, src, db)
}

fn expected(src: &Path, name: &str) -> Value {
    serde_json::from_str(&std::fs::read_to_string(src.join(name)).unwrap()).unwrap()
}

/// The answers of the fixture's version, compared to this one's on `db`.
fn check_answers(db: &Database, src: &Path) {
    let c = db.collection("legacy").unwrap();
    assert_eq!(c.count(None).unwrap(), 23);
    let hits = |q: Query| -> Vec<(Value, f32)> {
        c.query(&q)
            .unwrap()
            .hits
            .iter()
            .map(|h| (h.id.to_json(), h.score))
            .collect()
    };
    let want = |v: Value| -> Vec<(Value, f32)> {
        v["hits"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| (h["id"].clone(), h["score"].as_f64().unwrap() as f32))
            .collect()
    };
    let mut dense = Query::vector(vec![1.0, 0.0, 0.0, 0.0]);
    dense.exact = true;
    assert_eq!(hits(dense), want(expected(src, "dense_exact.json")));
    assert_eq!(
        hits(Query::text("cats").with_mode(Mode::Bm25)),
        want(expected(src, "bm25_cats.json"))
    );
    let get = expected(src, "get.json");
    for d in get["documents"].as_array().unwrap() {
        let id = DocId::from_json(&d["id"]).unwrap();
        let stored = c
            .get(&id)
            .unwrap()
            .unwrap_or_else(|| panic!("{id} missing"));
        assert_eq!(Value::Object(stored.payload), d["payload"]);
    }
    for id in get["missing"].as_array().unwrap() {
        assert!(c.get(&DocId::from_json(id).unwrap()).unwrap().is_none());
    }
}

#[test]
fn format1_fixture_opens_read_only_unchanged_then_upgrades_for_writing() {
    let (_tmp, src, dir) = fixture();
    let cdir = dir.join("collections/legacy");
    let before = tree(&dir);
    {
        let db = Database::open_read_only(&dir).unwrap();
        check_answers(&db, &src);
        let c = db.collection("legacy").unwrap();
        assert!(
            c.upsert(vec![Document::default()]).is_err(),
            "read-only accepts writes"
        );
    }
    let after: Vec<_> = tree(&dir)
        .into_iter()
        .filter(|(p, _)| p.file_name().is_some_and(|n| n != "READERS"))
        .collect();
    assert_eq!(after, before, "a read-only open changed files");
    {
        let db = Database::open(&dir).unwrap();
        check_answers(&db, &src);
    }
    assert!(
        !cdir.join("wal.redb").exists(),
        "the redb WAL was not moved"
    );
    let manifest: Value =
        serde_json::from_str(&std::fs::read_to_string(cdir.join("manifest.json")).unwrap())
            .unwrap();
    assert_eq!(manifest["format"], 2);
    // Upgraded: the same answers after another open, a write, and a seal.
    let db = Database::open(&dir).unwrap();
    check_answers(&db, &src);
    let c = db.collection("legacy").unwrap();
    let mut d = Document {
        id: Some(DocId::Int(100)),
        ..Default::default()
    };
    d.vectors.insert("emb".into(), vec![0.0, 0.0, 0.0, 1.0]);
    d.payload.insert("tag".into(), json!("new"));
    d.payload.insert("text".into(), json!("a new document"));
    c.upsert(vec![d]).unwrap();
    c.flush().unwrap();
    assert_eq!(c.count(None).unwrap(), 24);
    c.delete(&[DocId::Int(100)]).unwrap();
    drop(c);
    drop(db);
    check_answers(&Database::open(&dir).unwrap(), &src);
}

fn pct(xs: &[Duration], p: usize) -> Duration {
    let mut xs = xs.to_vec();
    xs.sort();
    xs[(xs.len() * p).div_ceil(100).max(1) - 1]
}

fn p99(xs: Vec<Duration>) -> Duration {
    eprintln!(
        "  p50 {:?} p90 {:?} p99 {:?} max {:?} (n = {})",
        pct(&xs, 50),
        pct(&xs, 90),
        pct(&xs, 99),
        pct(&xs, 100),
        xs.len()
    );
    pct(&xs, 99)
}

fn vector(i: u64, dim: usize) -> Vec<f32> {
    // A fixed pseudo-random vector per id (xorshift over the id).
    let mut s = i.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..dim)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s % 2000) as f32 / 1000.0 - 1.0
        })
        .collect()
}

fn docs(from: u64, n: u64, dim: usize) -> Vec<Document> {
    (from..from + n)
        .map(|i| {
            let mut d = Document {
                id: Some(DocId::Int(i)),
                ..Default::default()
            };
            d.vectors.insert("emb".into(), vector(i, dim));
            d.payload
                .insert("text".into(), json!(format!("document {i} word{}", i % 97)));
            d
        })
        .collect()
}

#[test]
fn search_p99_while_a_writer_ingests_stays_within_3x_of_idle() {
    const DIM: usize = 64;
    // What this measures is waiting: a search must never wait on the writer. On a machine with
    // fewer cores than runnable threads, a search also waits for a core (the scheduler's time
    // slice, milliseconds), which is no lock of ours; so the writer's index builds get one
    // thread (`QUIVER_P99_BUILD_THREADS` overrides), leaving a core to the searching thread.
    let build_threads = std::env::var("QUIVER_P99_BUILD_THREADS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1);
    let builds = Arc::new(
        rayon::ThreadPoolBuilder::new()
            .num_threads(build_threads)
            .build()
            .unwrap(),
    );
    eprintln!(
        "index builds on {build_threads} thread(s), {} cores",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    let dir = tempfile::tempdir().unwrap();
    let db = Database::open(dir.path()).unwrap();
    let schema = Schema::parse(&format!(
        "mutable_max_rows = 4000\n[fields.emb]\ntype = \"dense\"\ndim = {DIM}\nmetric = \"cosine\"\nindex = {{ type = \"hnsw\", m = 12, ef_construction = 64 }}\n[fields.text]\ntype = \"keyword\"\n[fields.body]\ntype = \"text\"\nsource = [\"text\"]\n"
    ))
    .unwrap();
    let c = db.create_collection("c", &schema).unwrap();
    for b in 0..4 {
        c.upsert(docs(b * 2000, 2000, DIM)).unwrap();
    }
    // Sealed rows plus a full-ish mutable segment, as a collection looks mid-ingest.
    c.flush().unwrap();
    c.upsert(docs(8000, 3000, DIM)).unwrap();
    let queries: Vec<Query> = (0..300u64)
        .map(|i| {
            if i % 3 == 0 {
                Query::text(format!("word{}", i % 97)).with_mode(Mode::Bm25)
            } else {
                Query::vector(vector(1_000_000 + i, DIM))
            }
        })
        .collect();
    let run = |c: &quiver::Collection| -> Vec<Duration> {
        queries
            .iter()
            .map(|q| {
                let t = Instant::now();
                let r = c.query(q).unwrap();
                assert!(!r.hits.is_empty());
                t.elapsed()
            })
            .collect()
    };
    run(&c); // warm up
             // Paired windows over the same, growing collection: the writer ingests without pause during
             // a busy window and is held between two batches during the idle window that follows, so both
             // see the same segments and mutable rows. Busy windows include seals and compactions.
    let gate = Arc::new((
        parking_lot::Mutex::new((false, false)),
        parking_lot::Condvar::new(),
    ));
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (c, stop, gate, builds) = (c.clone(), stop.clone(), gate.clone(), builds.clone());
        std::thread::spawn(move || {
            let mut next = 11_000u64;
            let (mut batches, mut lat) = (0, Vec::new());
            while !stop.load(SeqCst) {
                {
                    let (m, cv) = &*gate;
                    let mut g = m.lock();
                    while g.0 && !stop.load(SeqCst) {
                        g.1 = true; // paused
                        cv.notify_all();
                        cv.wait(&mut g);
                    }
                    g.1 = false;
                }
                let t = Instant::now();
                // Seals run inside the upsert that crosses the threshold, on `builds`.
                builds.install(|| c.upsert(docs(next, 200, DIM))).unwrap();
                lat.push(t.elapsed());
                next += 200;
                batches += 1;
            }
            (batches, next - 11_000, lat)
        })
    };
    let (mut busy_runs, mut idle_runs) = (Vec::new(), Vec::new());
    for _ in 0..10 {
        busy_runs.extend(run(&c));
        {
            let (m, cv) = &*gate;
            let mut g = m.lock();
            g.0 = true;
            while !g.1 {
                cv.wait(&mut g);
            }
        }
        idle_runs.extend(run(&c));
        let (m, cv) = &*gate;
        m.lock().0 = false;
        cv.notify_all();
    }
    stop.store(true, SeqCst);
    gate.1.notify_all();
    let (batches, written, lat) = writer.join().unwrap();
    eprintln!("idle windows:");
    let idle = p99(idle_runs);
    eprintln!("busy windows:");
    let busy = p99(busy_runs);
    let ratio = busy.as_secs_f64() / idle.as_secs_f64();
    eprintln!(
        "search p99 idle {idle:?}, while ingesting {busy:?} (ratio {ratio:.2}); writer: {batches} \
         batches, {written} documents, slowest batch {:?}, segments now {}",
        lat.iter().max().unwrap(),
        c.info().segments.len()
    );
    assert!(
        written >= 4000,
        "the writer must cross a seal during the measurement"
    );
    assert!(
        ratio <= 3.0,
        "p99 under ingest {busy:?} vs idle {idle:?}: {ratio:.2}x"
    );
}
