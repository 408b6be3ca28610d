//! Every segment answers the reader traits the same way. Sealed segments and the frozen mutable
//! segment are read through `SegmentReader`, `VectorIndex` and `MultiIndex` and checked row by
//! row against what was written (brute force over the oracle's own copy of the documents): ids,
//! visibility and lookups, filters, exact f32 search, rotated prefixes, compact codes (the
//! mutable segment's, encoded with codecs borrowed from a sealed segment, must equal what that
//! codec and rotation make of the written vector), vector sets and MaxSim, and text parts.

use quiver_index::{Bitset, RowFilter};
use quiver_linalg::Metric;
use quiver_storage::{
    Database, DocId, Document, Filter, Knn, SegmentReader, Snapshot, VectorIndex,
};
use serde_json::json;
use std::collections::HashMap;

const DIM: usize = 16;
const TOK: usize = 4;

use quiver_eval::uniform as rng;

/// One written document: normalised vector, tag, vector set.
type Written = (Vec<f32>, String, Vec<Vec<f32>>);

/// What was written, by id (the current version of each document).
struct Oracle {
    docs: HashMap<DocId, Written>,
}

fn schema() -> quiver_storage::Schema {
    quiver_storage::Schema::parse(&format!(
        r#"mutable_max_rows = 100000
[fields.emb]
type = "dense"
dim = {DIM}
metric = "cosine"
index = {{ type = "hnsw", m = 8, ef_construction = 40 }}
rotation = "pca"
codecs = [{{ type = "int8" }}, {{ type = "binary", dims = 8 }}]
[fields.tag]
type = "keyword"
[fields.body]
type = "text"
source = ["tag"]
[fields.tok]
type = "multi"
dim = {TOK}
metric = "dot"
muvera = {{ k_sim = 2, d_proj = 4, r_reps = 3, seed = 5 }}
index = {{ type = "flat" }}
"#
    ))
    .expect("schema")
}

fn make_doc(i: u64, r: &mut impl FnMut() -> f32, oracle: &mut Oracle) -> Document {
    // A decaying spectrum, so the PCA rotation is not the identity.
    let mut v: Vec<f32> = (0..DIM).map(|j| r() / (1.0 + j as f32 * 0.5)).collect();
    let tag = ["red apple", "green pear", "blue plum"][(i % 3) as usize].to_string();
    let set: Vec<Vec<f32>> = (0..1 + i % 4)
        .map(|_| (0..TOK).map(|_| r()).collect())
        .collect();
    let mut d = Document {
        id: Some(DocId::Int(i)),
        ..Default::default()
    };
    d.vectors.insert("emb".into(), v.clone());
    d.payload.insert("tag".into(), json!(tag));
    d.multi.insert("tok".into(), set.clone());
    quiver_linalg::normalize(&mut v);
    oracle.docs.insert(DocId::Int(i), (v, tag, set));
    d
}

fn cosine_prefix(q: &[f32], v: &[f32]) -> f32 {
    let nv = quiver_linalg::dot(v, v).sqrt();
    if nv > 0.0 {
        quiver_linalg::dot(q, v) / nv
    } else {
        0.0
    }
}

/// Best `k` (row, score) of `scores`, best first, ties by row.
fn top(mut scores: Vec<(u32, f32)>, k: usize) -> Vec<(u32, f32)> {
    scores.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    scores.truncate(k);
    scores
}

fn assert_same_scores(got: &[(u32, f32)], want: &[(u32, f32)], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: {got:?} vs {want:?}");
    for (g, w) in got.iter().zip(want) {
        assert!((g.1 - w.1).abs() < 1e-4, "{what}: {got:?} vs {want:?}");
    }
}

