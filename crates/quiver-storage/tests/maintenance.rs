//! Background seals and merges. An ingest that triggers dozens of seals and several merges keeps
//! being acknowledged while each merge runs (timestamps of every acknowledgement against every
//! merge's interval), loses nothing, and its graph recall after the merges stays within 0.01 of
//! a collection built in one piece from the same vectors.

use quiver_index::{Neighbor, RowFilter};
use quiver_storage::{Collection, Database, DocId, Document, Knn, Schema, Snapshot};
use std::time::{Duration, Instant, SystemTime};

const DIM: usize = 16;
const N: u64 = 60_000;
const BATCH: u64 = 100;

use quiver_eval::uniform as rng;

fn schema(rows: usize) -> Schema {
    Schema::parse(&format!(
        "mutable_max_rows = {rows}\n[fields.emb]\ntype = \"dense\"\ndim = {DIM}\nmetric = \"cosine\"\nindex = {{ type = \"hnsw\", m = 12, ef_construction = 100 }}\n"
    ))
    .expect("schema")
}

fn docs(vectors: &[Vec<f32>], range: std::ops::Range<u64>) -> Vec<Document> {
    range
        .map(|i| {
            let mut d = Document {
                id: Some(DocId::Int(i)),
                ..Default::default()
            };
            d.vectors.insert("emb".into(), vectors[i as usize].clone());
            d
        })
        .collect()
}

/// Top 10 ids by an HNSW walk (ef 64) on every segment, merged by score.
fn graph_top10(snap: &Snapshot, q: &[f32]) -> Vec<DocId> {
    let mut all: Vec<(f32, DocId)> = Vec::new();
    for s in 0..snap.segments() {
        let seg = snap.segment(s);
        let Some(index) = seg.dense("emb") else {
            continue;
        };
        let visible = |r: u32| seg.visible(r, snap.seq());
        let req = Knn {
            k: 10,
            ef: 64,
            allowed: &visible as &dyn RowFilter,
            rows: None,
            graph: true,
        };
        let hits: Vec<Neighbor> = index.search(q, req);
        all.extend(hits.into_iter().map(|h| (h.score, seg.id(h.id))));
    }
    all.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    all.into_iter().take(10).map(|(_, id)| id).collect()
}

fn recall(c: &Collection, vectors: &[Vec<f32>], queries: &[Vec<f32>]) -> f64 {
    let snap = c.snapshot();
    let mut hit = 0usize;
    for q in queries {
        let mut qn = q.clone();
        quiver_linalg::normalize(&mut qn);
        let mut exact: Vec<(f32, u64)> = vectors
            .iter()
            .enumerate()
            .map(|(i, v)| {
                let mut v = v.clone();
                quiver_linalg::normalize(&mut v);
                (quiver_linalg::dot(&qn, &v), i as u64)
            })
            .collect();
        exact.sort_by(|a, b| b.0.total_cmp(&a.0));
        let truth: Vec<DocId> = exact[..10].iter().map(|x| DocId::Int(x.1)).collect();
        let got = graph_top10(&snap, &qn);
        hit += got.iter().filter(|id| truth.contains(id)).count();
    }
    hit as f64 / (10 * queries.len()) as f64
}

