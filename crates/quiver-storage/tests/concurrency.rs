//! Readers against one writer, in one process: N reader threads and a writer thread hammer one
//! collection for a bounded time while seals and compactions run, and every read checks:
//!
//! - a snapshot never shows a half-applied batch (each batch writes or deletes `B` documents that
//!   share a `batch` payload value: a snapshot sees all `B` of them or none);
//! - counts never go backwards within a snapshot (counting twice gives the same answer, and the
//!   inserted-so-far counter of successive snapshots only grows);
//! - every acknowledged write is visible to snapshots taken after its acknowledgement (the writer
//!   publishes the acknowledged sequence number and id; a later snapshot must have that `seq` and
//!   find that document).

use quiver_storage::{Database, DocId, Document, Filter, Schema};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::sync::Arc;
use std::time::{Duration, Instant};

const B: u64 = 50;

fn doc(id: u64, batch: u64, round: u64) -> Document {
    let mut d = Document {
        id: Some(DocId::Int(id)),
        ..Default::default()
    };
    let x = (id as f32 * 0.37).sin();
    d.vectors
        .insert("emb".into(), vec![x, 1.0 - x, 0.5, round as f32]);
    d.payload.insert("batch".into(), batch.into());
    d.payload.insert("round".into(), round.into());
    d.payload
        .insert("text".into(), format!("doc {id} batch {batch}").into());
    d
}

