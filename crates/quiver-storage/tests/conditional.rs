//! `Collection::upsert_unchanged`, the conditional write under `quiver classify`: documents
//! rewritten or deleted after the snapshot the caller read are left as the other write made
//! them and reported; the rest are written. A stored document written back
//! (`StoredDoc::into_document`) keeps its pruned vector set and raw count: it is not pruned again.

use quiver_storage::{Database, DocId, Document, Schema};
use serde_json::json;

fn doc(i: u64, tag: &str, set: Vec<Vec<f32>>) -> Document {
    let mut d = Document {
        id: Some(DocId::Int(i)),
        ..Default::default()
    };
    d.payload.insert("tag".into(), json!(tag));
    d.vectors.insert("emb".into(), vec![i as f32 + 1.0, 1.0]);
    d.multi.insert("tok".into(), set);
    d
}

fn set(n: usize) -> Vec<Vec<f32>> {
    (0..n)
        .map(|t| {
            (0..4)
                .map(|j| ((t * 7 + j * 3) % 11) as f32 - 5.0)
                .collect()
        })
        .collect()
}

#[test]
fn conditional_upserts_skip_documents_written_since_and_keep_pruned_sets() {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::open(dir.path()).unwrap();
    let schema = Schema::parse(
        r#"{"fields": {"emb": {"type": "dense", "dim": 2, "metric": "l2"},
                       "tag": {"type": "keyword"},
                       "tok": {"type": "multi", "dim": 4, "metric": "dot", "prune": {"fraction": 0.5}}}}"#,
    )
    .unwrap();
    let c = db.create_collection("c", &schema).unwrap();
    c.upsert((0..4).map(|i| doc(i, "old", set(8))).collect())
        .unwrap();
    let snap = c.snapshot();
    let stored = snap.get(&DocId::Int(0)).unwrap();
    assert_eq!(
        stored.multi["tok"].len(),
        4,
        "pruned to half at the first write"
    );
    assert_eq!(stored.multi_raw["tok"], 8);

    // Other writes after the snapshot: doc 1 rewritten, doc 2 deleted.
    c.upsert(vec![doc(1, "theirs", set(2))]).unwrap();
    c.delete(&[DocId::Int(2)]).unwrap();

    let mine: Vec<Document> = (0..4)
        .map(|i| {
            let mut d = snap.get(&DocId::Int(i)).unwrap().into_document();
            d.payload.insert("tag".into(), json!("mine"));
            d
        })
        .collect();
    let (report, mut changed) = c.upsert_unchanged(mine, snap.seq()).unwrap();
    changed.sort_by_key(|d| d.to_string());
    assert_eq!(report.count, 2);
    assert_eq!(changed, vec![DocId::Int(1), DocId::Int(2)]);
    let now = c.snapshot();
    for i in [0u64, 3] {
        let d = now.get(&DocId::Int(i)).unwrap();
        assert_eq!(d.payload["tag"], json!("mine"));
        // Written back as stored: the pruned set as it was, the raw count kept.
        let before = snap.get(&DocId::Int(i)).unwrap();
        assert_eq!(
            d.multi["tok"], before.multi["tok"],
            "doc {i} was pruned again"
        );
        assert_eq!(d.multi_raw["tok"], 8);
        assert_eq!(d.vectors["emb"], before.vectors["emb"]);
    }
    assert_eq!(
        now.get(&DocId::Int(1)).unwrap().payload["tag"],
        json!("theirs")
    );
    assert!(
        now.get(&DocId::Int(2)).is_none(),
        "a deleted document came back"
    );

    // A bad document's position is the caller's, even when a changed one before it is skipped.
    let since = c.snapshot().seq();
    c.upsert(vec![doc(1, "later", set(2))]).unwrap();
    let seq = c.snapshot().seq();
    let mut bad = doc(3, "bad", set(2));
    bad.vectors.insert("emb".into(), vec![1.0; 5]);
    let skipped = doc(1, "skipped", set(2));
    let err = c.upsert_unchanged(vec![skipped, bad], since).unwrap_err();
    match &err {
        quiver_storage::StorageError::InBatch { index, .. } => assert_eq!(*index, 1, "{err}"),
        e => panic!("not a batch error: {e}"),
    }
    assert_eq!(c.snapshot().seq(), seq, "a failed batch wrote something");

    // A document without an id is refused, and nothing is written.
    let seq = c.snapshot().seq();
    let err = c
        .upsert_unchanged(vec![Document::default()], seq)
        .unwrap_err();
    assert!(err.to_string().contains("id"), "{err}");
    assert_eq!(c.snapshot().seq(), seq);
}