#[test]
fn acknowledgements_never_wait_on_merges_and_merges_keep_recall() {
    let seed = 0x4D45_5247;
    eprintln!("seed {seed}");
    let mut r = rng(seed);
    let vectors: Vec<Vec<f32>> = (0..N).map(|_| (0..DIM).map(|_| r()).collect()).collect();
    let queries: Vec<Vec<f32>> = (0..100).map(|_| (0..DIM).map(|_| r()).collect()).collect();

    let dir = tempfile::tempdir().expect("tempdir");
    let db = Database::open(dir.path()).expect("open");
    let c = db.create_collection("c", &schema(500)).expect("create");
    // (acknowledged at, latency, back-pressure wait) of every batch.
    let mut acks: Vec<(SystemTime, Duration, Duration)> = Vec::new();
    let start = Instant::now();
    for b in 0..N / BATCH {
        let t = Instant::now();
        let rep = c
            .upsert(docs(&vectors, b * BATCH..(b + 1) * BATCH))
            .expect("upsert");
        assert!(
            rep.maintenance_error.is_none(),
            "{:?}",
            rep.maintenance_error
        );
        acks.push((SystemTime::now(), t.elapsed(), rep.waited));
    }
    let ingest = start.elapsed();
    let last_ack = acks.last().expect("acks").0;
    c.wait_for_maintenance().expect("settle");
    let history = c.maintenance_history();
    let seals = history.iter().filter(|h| h.kind == "seal").count();
    let merges: Vec<_> = history.iter().filter(|h| h.kind == "merge").collect();
    assert!(history.iter().all(|h| h.ok), "{history:?}");
    let mut lat: Vec<Duration> = acks.iter().map(|a| a.1).collect();
    lat.sort();
    let waited: Duration = acks.iter().map(|a| a.2).sum();
    println!(
        "ingest {N} docs in {ingest:?}: {seals} seals, {} merges; ack p50 {:?} p99 {:?} max {:?}; back-pressure {waited:?} in all",
        merges.len(),
        lat[lat.len() / 2],
        lat[lat.len() * 99 / 100],
        lat[lat.len() - 1],
    );
    assert!(seals >= 40, "{seals} seals");
    // Every merge that overlapped the ingest for 20 ms or more saw acknowledgements complete
    // inside that overlap: writes did not wait for it. (Merges build at a lower CPU priority,
    // so the last ones may end after the last acknowledgement; only the overlap counts.)
    let mut during = 0;
    for m in &merges {
        let end = (m.started + m.duration).min(last_ack);
        let overlap = end.duration_since(m.started).unwrap_or_default();
        if overlap < Duration::from_millis(20) {
            continue;
        }
        let inside = acks.iter().filter(|a| a.0 > m.started && a.0 < end).count();
        println!(
            "merge of {} segments, {} rows ({} kept their graph links), {:?} ({overlap:?} of it during the ingest): {inside} acknowledgements completed then",
            m.inputs, m.rows, m.reused_graph_rows, m.duration
        );
        assert!(
            inside > 0,
            "no acknowledgement during a {:?} merge",
            m.duration
        );
        during += 1;
    }
    assert!(
        during >= 2,
        "only {during} merges ran during the ingest: {merges:?}"
    );
    // And no acknowledgement took as long as any of those merges: none waited for one.
    let shortest = merges
        .iter()
        .filter(|m| {
            let end = (m.started + m.duration).min(last_ack);
            end.duration_since(m.started).unwrap_or_default() >= Duration::from_millis(20)
        })
        .map(|m| m.duration)
        .min()
        .expect("merges");
    assert!(
        lat[lat.len() - 1] < shortest,
        "an acknowledgement took {:?}, as long as a merge ({shortest:?})",
        lat[lat.len() - 1]
    );
    // Nothing lost.
    assert_eq!(c.count(None), N as usize);
    for i in (0..N).step_by(997) {
        let d = c.get(&DocId::Int(i)).expect("document");
        let mut want = vectors[i as usize].clone();
        quiver_linalg::normalize(&mut want);
        assert_eq!(d.vectors["emb"], want);
    }
    // Recall after the merges against one fresh build of the same vectors.
    let fresh = db
        .create_collection("fresh", &schema(1_000_000))
        .expect("create");
    for b in 0..N / 10_000 {
        fresh
            .upsert(docs(&vectors, b * 10_000..(b + 1) * 10_000))
            .expect("upsert");
    }
    fresh.flush().expect("flush");
    let (merged, one) = (
        recall(&c, &vectors, &queries),
        recall(&fresh, &vectors, &queries),
    );
    println!(
        "recall@10 at ef 64: after merges {merged:.4} ({} segments), fresh build {one:.4} (1 segment)",
        c.info().segments.len()
    );
    assert!(
        merged >= one - 0.01,
        "recall after merges {merged} vs fresh {one}"
    );
    // Disk space comes back: once everything is sealed, the logs are (nearly) empty and merged
    // inputs are gone, so the collection takes little more than its segments.
    c.flush().expect("flush");
    c.wait_for_maintenance().expect("settle");
    let info = c.info();
    println!(
        "disk: {} bytes in all, segments {}, logs {}, {:.1} bytes per document",
        info.disk_bytes, info.segment_bytes, info.wal_bytes, info.disk_bytes_per_document
    );
    assert!(
        info.disk_bytes as f64 <= 1.3 * info.segment_bytes as f64,
        "{info:?}"
    );
}
