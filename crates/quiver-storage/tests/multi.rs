//! Multi-vector fields: durable round trips through the WAL, seals, compaction and reopen; MUVERA
//! encodings identical across restarts; validation errors that name the field.

use quiver_index::multi::muvera::FdeEncoder;
use quiver_index::Vectors;
use quiver_storage::{Database, DocId, Document, Schema, StorageError};
use serde_json::json;

const DIM: usize = 6;

fn schema(rows: usize) -> Schema {
    Schema::parse(&format!(
        r#"mutable_max_rows = {rows}
[fields.emb]
type = "dense"
dim = 2
metric = "l2"
[fields.tok]
type = "multi"
dim = {DIM}
metric = "dot"
muvera = {{ k_sim = 3, d_proj = 4, r_reps = 5, seed = 9 }}
index = {{ type = "hnsw", m = 8, ef_construction = 40 }}
"#
    ))
    .expect("schema")
}

fn set(i: u64) -> Vec<Vec<f32>> {
    let n = 1 + (i % 5) as usize;
    (0..n)
        .map(|t| {
            (0..DIM)
                .map(|j| ((i as usize * 13 + t * 7 + j * 3) % 17) as f32 / 4.0 - 2.0)
                .collect()
        })
        .collect()
}

fn doc(i: u64) -> Document {
    let mut d = Document {
        id: Some(DocId::Int(i)),
        ..Default::default()
    };
    d.vectors.insert("emb".into(), vec![i as f32, 1.0]);
    d.multi.insert("tok".into(), set(i));
    d.payload.insert("n".into(), json!(i));
    d
}

#[test]
fn multi_vectors_survive_seal_compaction_and_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let db = Database::open(dir.path()).expect("open");
        let c = db.create_collection("c", &schema(50)).expect("create");
        for b in 0..4u64 {
            c.upsert((b * 50..b * 50 + 50).map(doc).collect())
                .expect("upsert");
        }
        // Replace some, delete some, leave some in the mutable segment (WAL only).
        let mut repl = doc(7);
        repl.multi.insert("tok".into(), set(1000));
        c.upsert(vec![repl]).expect("replace");
        c.delete(&[DocId::Int(8)]).expect("delete");
        c.upsert((200..230).map(doc).collect()).expect("upsert");
        assert_eq!(c.get(&DocId::Int(3)).expect("doc 3").multi["tok"], set(3));
        c.compact().expect("compact");
        let info = c.info();
        assert_eq!(info.multi.len(), 1);
        assert_eq!(info.multi[0].documents, 229);
        assert_eq!(info.multi[0].raw_vectors, info.multi[0].kept_vectors);
    }
    let db = Database::open(dir.path()).expect("reopen");
    let c = db.collection("c").expect("collection");
    for i in 0..230u64 {
        let got = c.get(&DocId::Int(i));
        match i {
            8 => assert!(got.is_none()),
            7 => assert_eq!(got.expect("7").multi["tok"], set(1000)),
            _ => {
                let d = got.unwrap_or_else(|| panic!("doc {i} lost"));
                assert_eq!(d.multi["tok"], set(i), "doc {i}");
                assert_eq!(d.multi_raw["tok"], set(i).len() as u32);
            }
        }
    }
    // Every sealed row's FDE is the encoding of its stored set, with the schema's parameters.
    let snap = c.snapshot();
    let field = snap.schema().multi("tok").expect("field");
    let params = field.spec.muvera.params().expect("muvera on");
    let enc = FdeEncoder::new(DIM, params).expect("encoder");
    let mut checked = 0;
    for seg in snap.sealed_segments() {
        let sets = seg.multi("tok").expect("sets");
        let (fde, graph) = seg.fde("tok").expect("fde");
        assert!(graph.is_some());
        assert_eq!(fde.len(), seg.rows());
        for r in 0..seg.rows() as u32 {
            assert_eq!(fde.row(r), enc.encode_document(sets.doc(r)).as_slice());
            checked += 1;
        }
    }
    assert!(checked > 0);
}

#[test]
fn fde_files_are_identical_across_restarts_and_rebuilds() {
    let dir = tempfile::tempdir().expect("tempdir");
    let read = |p: &std::path::Path| -> Vec<(String, Vec<u8>)> {
        let segs = p.join("collections").join("c").join("segments");
        let mut out = Vec::new();
        for e in std::fs::read_dir(&segs).expect("segments") {
            let d = e.expect("entry").path();
            for f in std::fs::read_dir(&d).expect("seg") {
                let f = f.expect("file").path();
                let name = f.file_name().expect("name").to_string_lossy().to_string();
                if name.starts_with("fde.") {
                    out.push((name, std::fs::read(&f).expect("read")));
                }
            }
        }
        out
    };
    let mut firsts = Vec::new();
    for round in 0..2 {
        let sub = dir.path().join(format!("r{round}"));
        let db = Database::open(&sub).expect("open");
        let c = db.create_collection("c", &schema(1000)).expect("create");
        c.upsert((0..40).map(doc).collect()).expect("upsert");
        c.flush().expect("flush");
        drop(c);
        drop(db);
        let files = read(&sub);
        assert_eq!(files.len(), 1);
        firsts.push(files);
    }
    assert_eq!(
        firsts[0], firsts[1],
        "the same documents must encode identically"
    );
    // Queries too: an encoder rebuilt from the persisted schema gives the same bits.
    let db = Database::open(dir.path().join("r0")).expect("reopen");
    let c = db.collection("c").expect("c");
    let p = c
        .schema()
        .multi("tok")
        .expect("f")
        .spec
        .muvera
        .params()
        .expect("on");
    let q: Vec<f32> = set(3).concat();
    let a = FdeEncoder::new(DIM, p)
        .expect("enc")
        .encode_query(Vectors::new(&q, DIM));
    let b = FdeEncoder::new(DIM, p)
        .expect("enc")
        .encode_query(Vectors::new(&q, DIM));
    assert_eq!(a, b);
}