#[test]
fn readers_see_whole_batches_monotone_counts_and_every_acknowledged_write() {
    let seed = std::env::var("QUIVER_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0xC0C0_u64);
    eprintln!("seed {seed}");
    let dir = tempfile::tempdir().expect("tempdir");
    let db = Database::open(dir.path()).expect("open");
    let schema = Schema::parse(
        "mutable_max_rows = 700\n[fields.emb]\ntype = \"dense\"\ndim = 4\nmetric = \"l2\"\nindex = { type = \"hnsw\", m = 8, ef_construction = 32 }\n[fields.batch]\ntype = \"integer\"\n[fields.round]\ntype = \"integer\"\n[fields.text]\ntype = \"keyword\"\n[fields.body]\ntype = \"text\"\nsource = [\"text\"]\n",
    )
    .expect("schema");
    let c = db.create_collection("c", &schema).expect("create");
    let stop = Arc::new(AtomicBool::new(false));
    // (seq, id) of the last acknowledged upsert, packed: seq << 32 | id.
    let acked = Arc::new(AtomicU64::new(0));
    let batches_started = Arc::new(AtomicU64::new(0));
    // Batches the writer has deleted, or is about to (recorded before the delete is issued).
    let doomed = Arc::new(parking_lot::Mutex::new(
        std::collections::HashSet::<u64>::new(),
    ));
    let run_for = Duration::from_secs(6);

    let writer = {
        let (c, stop, acked, started) = (
            c.clone(),
            stop.clone(),
            acked.clone(),
            batches_started.clone(),
        );
        let doomed = doomed.clone();
        std::thread::spawn(move || {
            let mut rng = seed;
            let mut next = || {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                rng
            };
            let t0 = Instant::now();
            let mut batch = 0u64;
            let (mut seals, mut deletes, mut rewrites) = (0, 0, 0);
            while t0.elapsed() < run_for {
                let r = next() % 10;
                if r == 0 && batch > 2 {
                    // Delete a whole earlier batch, by filter.
                    let victim = next() % batch;
                    doomed.lock().insert(victim);
                    let f = Filter::from_json(&serde_json::json!({"field": "batch", "eq": victim}))
                        .expect("filter");
                    c.delete_by_filter(&f).expect("delete");
                    deletes += 1;
                } else if r == 1 && batch > 2 {
                    // Rewrite a whole earlier batch in one upsert (same ids, new round).
                    let b = next() % batch;
                    let round = next() % 1000;
                    let docs = (b * B..(b + 1) * B).map(|i| doc(i, b, round)).collect();
                    c.upsert(docs).expect("rewrite");
                    rewrites += 1;
                } else {
                    started.store(batch + 1, SeqCst);
                    let docs = (batch * B..(batch + 1) * B)
                        .map(|i| doc(i, batch, 0))
                        .collect();
                    let rep = c.upsert(docs).expect("upsert");
                    assert!(
                        rep.maintenance_error.is_none(),
                        "{:?}",
                        rep.maintenance_error
                    );
                    acked.store(rep.seq << 32 | ((batch + 1) * B - 1), SeqCst);
                    batch += 1;
                }
                if next() % 40 == 0 {
                    c.flush().expect("flush");
                    seals += 1;
                }
            }
            stop.store(true, SeqCst);
            (batch, seals, deletes, rewrites)
        })
    };

    let readers: Vec<_> = (0..3)
        .map(|t| {
            let (c, stop, acked, started) = (
                c.clone(),
                stop.clone(),
                acked.clone(),
                batches_started.clone(),
            );
            let doomed = doomed.clone();
            std::thread::spawn(move || {
                let mut reads = 0u64;
                let mut last_seq = 0u64;
                while !stop.load(SeqCst) {
                    let a = acked.load(SeqCst);
                    let (aseq, aid) = (a >> 32, a & 0xFFFF_FFFF);
                    let snap = c.snapshot();
                    assert!(
                        snap.seq() >= aseq,
                        "reader {t}: snapshot {} before ack {aseq}",
                        snap.seq()
                    );
                    assert!(
                        snap.seq() >= last_seq,
                        "reader {t}: snapshots went backwards"
                    );
                    last_seq = snap.seq();
                    if aseq > 0 {
                        // Missing is allowed only for a batch the writer deleted since.
                        let d = snap.get(&DocId::Int(aid));
                        assert!(
                            d.is_some() || doomed.lock().contains(&(aid / B)),
                            "reader {t}: acknowledged id {aid} (seq {aseq}) missing"
                        );
                    }
                    // Whole batches only: per batch value, 0 or B visible documents.
                    let mut per_batch: std::collections::HashMap<u64, (u64, u64)> =
                        Default::default();
                    let mut n = 0u64;
                    snap.for_each_visible(None, |id| {
                        n += 1;
                        let DocId::Int(i) = id else { panic!("int ids") };
                        per_batch.entry(i / B).or_default().0 += 1;
                    });
                    let (docs, _) = snap.scroll(None, usize::MAX, None);
                    for d in &docs {
                        let b = d.payload["batch"].as_u64().expect("batch");
                        let DocId::Int(i) = d.id else {
                            panic!("int ids")
                        };
                        assert_eq!(i / B, b, "payload of {i} from another batch");
                        // A rewrite replaces a batch whole: one round per batch.
                        let round = d.payload["round"].as_u64().expect("round");
                        let e = per_batch.entry(b).or_default();
                        if e.1 == 0 {
                            e.1 = round + 1;
                        }
                        assert_eq!(e.1, round + 1, "reader {t}: batch {b} shows two rounds");
                    }
                    for (b, (cnt, _)) in &per_batch {
                        assert_eq!(*cnt, B, "reader {t}: batch {b} half visible ({cnt} of {B})");
                    }
                    assert_eq!(
                        docs.len() as u64,
                        n,
                        "reader {t}: scroll and count disagree"
                    );
                    assert_eq!(
                        snap.count(None) as u64,
                        n,
                        "reader {t}: a count changed within a snapshot"
                    );
                    assert!(
                        per_batch.keys().all(|&b| b < started.load(SeqCst)),
                        "reader {t}: a batch visible before it was written"
                    );
                    reads += 1;
                }
                reads
            })
        })
        .collect();

    let (batches, seals, deletes, rewrites) = writer.join().expect("writer");
    let reads: Vec<u64> = readers
        .into_iter()
        .map(|r| r.join().expect("reader"))
        .collect();
    let info = c.info();
    eprintln!(
        "batches {batches}, deletes {deletes}, rewrites {rewrites}, explicit seals {seals}, \
         segments now {}, reads per reader {reads:?}",
        info.segments.len()
    );
    assert!(
        batches > 20 && reads.iter().all(|&r| r > 5),
        "too little work to mean anything"
    );
    // More rows than one mutable segment holds were written, so automatic seals ran too.
    assert!(batches * B > 2 * 700);
}
