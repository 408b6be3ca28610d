//! Storage behaviour across reopen, seal, compaction, corruption and concurrent readers.

use quiver_storage::{Database, DocId, Document, Filter, Schema, StorageError};
use serde_json::json;

fn schema(rows: usize) -> Schema {
    Schema::parse(&format!(
        "mutable_max_rows = {rows}\n[fields.emb]\ntype = \"dense\"\ndim = 4\nmetric = \"l2\"\nindex = {{ type = \"hnsw\", m = 8, ef_construction = 50 }}\n[fields.year]\ntype = \"integer\"\n[fields.lang]\ntype = \"keyword\"\n[fields.when]\ntype = \"datetime\"\n"
    ))
    .expect("schema")
}

fn doc(i: u64) -> Document {
    let mut d = Document {
        id: Some(DocId::Int(i)),
        ..Default::default()
    };
    d.vectors.insert(
        "emb".into(),
        vec![i as f32, (i % 7) as f32, 0.5, -(i as f32)],
    );
    d.payload.insert("year".into(), json!(2000 + (i % 25)));
    d.payload.insert(
        "lang".into(),
        json!(if i.is_multiple_of(2) { "en" } else { "de" }),
    );
    d.payload.insert(
        "when".into(),
        json!(format!("2024-01-{:02}T00:00:00Z", 1 + i % 28)),
    );
    d
}

#[test]
fn reopen_keeps_everything_across_seals_deletes_and_compaction() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let db = Database::open(dir.path()).expect("open");
        let c = db.create_collection("c", &schema(100)).expect("create");
        for b in 0..5u64 {
            c.upsert((b * 100..b * 100 + 100).map(doc).collect())
                .expect("upsert");
        }
        c.upsert((500..550).map(doc).collect())
            .expect("upsert tail");
        // Replace a sealed and a mutable document, delete a few, delete by filter.
        let mut d = doc(3);
        d.payload.insert("year".into(), json!(1999));
        c.upsert(vec![d]).expect("replace sealed");
        let mut d = doc(510);
        d.payload.insert("year".into(), json!(1998));
        c.upsert(vec![d]).expect("replace mutable");
        assert_eq!(
            c.delete(&[DocId::Int(10), DocId::Int(520), DocId::Int(9999)])
                .expect("delete")
                .count,
            2
        );
        let f = Filter::from_json(&json!({"field": "year", "eq": 2024})).expect("filter");
        let n = c.count(Some(&f));
        assert_eq!(c.delete_by_filter(&f).expect("delete by filter").count, n);
        assert_eq!(c.count(Some(&f)), 0);
        assert_eq!(c.count(None), 550 - 2 - n);
    }
    let expected_after = {
        let db = Database::open(dir.path()).expect("reopen");
        let c = db.collection("c").expect("collection");
        let f = Filter::from_json(&json!({"field": "year", "eq": 2024})).expect("filter");
        assert_eq!(c.count(Some(&f)), 0);
        assert!(c.get(&DocId::Int(10)).is_none());
        assert!(c.get(&DocId::Int(520)).is_none());
        assert_eq!(
            c.get(&DocId::Int(3)).expect("3").payload["year"],
            json!(1999)
        );
        assert_eq!(
            c.get(&DocId::Int(510)).expect("510").payload["year"],
            json!(1998)
        );
        assert_eq!(
            c.get(&DocId::Int(7)).expect("7").vectors["emb"],
            doc(7).vectors["emb"]
        );
        let before = c.count(None);
        c.compact().expect("compact");
        assert_eq!(c.info().segments.len(), 1);
        assert_eq!(c.count(None), before);
        before
    };
    let db = Database::open(dir.path()).expect("reopen 2");
    let c = db.collection("c").expect("collection");
    assert_eq!(c.count(None), expected_after);
    assert_eq!(
        c.get(&DocId::Int(3)).expect("3").payload["year"],
        json!(1999)
    );
    // Scroll pages through everything in id order exactly once.
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let (page, next) = c.scroll(after.as_ref(), 37, None);
        seen.extend(page.into_iter().map(|d| d.id));
        match next {
            Some(n) => after = Some(n),
            None => break,
        }
    }
    assert_eq!(seen.len(), expected_after);
    assert!(seen.windows(2).all(|w| w[0] < w[1]));
}

#[test]
fn second_writer_gets_a_clear_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let _db = Database::open(dir.path()).expect("open");
    match Database::open(dir.path()) {
        Err(StorageError::Locked { .. }) => {}
        other => panic!("expected Locked, got {other:?}"),
    }
}