#[test]
fn bad_multi_input_is_rejected_with_the_field_named() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = Database::open(dir.path()).expect("open");
    let c = db.create_collection("c", &schema(100)).expect("create");
    let cases: Vec<(Document, &str)> = vec![
        (
            {
                let mut d = doc(1);
                d.multi.remove("tok");
                d
            },
            "missing multi vectors",
        ),
        (
            {
                let mut d = doc(1);
                d.multi.insert("tok".into(), vec![]);
                d
            },
            "at least one vector",
        ),
        (
            {
                let mut d = doc(1);
                d.multi
                    .insert("tok".into(), vec![vec![1.0; DIM], vec![1.0; 3]]);
                d
            },
            "vector 1: wrong dimension",
        ),
        (
            {
                let mut d = doc(1);
                d.multi.insert("tok".into(), vec![vec![f32::NAN; DIM]]);
                d
            },
            "NaN",
        ),
        (
            {
                let mut d = doc(1);
                d.multi.insert("other".into(), vec![vec![1.0; DIM]]);
                d
            },
            "unknown multi-vector field",
        ),
    ];
    for (d, want) in cases {
        let e = c.upsert(vec![doc(2), d]).expect_err("must fail");
        let msg = e.to_string();
        assert!(msg.contains(want), "{msg}");
        assert!(matches!(e, StorageError::InBatch { index: 1, .. }));
    }
    assert_eq!(c.count(None), 0, "nothing of a failed batch is written");
    for bad in [
        r#"{"fields": {"t": {"type": "multi", "dim": 4, "metric": "l2"}}}"#,
        r#"{"fields": {"t": {"type": "multi", "dim": 0}}}"#,
        r#"{"fields": {"t": {"type": "multi", "dim": 4, "muvera": {"k_sim": 20}}}}"#,
        r#"{"fields": {"t": {"type": "multi", "dim": 4, "prune": {"fraction": 1.5}}}}"#,
        r#"{"fields": {"t": {"type": "multi", "dim": 4, "prune": {}}}}"#,
        r#"{"fields": {"t": {"type": "multi", "dim": 4, "bogus": 1}}}"#,
    ] {
        let e = Schema::parse(bad).expect_err(bad);
        println!("{bad} -> {e}");
    }
}

#[test]
fn pruning_keeps_a_fraction_and_info_reports_raw_and_kept() {
    let schema = Schema::parse(
        r#"{"mutable_max_rows": 30, "fields": {"tok": {"type": "multi", "dim": 6, "metric": "cosine",
            "prune": {"fraction": 0.34}, "muvera": {"k_sim": 2, "d_proj": 4, "r_reps": 2}}}}"#,
    )
    .expect("schema");
    let dir = tempfile::tempdir().expect("tempdir");
    let db = Database::open(dir.path()).expect("open");
    let c = db.create_collection("c", &schema).expect("create");
    // 12 vectors per document in 3 tight groups: 0.34 keeps ceil(4.08) = 5 centroids.
    let docs: Vec<Document> = (0..40u64)
        .map(|i| {
            let mut d = Document {
                id: Some(DocId::Int(i)),
                ..Default::default()
            };
            let set: Vec<Vec<f32>> = (0..12)
                .map(|t| {
                    let mut v = vec![0.01 * t as f32; DIM];
                    v[(t % 3) as usize] = 1.0 + i as f32 * 0.01;
                    v
                })
                .collect();
            d.multi.insert("tok".into(), set);
            d
        })
        .collect();
    c.upsert(docs).expect("upsert");
    let info = c.info();
    assert_eq!(info.multi[0].documents, 40);
    assert_eq!(info.multi[0].raw_vectors, 40 * 12);
    assert_eq!(info.multi[0].kept_vectors, 40 * 5);
    let d = c.get(&DocId::Int(3)).expect("doc");
    assert_eq!(d.multi["tok"].len(), 5);
    assert_eq!(d.multi_raw["tok"], 12);
    for v in &d.multi["tok"] {
        let n: f32 = v.iter().map(|x| x * x).sum();
        assert!(
            (n - 1.0).abs() < 1e-4,
            "centroids are renormalised for cosine"
        );
    }
    drop(c);
    drop(db);
    let db = Database::open(dir.path()).expect("reopen");
    let c = db.collection("c").expect("c");
    assert_eq!(c.info().multi, info.multi);
}
