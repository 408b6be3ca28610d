//! A funnel plan on a PCA-rotated, codec-backed field returns the same documents whether they
//! sit in sealed segments or in the mutable segment: the mutable segment's rows are scored with
//! codes borrowed from a sealed segment (rotation included), so a shortlist cut across segments
//! compares scores on one scale. Before that, mutable rows were scored exactly in f32 beside
//! sealed rows scored by binary codes, and one side crowded the other out of the shortlist.
//!
//! The field has a flat index, so every stage scans (parallel HNSW builds are not reproducible
//! run to run). With this data the final f32 rerank of a 1,000-row shortlist also rescued the old
//! mixed-scale cut, so the equality alone is not what catches a regression here: the plan must
//! also show the mutable segment scored by codes. `quiver-query/tests/plan.rs`
//! (`pca_rotation_gives_prefixes_meaning`) catches the scale itself: its funnel's recall measured
//! 0.902 with rows in the mutable segment and 0.875 all sealed before, 0.875 both now.

use quiver::{Database, DocId, Document, Mode, Query, Schema};
use std::collections::BTreeSet;

const DIM: usize = 32;
const N: u64 = 3000;

use quiver_eval::uniform as rng;

/// Clustered vectors with a decaying spectrum, so PCA and prefixes matter.
fn vectors(seed: u64, n: u64) -> Vec<Vec<f32>> {
    let mut r = rng(seed);
    let centres: Vec<Vec<f32>> = (0..16)
        .map(|_| {
            (0..DIM)
                .map(|j| r() * 3.0 / (1.0 + j as f32 * 0.3))
                .collect()
        })
        .collect();
    (0..n)
        .map(|i| {
            let c = &centres[(i % 16) as usize];
            c.iter().map(|x| x + r() * 0.8).collect()
        })
        .collect()
}

fn build(dir: &std::path::Path, docs: &[Vec<f32>], sealed_batches: &[u64]) -> quiver::Collection {
    let db = Database::open(dir).unwrap();
    let schema = Schema::parse(&format!(
        "mutable_max_rows = 100000\n[fields.emb]\ntype = \"dense\"\ndim = {DIM}\nmetric = \"cosine\"\nindex = {{ type = \"flat\" }}\nrotation = \"pca\"\ncodecs = [{{ type = \"binary\" }}, {{ type = \"int8\" }}]\n"
    ))
    .unwrap();
    let c = db.create_collection("c", &schema).unwrap();
    let doc = |i: u64| {
        let mut d = Document {
            id: Some(DocId::Int(i)),
            ..Default::default()
        };
        d.vectors.insert("emb".into(), docs[i as usize].clone());
        d
    };
    // Sealed batches first (one segment each), the rest stays in the mutable segment.
    let mut at = 0u64;
    for &n in sealed_batches {
        c.upsert((at..at + n).map(doc).collect()).unwrap();
        c.flush().unwrap();
        at += n;
    }
    if at < N {
        c.upsert((at..N).map(doc).collect()).unwrap();
    }
    c
}

#[test]
fn funnel_returns_the_same_documents_wherever_they_sit() {
    let seed = 0xF0_77E1;
    eprintln!("seed {seed}");
    let docs = vectors(seed, N);
    let queries = vectors(seed ^ 0xABCD, 40);
    let placements: [(&str, &[u64]); 3] = [
        ("all sealed, 3 segments", &[1000, 1000, 1000]),
        ("2 sealed + 1000 mutable", &[1000, 1000]),
        ("1 sealed + 2000 mutable", &[1000]),
    ];
    let mut answers: Vec<Vec<Vec<DocId>>> = Vec::new();
    for (label, batches) in placements {
        let dir = tempfile::tempdir().unwrap();
        let c = build(dir.path(), &docs, batches);
        let info = c.info();
        assert_eq!(info.segments.len(), batches.len(), "{label}");
        assert_eq!(
            info.mutable_rows as u64,
            N - batches.iter().sum::<u64>(),
            "{label}"
        );
        let mut per_query = Vec::new();
        for q in &queries {
            let r = c
                .query(&Query::vector(q.clone()).with_mode(Mode::Funnel))
                .unwrap();
            if info.mutable_rows > 0 && per_query.is_empty() {
                // The mutable segment was scored by its borrowed codes in the code stages.
                let plan = format!("{:?}", r.explain);
                assert!(plan.contains("scan-codes"), "{label}: {plan}");
            }
            per_query.push(r.hits.iter().map(|h| h.id.clone()).collect::<Vec<_>>());
        }
        answers.push(per_query);
    }
    // Exact top 10 (cosine) as the oracle of quality.
    let norm = |v: &[f32]| {
        let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        v.iter().map(|x| x / n).collect::<Vec<_>>()
    };
    let nd: Vec<Vec<f32>> = docs.iter().map(|d| norm(d)).collect();
    let mut recall = Vec::new();
    for (qi, q) in queries.iter().enumerate() {
        let q = norm(q);
        let mut s: Vec<(f32, u64)> = nd
            .iter()
            .enumerate()
            .map(|(i, d)| (d.iter().zip(&q).map(|(a, b)| a * b).sum(), i as u64))
            .collect();
        s.sort_by(|a, b| b.0.total_cmp(&a.0));
        let truth: BTreeSet<DocId> = s[..10].iter().map(|x| DocId::Int(x.1)).collect();
        for a in &answers {
            recall.push(a[qi].iter().filter(|id| truth.contains(id)).count() as f64 / 10.0);
        }
    }
    let mean = recall.iter().sum::<f64>() / recall.len() as f64;
    let same: Vec<usize> = (1..answers.len())
        .map(|p| {
            (0..queries.len())
                .filter(|&q| answers[p][q] == answers[0][q])
                .count()
        })
        .collect();
    eprintln!(
        "funnel top-10 equal to the all-sealed answer: {same:?} of {} queries; recall@10 vs exact {mean:.3}",
        queries.len()
    );
    for (p, n) in same.iter().enumerate() {
        assert_eq!(
            *n,
            queries.len(),
            "{}: answers differ from the all-sealed placement",
            placements[p + 1].0
        );
    }
    assert!(mean >= 0.9, "funnel recall@10 {mean:.3}");
}