#[test]
fn bad_documents_change_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = Database::open(dir.path()).expect("open");
    let c = db.create_collection("c", &schema(1000)).expect("create");
    c.upsert(vec![doc(1)]).expect("upsert");
    let mut wrong_dim = doc(2);
    wrong_dim.vectors.insert("emb".into(), vec![1.0]);
    let mut nan = doc(3);
    nan.vectors
        .insert("emb".into(), vec![1.0, f32::NAN, 0.0, 0.0]);
    let mut unknown = doc(4);
    unknown.vectors.insert("nope".into(), vec![1.0]);
    let mut mismatch = doc(5);
    mismatch.payload.insert("year".into(), json!("nineteen"));
    let mut bad_date = doc(6);
    bad_date.payload.insert("when".into(), json!("yesterday"));
    let mut replaced = doc(1);
    replaced.payload.insert("year".into(), json!(1));
    for (bad, needle) in [
        (wrong_dim, "dimension"),
        (nan, "NaN"),
        (unknown, "unknown vector field"),
        (mismatch, "expected integer"),
        (bad_date, "datetime"),
    ] {
        let err = c
            .upsert(vec![replaced.clone(), bad])
            .expect_err("must fail")
            .to_string();
        assert!(err.contains(needle), "{err}");
        assert!(err.contains("batch position 1"), "{err}");
    }
    let err = c
        .upsert(vec![doc(7), doc(7)])
        .expect_err("duplicate")
        .to_string();
    assert!(err.contains("duplicate id 7"), "{err}");
    assert_eq!(c.count(None), 1);
    let stored = c.get(&DocId::Int(1)).expect("1");
    assert_eq!(
        stored.payload,
        doc(1).payload,
        "the valid document of a failed batch must not replace the stored one"
    );
}

#[test]
fn corrupt_or_truncated_segment_files_are_reported_by_name() {
    // Truncation is caught by the length checks of open; a flipped byte when the section holding
    // it is first read (ids, payloads, a graph) and by `verify` (every file, mapped vectors too).
    for (file, truncate) in [
        ("vec.emb.f32", false),
        ("hnsw.emb.bin", true),
        ("hnsw.emb.bin", false),
        ("payload.bin", false),
        ("ids.bin", true),
        ("ids.bin", false),
    ] {
        let dir = tempfile::tempdir().expect("tempdir");
        let seg_dir = {
            let db = Database::open(dir.path()).expect("open");
            let c = db.create_collection("c", &schema(1000)).expect("create");
            c.upsert((0..50).map(doc).collect()).expect("upsert");
            c.flush().expect("flush");
            let seg = c.info().segments[0].0.clone();
            dir.path().join("collections/c/segments").join(seg)
        };
        let path = seg_dir.join(file);
        let mut bytes = std::fs::read(&path).expect("read");
        if truncate {
            bytes.truncate(bytes.len() - 5);
        } else {
            let mid = bytes.len() / 2;
            bytes[mid] ^= 0x40;
        }
        std::fs::write(&path, bytes).expect("write");
        let db = Database::open(dir.path()).expect("open");
        let named =
            |e: &StorageError| e.to_string().contains(file) && e.to_string().contains("corrupt");
        let c = match db.collection("c") {
            Err(e) => {
                assert!(truncate && named(&e), "{file}: {e}");
                continue;
            }
            Ok(c) => c,
        };
        assert!(!truncate, "{file}: a truncated file passed open");
        let errors = c.verify();
        assert!(errors.iter().any(named), "{file}: verify found {errors:?}");
        if file != "vec.emb.f32" {
            // Reading the section records the failure; the snapshot refuses to vouch for answers.
            let snap = c.snapshot();
            let _ = snap.get(&DocId::Int(3));
            let _ = snap.count(Some(
                &Filter::from_json(&serde_json::json!({"field": "year", "gte": 0}))
                    .expect("filter"),
            ));
            if let Some(g) = snap.sealed_segments()[0].graph("emb") {
                assert!(g.capacity() > 0);
            }
            let err = snap.check().expect_err("a corrupt section was served");
            assert!(named(&err), "{file}: {err}");
        }
    }
}

#[test]
fn orphan_segments_are_removed_on_open() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let db = Database::open(dir.path()).expect("open");
        let c = db.create_collection("c", &schema(1000)).expect("create");
        c.upsert((0..20).map(doc).collect()).expect("upsert");
        c.flush().expect("flush");
    }
    let segs = dir.path().join("collections/c/segments");
    std::fs::create_dir_all(segs.join("seg-00000000000000ff")).expect("orphan");
    std::fs::create_dir_all(segs.join("seg-0000000000000100.tmp")).expect("orphan tmp");
    let db = Database::open(dir.path()).expect("open");
    let c = db.collection("c").expect("collection");
    assert_eq!(c.count(None), 20);
    let names: Vec<String> = std::fs::read_dir(&segs)
        .expect("ls")
        .map(|e| e.expect("entry").file_name().to_string_lossy().to_string())
        .collect();
    assert_eq!(names.len(), 1, "{names:?}");
}