fn check_dense(seg: &dyn SegmentReader, allowed: &Bitset, oracle: &Oracle, q: &[f32], at: &str) {
    let index = seg.dense("emb").expect("dense index");
    let rows: Vec<u32> = allowed.iter().collect();
    let written = |r: u32| &oracle.docs[&seg.id(r)].0;
    for &r in &rows {
        let v = index.vector(r).expect("vector");
        assert!(
            v.iter().zip(written(r)).all(|(a, b)| (a - b).abs() < 1e-6),
            "{at}: row {r} vector"
        );
    }
    // Exact f32 search against brute force.
    let mut qn = q.to_vec();
    quiver_linalg::normalize(&mut qn);
    let want = top(
        rows.iter()
            .map(|&r| (r, quiver_linalg::dot(&qn, written(r))))
            .collect(),
        10,
    );
    // With the allowed rows as a set (scan only them) and as a filter only (test every row).
    for rows in [Some(allowed), None] {
        let req = Knn {
            k: 10,
            ef: 10,
            allowed: allowed as &dyn RowFilter,
            rows,
            graph: false,
        };
        let mut got: Vec<(u32, f32)> = index
            .search(&qn, req)
            .iter()
            .map(|n| (n.id, n.score))
            .collect();
        got.truncate(10);
        assert_same_scores(&got, &want, &format!("{at}: exact search"));
        assert_eq!(
            got.iter().map(|x| x.0).collect::<Vec<_>>(),
            want.iter().map(|x| x.0).collect::<Vec<_>>(),
            "{at}: exact search rows"
        );
    }
    // Rotated prefix: R·v (the index's rotation), first 8 dimensions, cosine on the prefix.
    let rot = index
        .rotation()
        .expect("a rotation: own, or borrowed from a sealed segment");
    let rotated = |v: &[f32]| {
        let mut out = vec![0.0f32; DIM];
        rot.apply(v, &mut out);
        out
    };
    let rq = rotated(&qn);
    let mut qp = rq[..8].to_vec();
    quiver_linalg::normalize(&mut qp);
    let prepared = index.prepare_prefix(&qn, 8);
    assert!(prepared.iter().zip(&qp).all(|(a, b)| (a - b).abs() < 1e-5));
    let mut buf = vec![0.0f32; 8];
    let want: Vec<(u32, f32)> = rows
        .iter()
        .map(|&r| (r, cosine_prefix(&qp, &rotated(written(r))[..8])))
        .collect();
    for &(r, s) in &want {
        let got = index.prefix_score(&prepared, r, &mut buf);
        assert!((got - s).abs() < 1e-4, "{at}: row {r} prefix {got} vs {s}");
    }
    let got: Vec<(u32, f32)> = index
        .scan_prefix(&prepared, allowed, 10)
        .iter()
        .map(|n| (n.id, n.score))
        .collect();
    assert_same_scores(&got, &top(want, 10), &format!("{at}: prefix scan"));
    check_codes(&*index, allowed, oracle, seg, &qn, &rotated, at);
}

fn check_codes(
    index: &dyn VectorIndex,
    allowed: &Bitset,
    oracle: &Oracle,
    seg: &dyn SegmentReader,
    qn: &[f32],
    rotated: &dyn Fn(&[f32]) -> Vec<f32>,
    at: &str,
) {
    for (i, dims) in [(0usize, DIM), (1, 8)] {
        let codec = index.codec(i).expect("codec");
        // Every row's code is the codec's encoding of its rotated prefix (the oracle holds the
        // current version of each document, so only visible rows are compared).
        for r in allowed.iter() {
            let base = rotated(&oracle.docs[&seg.id(r)].0);
            let p =
                quiver_quant::prefix::prefix_all(&base, DIM, dims, Metric::Cosine).expect("prefix");
            let want = codec.encode_all(&p).expect("encode");
            assert_eq!(index.code(i, r), Some(&want[..]), "{at}: codec {i} row {r}");
        }
        let scorer = codec.query(&index.prepare(qn, dims)).expect("scorer");
        let want = top(
            allowed
                .iter()
                .map(|r| (r, scorer.score(index.code(i, r).expect("code"))))
                .collect(),
            10,
        );
        let req = Knn {
            k: 10,
            ef: 10,
            allowed,
            rows: Some(allowed),
            graph: false,
        };
        // At least the best 10, best first (a segment of parts keeps ties at each part's cut).
        let mut got: Vec<(u32, f32)> = index
            .search_codes(i, &scorer, req)
            .iter()
            .map(|n| (n.id, n.score))
            .collect();
        got.truncate(10);
        assert_same_scores(&got, &want, &format!("{at}: codec {i} scan"));
    }
}

