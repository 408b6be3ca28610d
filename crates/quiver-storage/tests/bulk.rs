//! Bulk loads: documents straight into sealed segments, replacing what they overlap, durable
//! across reopen, and all-or-nothing on bad input.

use quiver_storage::{Database, DocId, Document, Schema, StorageError};
use serde_json::json;

const DIM: usize = 8;

fn schema() -> Schema {
    Schema::parse(&format!(
        "mutable_max_rows = 100000\n[fields.emb]\ntype = \"dense\"\ndim = {DIM}\nmetric = \"l2\"\nindex = {{ type = \"hnsw\", m = 8, ef_construction = 50 }}\n[fields.v]\ntype = \"integer\"\n"
    ))
    .expect("schema")
}

fn doc(i: u64, version: i64) -> Document {
    let mut d = Document {
        id: Some(DocId::Int(i)),
        ..Default::default()
    };
    d.vectors.insert(
        "emb".into(),
        (0..DIM)
            .map(|j| ((i * 31 + j as u64 * 7) % 97) as f32 + version as f32)
            .collect(),
    );
    d.payload.insert("v".into(), json!(version));
    d
}

#[test]
fn bulk_load_replaces_overlaps_and_survives_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let db = Database::open(dir.path()).expect("open");
        let c = db.create_collection("c", &schema()).expect("create");
        // 0..100 sealed, 100..150 in the mutable segment, all version 1.
        c.upsert((0..100).map(|i| doc(i, 1)).collect())
            .expect("upsert");
        c.flush().expect("flush");
        c.upsert((100..150).map(|i| doc(i, 1)).collect())
            .expect("upsert");
        // Version 2 of 50..5,050: overlaps both.
        let rep = c
            .bulk_load((50..5050).map(|i| doc(i, 2)).collect(), 2000)
            .expect("bulk");
        assert_eq!(rep.count, 5000);
        let info = c.info();
        println!("segments after the load: {:?}", info.segments);
        // The load's three segments (the two it made half and wholly dead may already be
        // rewritten by the background merger).
        let loaded: Vec<(usize, usize)> = info
            .segments
            .iter()
            .filter(|s| s.1 >= 1000)
            .map(|s| (s.1, s.2))
            .collect();
        assert_eq!(
            loaded,
            [(2000, 2000), (2000, 2000), (1000, 1000)],
            "{:?}",
            info.segments
        );
        assert_eq!(info.mutable_rows, 0);
        assert_eq!(c.count(None), 5050);
        let (all, _) = c.snapshot().scroll(None, usize::MAX, None);
        assert_eq!(all.len(), 5050, "every id once");
        for d in &all {
            let DocId::Int(i) = d.id else {
                panic!("int id")
            };
            let version = if i < 50 { 1 } else { 2 };
            assert_eq!(d.payload["v"], json!(version), "doc {i}");
            assert_eq!(d.vectors["emb"], doc(i, version).vectors["emb"], "doc {i}");
        }
        // A write after the load goes through the log as usual.
        c.delete(&[DocId::Int(60)]).expect("delete");
    }
    let db = Database::open(dir.path()).expect("reopen");
    let c = db.collection("c").expect("collection");
    assert_eq!(c.count(None), 5049);
    assert!(c.get(&DocId::Int(60)).is_none());
    assert_eq!(c.get(&DocId::Int(70)).expect("70").payload["v"], json!(2));
    assert_eq!(c.get(&DocId::Int(10)).expect("10").payload["v"], json!(1));
    let (all, _) = c.snapshot().scroll(None, usize::MAX, None);
    assert_eq!(all.len(), 5049, "every id once after reopen");
    // The loaded segments are searchable by graph like any other.
    let snap = c.snapshot();
    let graphs = (0..snap.segments())
        .filter(|&s| snap.segment(s).dense("emb").is_some_and(|d| d.has_graph()))
        .count();
    assert!(graphs >= 3, "{graphs} segments with a graph");
}

#[test]
fn a_bad_document_loads_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = Database::open(dir.path()).expect("open");
    let c = db.create_collection("c", &schema()).expect("create");
    c.upsert((0..10).map(|i| doc(i, 1)).collect())
        .expect("upsert");
    let mut docs: Vec<Document> = (10..3000).map(|i| doc(i, 1)).collect();
    docs[2500].vectors.insert("emb".into(), vec![1.0; DIM + 1]);
    let err = c.bulk_load(docs, 1000).expect_err("a wrong dimension");
    assert!(
        matches!(err, StorageError::InBatch { index: 2500, .. }),
        "{err}"
    );
    assert_eq!(c.count(None), 10);
    let segs = std::fs::read_dir(dir.path().join("collections/c/segments"))
        .expect("segments")
        .count();
    assert_eq!(
        c.info().segments.len(),
        segs,
        "no segment written beside the listed ones"
    );
    drop(c);
    drop(db);
    let db = Database::open(dir.path()).expect("reopen");
    assert_eq!(db.collection("c").expect("c").count(None), 10);
}