#[test]
fn snapshots_do_not_see_later_writes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = Database::open(dir.path()).expect("open");
    let c = db.create_collection("c", &schema(30)).expect("create");
    c.upsert((0..20).map(doc).collect()).expect("upsert");
    let snap = c.snapshot();
    let count_at = |s: &quiver_storage::Snapshot| {
        let mut n = 0;
        s.for_each_visible(None, |_| n += 1);
        n
    };
    c.upsert((20..60).map(doc).collect())
        .expect("upsert more (seals)");
    c.delete(&[DocId::Int(0), DocId::Int(1)]).expect("delete");
    assert_eq!(count_at(&snap), 20);
    assert_eq!(count_at(&c.snapshot()), 58);
    // Concurrent readers while a writer ingests: every snapshot sees a prefix-consistent count.
    std::thread::scope(|s| {
        let w = s.spawn(|| {
            for b in 0..20u64 {
                c.upsert((1000 + b * 10..1000 + b * 10 + 10).map(doc).collect())
                    .expect("upsert");
            }
        });
        for _ in 0..200 {
            let n = count_at(&c.snapshot());
            assert!(
                (58..=258).contains(&n) && (n - 58) % 10 == 0,
                "torn snapshot: {n}"
            );
        }
        w.join().expect("writer");
    });
}

#[test]
fn stale_handle_cannot_write_into_a_recreated_collection() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = Database::open(dir.path()).expect("open");
    let old = db.create_collection("a", &schema(10)).expect("create");
    old.upsert((0..5).map(doc).collect()).expect("upsert");
    db.drop_collection("a").expect("drop");
    let new = db.create_collection("a", &schema(10)).expect("recreate");
    new.upsert((100..120).map(doc).collect())
        .expect("upsert new");
    assert!(
        old.upsert(vec![doc(1)]).is_err(),
        "dropped handle must refuse writes"
    );
    assert!(old.flush().is_err());
    drop((db, old, new));
    let db = Database::open(dir.path()).expect("reopen");
    assert_eq!(db.collection("a").expect("a").count(None), 20);
}

#[test]
fn overlong_string_ids_are_rejected() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = Database::open(dir.path()).expect("open");
    let c = db.create_collection("c", &schema(10)).expect("create");
    let mut d = doc(1);
    d.id = Some(DocId::Str("x".repeat(quiver_storage::MAX_ID_BYTES + 1)));
    let err = c.upsert(vec![d]).expect_err("too long").to_string();
    assert!(err.contains("limit"), "{err}");
}

#[test]
fn missing_manifest_with_segments_is_an_error_not_an_empty_collection() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let db = Database::open(dir.path()).expect("open");
        let c = db.create_collection("c", &schema(1000)).expect("create");
        c.upsert((0..20).map(doc).collect()).expect("upsert");
        c.flush().expect("flush");
    }
    std::fs::remove_file(dir.path().join("collections/c/manifest.json")).expect("rm");
    let db = Database::open(dir.path()).expect("open");
    let err = db.collection("c").expect_err("must refuse").to_string();
    assert!(err.contains("manifest.json"), "{err}");
    assert!(
        dir.path()
            .join("collections/c/segments")
            .read_dir()
            .expect("ls")
            .next()
            .is_some(),
        "data must not be deleted"
    );
}

/// Regression: a delete of a sealed row recorded only in the log, replayed at open, must reach a
/// deletes file before a later seal retires that log (it came back after the next restart).
#[test]
fn a_replayed_delete_survives_the_seal_that_retires_its_log() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let db = Database::open(dir.path()).expect("open");
        let c = db.create_collection("c", &schema(100_000)).expect("create");
        c.upsert((0..50).map(doc).collect()).expect("upsert");
        c.flush().expect("flush");
        c.delete(&[DocId::Int(7)]).expect("delete");
        c.upsert(vec![doc(3)]).expect("replace");
    }
    {
        // Replay marks 7 deleted and the old 3 replaced; this seal retires the log holding both.
        let db = Database::open(dir.path()).expect("reopen");
        let c = db.collection("c").expect("collection");
        c.upsert((100..110).map(doc).collect()).expect("upsert");
        c.flush().expect("flush");
        c.wait_for_maintenance().expect("settle");
    }
    let db = Database::open(dir.path()).expect("reopen");
    let c = db.collection("c").expect("collection");
    assert!(
        c.get(&DocId::Int(7)).is_none(),
        "an acknowledged delete came back"
    );
    assert_eq!(c.count(None), 50 - 1 + 10);
    let (all, _) = c.snapshot().scroll(None, usize::MAX, None);
    assert_eq!(
        all.iter().filter(|d| d.id == DocId::Int(3)).count(),
        1,
        "a replaced document is live twice"
    );
}

/// Regression: a log whose header a crash cut short holds nothing committed; the next writer
/// starts it again instead of appending records to a headerless file.
#[test]
fn a_log_cut_inside_its_header_is_started_again() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let db = Database::open(dir.path()).expect("open");
        db.create_collection("c", &schema(100_000)).expect("create");
    }
    let wal = dir.path().join("collections/c/wal");
    let log = std::fs::read_dir(&wal)
        .expect("wal dir")
        .flatten()
        .map(|e| e.path())
        .max()
        .expect("a log");
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&log)
        .expect("log");
    f.set_len(5).expect("truncate");
    drop(f);
    {
        let db = Database::open(dir.path()).expect("reopen after a torn header");
        let c = db.collection("c").expect("collection");
        c.upsert((0..5).map(doc).collect()).expect("upsert");
    }
    let db = Database::open(dir.path()).expect("reopen");
    let c = db.collection("c").expect("collection must open");
    assert_eq!(c.count(None), 5);
}