fn check_segment(snap: &Snapshot, s: usize, oracle: &Oracle, q: &[f32], qset: &[f32]) {
    let seg = snap.segment(s);
    let at = format!("segment {s} ({})", seg.name());
    let seq = snap.seq();
    // Visibility and lookups by id.
    let visible: Vec<u32> = (0..seg.rows() as u32)
        .filter(|&r| seg.visible(r, seq))
        .collect();
    for &r in &visible {
        let id = seg.id(r);
        assert_eq!(seg.find(&id, seq), Some(r), "{at}: find {id:?}");
        assert_eq!(seg.payload(r)["tag"], json!(oracle.docs[&id].1), "{at}");
    }
    // Filters: the reader's allowed rows against the payloads the oracle wrote.
    let f = Filter::from_json(&json!({"field": "tag", "eq": "green pear"})).expect("filter");
    let want: Vec<u32> = visible
        .iter()
        .copied()
        .filter(|&r| oracle.docs[&seg.id(r)].1 == "green pear")
        .collect();
    let allowed = seg.allowed(Some(&f), seq);
    assert_eq!(allowed.iter().collect::<Vec<_>>(), want, "{at}: filter");
    assert_eq!(
        seg.allowed(None, seq).iter().collect::<Vec<_>>(),
        visible,
        "{at}: visible"
    );
    check_dense(seg, &allowed, oracle, q, &at);
    // Vector sets and exact MaxSim.
    let multi = seg.multi("tok").expect("multi index");
    let qv = quiver_index::Vectors::new(qset, TOK);
    let mut want = Vec::new();
    for &r in &visible {
        let set = &oracle.docs[&seg.id(r)].2;
        let flat: Vec<f32> = set.concat();
        assert_eq!(multi.set(r).as_slice(), &flat[..], "{at}: row {r} set");
        assert_eq!(multi.raw(r) as usize, set.len(), "{at}: row {r} raw");
        let best = |t: &[f32]| {
            set.iter()
                .map(|v| quiver_linalg::dot(t, v))
                .fold(f32::MIN, f32::max)
        };
        want.push((r, qset.chunks(TOK).map(best).sum::<f32>()));
    }
    let got: Vec<(u32, f32)> = multi
        .maxsim_rows(qv, 5, &mut visible.iter().copied())
        .iter()
        .map(|n| (n.id, n.score))
        .collect();
    assert_same_scores(&got, &top(want, 5), &format!("{at}: maxsim"));
    // Text: parts tile the segment's rows.
    let parts = seg.text("body");
    let mut next = 0u32;
    for (start, src) in &parts {
        assert_eq!(*start, next, "{at}: text parts must tile the rows");
        next += src.rows() as u32;
    }
    assert_eq!(
        next as usize,
        seg.rows(),
        "{at}: text parts cover every row"
    );
}

#[test]
fn sealed_and_mutable_segments_answer_the_reader_traits_alike() {
    let seed = 0x5E6_0EAD;
    eprintln!("seed {seed}");
    let mut r = rng(seed);
    let mut oracle = Oracle {
        docs: HashMap::new(),
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let db = Database::open(dir.path()).expect("open");
    let c = db.create_collection("c", &schema()).expect("create");
    // Two sealed segments, then 2,500 rows in the mutable segment (three chunks).
    for (lo, hi) in [(0u64, 900u64), (900, 1700)] {
        let docs: Vec<Document> = (lo..hi).map(|i| make_doc(i, &mut r, &mut oracle)).collect();
        c.upsert(docs).expect("upsert");
        c.flush().expect("flush");
    }
    let docs: Vec<Document> = (1700..4200)
        .map(|i| make_doc(i, &mut r, &mut oracle))
        .collect();
    c.upsert(docs).expect("upsert");
    // Replace some sealed rows (their new versions land in the mutable segment), delete others
    // in every segment.
    let replaced: Vec<Document> = (0..1700)
        .step_by(7)
        .map(|i| make_doc(i, &mut r, &mut oracle))
        .collect();
    c.upsert(replaced).expect("replace");
    let gone: Vec<DocId> = (0..4200).step_by(11).map(DocId::Int).collect();
    c.delete(&gone).expect("delete");
    for id in &gone {
        oracle.docs.remove(id);
    }
    let snap = c.snapshot();
    assert_eq!(
        snap.segments(),
        3,
        "two sealed segments and the mutable one"
    );
    assert_eq!(snap.count(None), oracle.docs.len());
    for s in 0..snap.segments() {
        let seg = snap.segment(s);
        let index = seg.dense("emb").expect("dense");
        assert_eq!(index.has_graph(), s < 2, "only sealed segments have graphs");
        let fde = seg
            .multi("tok")
            .expect("multi")
            .fde_candidates(&[0.0; 64], 1, 1, &|_| true)
            .is_some();
        assert_eq!(fde, s < 2, "only sealed segments have MUVERA encodings");
    }
    for round in 0..3 {
        let q: Vec<f32> = (0..DIM).map(|_| r()).collect();
        let qset: Vec<f32> = (0..2 * TOK).map(|_| r()).collect();
        eprintln!("round {round}");
        for s in 0..snap.segments() {
            check_segment(&snap, s, &oracle, &q, &qset);
        }
    }
    // Every visible document is found in exactly one segment, the newest that holds it.
    for id in oracle.docs.keys() {
        let loc = snap.find(id).expect("found");
        let (s, row) = snap.place(loc);
        assert_eq!(&snap.segment(s).id(row), id);
    }
}
