//! The BEIR loader on the evaluation sets in `../shared/data`, checked against the counts their
//! README publishes (documents, judged queries, judgements, relevance levels).

use quiver_eval::beir;
use std::path::PathBuf;

fn data(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/data")
        .join(name)
}

#[test]
fn shared_datasets_load_with_published_counts() {
    // (folder, documents, judged queries, judgement lines, levels)
    let expect: [(&str, usize, usize, usize, &[i64]); 4] = [
        ("scifact", 5183, 300, 339, &[1]),
        ("limit-small", 46, 1000, 2000, &[1]),
        ("cranfield", 1400, 225, 1612, &[1, 2, 3, 4]),
        ("adi", 82, 35, 170, &[1]),
    ];
    for (name, docs, queries, judgements, levels) in expect {
        let ds = beir::load(&data(name), "test").unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(ds.name, name);
        assert_eq!(ds.corpus.len(), docs, "{name} documents");
        assert_eq!(ds.queries.len(), queries, "{name} judged queries");
        assert_eq!(ds.qrels.len(), queries, "{name} qrels queries");
        assert_eq!(ds.qrels.pairs().count(), judgements, "{name} judgements");
        let mut seen: Vec<i64> = ds.qrels.pairs().map(|(_, _, l)| l).collect();
        seen.sort_unstable();
        seen.dedup();
        assert_eq!(seen, levels, "{name} relevance levels");
        assert!(ds.warnings.is_empty(), "{name}: {:?}", ds.warnings);
    }
    let sf = beir::load(&data("scifact"), "test").expect("scifact");
    assert_eq!(sf.unjudged_queries, 1109 - 300);
    // SciFact's query ids never name a corpus document, so BEIR's ignore_identical_ids changes
    // nothing there.
    let ids: std::collections::HashSet<&str> = sf.corpus.iter().map(|d| d.id.as_str()).collect();
    assert!(sf.queries.iter().all(|q| !ids.contains(q.id.as_str())));
}
