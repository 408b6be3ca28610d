//! Scores against the oracle, segmentation, deletes, filters, options, errors, reopen, corruption.

use super::common::*;

// ---------------------------------------------------------------------------------------------

#[test]
fn scores_match_the_oracle_on_adi_and_cranfield() {
    for (name, nq) in [("adi", 35), ("cranfield", 60)] {
        let data = load(name);
        let dir = tempfile::tempdir().expect("tempdir");
        let (_db, c) = open_collection(dir.path(), "c", &schema(100_000, ""));
        fill(&c, &data.docs, 500, true);
        let oracle = Oracle::new(&data.docs, AnalyzerSpec::default(), Bm25Params::default());
        let snap = c.snapshot();
        for (_, q) in data.queries.iter().take(nq) {
            let got = bm25_search(&snap, &Bm25Request::new(q.clone(), 10)).expect("search");
            let want = oracle.scores(q, &|_| true, &|_| true);
            assert_matches(&got.hits, &want, 10, &format!("{name} {q:?}"));
        }
        println!("{name}: {nq} queries match the oracle");
    }
}

#[test]
fn scores_do_not_depend_on_segmentation() {
    let data = load("cranfield");
    let dir = tempfile::tempdir().expect("tempdir");
    let db = Database::open(dir.path()).expect("open db");
    // One sealed segment.
    let one = db
        .create_collection("one", &schema(100_000, ""))
        .expect("c");
    fill(&one, &data.docs, 700, true);
    // Three sealed segments of 400 plus 200 rows in the mutable segment.
    let many = db.create_collection("many", &schema(400, "")).expect("c");
    fill(&many, &data.docs, 100, false);
    let info = many.info();
    assert!(info.segments.len() >= 3, "segments: {:?}", info.segments);
    assert!(info.mutable_rows > 0);
    // Everything in the mutable segment.
    let mutable = db
        .create_collection("mut", &schema(100_000, ""))
        .expect("c");
    fill(&mutable, &data.docs, 700, false);
    let (s1, s2, s3) = (one.snapshot(), many.snapshot(), mutable.snapshot());
    let mut compared = 0;
    for (_, q) in data.queries.iter().take(80) {
        let req = Bm25Request::new(q.clone(), 20);
        let (a, sa) = bm25_search_stats(&s1, &req).expect("one");
        let (b, sb) = bm25_search_stats(&s2, &req).expect("many");
        let (m, sm) = bm25_search_stats(&s3, &req).expect("mutable");
        assert_eq!(sa, sb, "{q}: statistics");
        assert_eq!(sa, sm, "{q}: statistics");
        for other in [&b.hits, &m.hits] {
            assert_eq!(a.hits.len(), other.len());
            let by_id: HashMap<String, f32> = other.iter().map(|h| (id_str(h), h.score)).collect();
            for (x, y) in a.hits.iter().zip(other.iter()) {
                assert!((x.score - y.score).abs() <= 1e-5, "{q}");
                if let Some(s) = by_id.get(&id_str(x)) {
                    assert!((x.score - s).abs() <= 1e-5, "{q}: {}", id_str(x));
                    compared += 1;
                }
            }
        }
    }
    println!("segmentation: {compared} (query, doc) scores identical across 3 layouts");
    assert!(compared > 1000);
}

#[test]
fn deletes_and_filters_are_honoured() {
    let data = load("cranfield");
    let dir = tempfile::tempdir().expect("tempdir");
    let (_db, c) = open_collection(dir.path(), "c", &schema(500, ""));
    fill(&c, &data.docs, 250, false);
    // Delete every third document: some sealed, some still in the mutable segment.
    let gone: HashSet<String> = data
        .docs
        .iter()
        .enumerate()
        .filter(|(i, _)| i % 3 == 0)
        .map(|(_, d)| d.0.clone())
        .collect();
    let ids: Vec<DocId> = gone.iter().map(|s| DocId::Str(s.clone())).collect();
    c.delete(&ids).expect("delete");
    let parity: HashMap<String, usize> = data
        .docs
        .iter()
        .enumerate()
        .map(|(i, d)| (d.0.clone(), i % 2))
        .collect();
    let oracle = Oracle::new(&data.docs, AnalyzerSpec::default(), Bm25Params::default());
    let snap = c.snapshot();
    let even = Filter::from_json(&json!({"field": "parity", "eq": "even"})).expect("filter");
    for (_, q) in data.queries.iter().take(40) {
        let keep = |id: &str| !gone.contains(id);
        let got = bm25_search(&snap, &Bm25Request::new(q.clone(), 10)).expect("search");
        assert!(got.hits.iter().all(|h| !gone.contains(&id_str(h))));
        let want = oracle.scores(q, &keep, &|_| true);
        assert_matches(&got.hits, &want, 10, &format!("deleted {q:?}"));
        let mut req = Bm25Request::new(q.clone(), 10);
        req.filter = Some(even.clone());
        let got = bm25_search(&snap, &req).expect("search");
        assert!(got.hits.iter().all(|h| parity[&id_str(h)] == 0));
        // Statistics stay those of all visible documents; only the returned set is filtered.
        let want = oracle.scores(q, &keep, &|id| parity[id] == 0);
        assert_matches(&got.hits, &want, 10, &format!("filtered {q:?}"));
    }
    // Compaction drops the deleted rows; scores do not move.
    let before = bm25_search(&snap, &Bm25Request::new(data.queries[0].1.clone(), 10)).expect("s");
    c.flush().expect("flush");
    c.compact().expect("compact");
    let after = bm25_search(
        &c.snapshot(),
        &Bm25Request::new(data.queries[0].1.clone(), 10),
    )
    .expect("s");
    assert_eq!(
        before
            .hits
            .iter()
            .map(|h| (id_str(h), h.score))
            .collect::<Vec<_>>(),
        after
            .hits
            .iter()
            .map(|h| (id_str(h), h.score))
            .collect::<Vec<_>>()
    );
}

#[test]
fn reopen_and_replace_keep_scores() {
    let data = load("adi");
    let dir = tempfile::tempdir().expect("tempdir");
    let queries: Vec<String> = data.queries.iter().map(|q| q.1.clone()).collect();
    let before: Vec<Vec<(String, f32)>>;
    {
        let (_db, c) = open_collection(dir.path(), "c", &schema(30, ""));
        fill(&c, &data.docs, 20, false);
        // Replace one document's text: the old text must stop matching.
        let mut d = doc(0, &data.docs[0]);
        d.payload.insert("title".into(), json!("zyzzyva quokka"));
        d.payload.insert("text".into(), json!(""));
        c.upsert(vec![d]).expect("replace");
        let snap = c.snapshot();
        let hit = bm25_search(&snap, &Bm25Request::new("quokka", 5)).expect("s");
        assert_eq!(hit.hits.len(), 1);
        assert_eq!(id_str(&hit.hits[0]), data.docs[0].0);
        before = queries
            .iter()
            .map(|q| {
                bm25_search(&snap, &Bm25Request::new(q.clone(), 10))
                    .expect("s")
                    .hits
                    .iter()
                    .map(|h| (id_str(h), h.score))
                    .collect()
            })
            .collect();
    }
    let db = Database::open(dir.path()).expect("reopen");
    let c = db.collection("c").expect("collection");
    let snap = c.snapshot();
    for (q, b) in queries.iter().zip(&before) {
        let a: Vec<(String, f32)> = bm25_search(&snap, &Bm25Request::new(q.clone(), 10))
            .expect("s")
            .hits
            .iter()
            .map(|h| (id_str(h), h.score))
            .collect();
        assert_eq!(&a, b, "{q}");
    }
}

#[test]
fn analyzer_and_bm25_options_apply() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = Database::open(dir.path()).expect("db");
    let texts = [
        "The runner was running",
        "They run daily",
        "the THE the",
        "Generously given",
    ];
    let mk = |name: &str, field: &str| {
        let c = db
            .create_collection(
                name,
                &Schema::parse(&format!(
                    "mutable_max_rows = 2\n[fields.body]\ntype = \"text\"\n{field}\n"
                ))
                .expect("schema"),
            )
            .expect("c");
        let docs = texts
            .iter()
            .enumerate()
            .map(|(i, t)| {
                let mut d = Document {
                    id: Some(DocId::Int(i as u64)),
                    ..Default::default()
                };
                d.payload.insert("body".into(), json!(t));
                d
            })
            .collect();
        c.upsert(docs).expect("upsert");
        c
    };
    let ids = |c: &Collection, q: &str| -> Vec<DocId> {
        let mut v: Vec<DocId> = bm25_search(&c.snapshot(), &Bm25Request::new(q, 10))
            .expect("s")
            .hits
            .into_iter()
            .map(|h| h.id)
            .collect();
        v.sort();
        v
    };
    let default = mk("default", "");
    assert_eq!(ids(&default, "run"), vec![DocId::Int(0), DocId::Int(1)]);
    assert_eq!(ids(&default, "the"), Vec::<DocId>::new());
    assert_eq!(ids(&default, "generous"), vec![DocId::Int(3)]);
    let plain = mk(
        "plain",
        "analyzer = { stemmer = \"none\", stopwords = \"none\", lowercase = false }",
    );
    assert_eq!(ids(&plain, "run"), vec![DocId::Int(1)]);
    assert_eq!(ids(&plain, "the"), vec![DocId::Int(2)]);
    assert_eq!(ids(&plain, "The"), vec![DocId::Int(0)]);
    assert_eq!(ids(&plain, "THE"), vec![DocId::Int(2)]);
    let snowball = mk("snowball", "analyzer = { stemmer = \"english\" }");
    assert_eq!(ids(&snowball, "generous"), vec![DocId::Int(3)]);
    assert_eq!(ids(&snowball, "gener"), Vec::<DocId>::new());
    // b = 0: no length normalisation, so equal tf scores equal regardless of length.
    let flat = mk("flat", "bm25 = { k1 = 1.2, b = 0.0 }");
    let h = bm25_search(&flat.snapshot(), &Bm25Request::new("run", 10)).expect("s");
    assert_eq!(h.hits.len(), 2);
    // Doc 0 has tf 2 ("runner" -> "runner", "running" -> "run": tf 1), doc 1 tf 1: equal.
    assert!((h.hits[0].score - h.hits[1].score).abs() < 1e-6);
}

#[test]
fn schema_and_document_errors_name_the_problem() {
    for (extra, needle) in [
        ("bm25 = { k1 = -1.0 }", "k1 must be"),
        ("bm25 = { b = 1.5 }", "b must be in [0, 1]"),
        ("bm25 = { k2 = 1.0 }", "unknown field `k2`"),
        ("analyzer = { stemmer = \"klingon\" }", "klingon"),
        ("analyzer = { lowercased = true }", "lowercased"),
    ] {
        let text = format!("[fields.body]\ntype = \"text\"\n{extra}\n");
        let err = Schema::parse(&text).expect_err(extra).to_string();
        assert!(err.contains(needle), "{extra}: {err}");
    }
    for (fields, needle) in [
        (
            "[fields.body]\ntype = \"text\"\nsource = [\"a\", \"a\"]\n",
            "listed twice",
        ),
        (
            "[fields.body]\ntype = \"text\"\nsource = [\"body\"]\n",
            "is the field itself",
        ),
        (
            "[fields.body]\ntype = \"text\"\nsource = [\"emb\"]\n[fields.emb]\ntype = \"dense\"\ndim = 2\n",
            "not a declared dense field",
        ),
        (
            "[fields.body]\ntype = \"text\"\nsource = [\"year\"]\n[fields.year]\ntype = \"integer\"\n",
            "payload string field",
        ),
        (
            "[fields.body]\ntype = \"text\"\nsource = [\"t\"]\n[fields.emb]\ntype = \"dense\"\ndim = 2\nmodel = \"m\"\nembed = [\"body\"]\n",
            "embed those payload fields instead",
        ),
    ] {
        let err = Schema::parse(fields).expect_err(fields).to_string();
        assert!(err.contains(needle), "{fields}: {err}");
    }
    // A model may embed a text field whose text is its own payload field.
    Schema::parse(
        "[fields.body]\ntype = \"text\"\n[fields.emb]\ntype = \"dense\"\ndim = 2\nmodel = \"m\"\nembed = [\"body\"]\n",
    )
    .expect("embedding a source-less text field");
    let dir = tempfile::tempdir().expect("tempdir");
    let (_db, c) = open_collection(dir.path(), "c", &schema(10, ""));
    let mut d = Document {
        id: Some(DocId::Int(7)),
        ..Default::default()
    };
    d.payload.insert("title".into(), json!(42));
    let err = c.upsert(vec![d]).expect_err("number as text").to_string();
    assert!(err.contains("title") && err.contains("body"), "{err}");
    assert_eq!(c.count(None), 0);
    let snap = c.snapshot();
    let mut req = Bm25Request::new("x", 3);
    req.field = Some("nope".into());
    let err = bm25_search(&snap, &req)
        .expect_err("unknown field")
        .to_string();
    assert!(err.contains("nope"), "{err}");
}

#[test]
fn corrupt_text_index_is_refused() {
    let data = load("adi");
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let (_db, c) = open_collection(dir.path(), "c", &schema(1000, ""));
        fill(&c, &data.docs, 100, true);
    }
    let seg_root = dir.path().join("collections/c/segments");
    let seg = std::fs::read_dir(&seg_root)
        .expect("segments")
        .next()
        .expect("one segment")
        .expect("entry")
        .path();
    let idx = std::fs::read_dir(seg.join("text.body"))
        .expect("text dir")
        .map(|e| e.expect("e").path())
        .find(|p| p.extension().is_some_and(|e| e == "idx"))
        .expect("postings file");
    let mut bytes = std::fs::read(&idx).expect("read");
    let n = bytes.len();
    bytes[n / 2] ^= 0x5a;
    std::fs::write(&idx, bytes).expect("write");
    // Opening reads no text index; the first BM25 query does, and the snapshot then refuses to
    // vouch for the answer (the engine returns this error instead of the hits).
    let db = Database::open(dir.path()).expect("db");
    let c = db.collection("c").expect("open checks lengths only");
    let snap = c.snapshot();
    assert!(snap.check().is_ok());
    let _ = bm25_search(&snap, &Bm25Request::new("solar energy", 10));
    let err = snap.check().expect_err("corrupt").to_string();
    assert!(err.contains("checksum") && err.contains(".idx"), "{err}");
    let found = c.verify();
    assert!(
        found.iter().any(|e| e.to_string().contains(".idx")),
        "{found:?}"
    );
}

#[test]
fn corpus_statistics_make_shards_score_as_one_collection() {
    // Cranfield split over three collections by position (shards of one corpus). With the
    // shards' statistics summed and passed in, each shard's scores are the one-collection
    // oracle's, so merging the shards' top lists by score gives the global top list; without
    // them each shard scores with its own N, df and average length.
    let data = load("cranfield");
    let dir = tempfile::tempdir().expect("tempdir");
    let db = Database::open(dir.path()).expect("open db");
    let shards: Vec<_> = (0..3)
        .map(|i| {
            let c = db
                .create_collection(&format!("shard{i}"), &schema(300, ""))
                .expect("c");
            let part: Vec<_> = data.docs.iter().skip(i).step_by(3).cloned().collect();
            fill(&c, &part, 150, false);
            c
        })
        .collect();
    let snaps: Vec<_> = shards.iter().map(|c| c.snapshot()).collect();
    let oracle = Oracle::new(&data.docs, AnalyzerSpec::default(), Bm25Params::default());
    let (mut checked, mut local_differs) = (0, 0);
    for (_, q) in data.queries.iter().take(60) {
        let mut corpus = CorpusStats::default();
        for s in &snaps {
            corpus.add(&bm25_stats(s, Some("body"), q).expect("stats"));
        }
        let merged = |corpus: Option<&CorpusStats>| {
            let mut all: Vec<Hit> = Vec::new();
            for s in &snaps {
                let mut req = Bm25Request::new(q.clone(), 10);
                req.corpus = corpus.cloned();
                all.extend(bm25_search(s, &req).expect("search").hits);
            }
            all.sort_by(|a, b| {
                b.score
                    .total_cmp(&a.score)
                    .then_with(|| id_str(a).cmp(&id_str(b)))
            });
            all.truncate(10);
            all
        };
        let want = oracle.scores(q, &|_| true, &|_| true);
        assert_matches(&merged(Some(&corpus)), &want, 10, &format!("sharded {q:?}"));
        let local = merged(None);
        if local
            .iter()
            .zip(&want)
            .any(|(g, w)| (g.score as f64 - w.1).abs() > 1e-5 * w.1.abs().max(1.0))
        {
            local_differs += 1;
        }
        // The plan's bm25 source takes the same statistics.
        let plan = Plan::from_json(
            &json!({"prefetch": [{"bm25": {"field": "body", "text": q, "stats": corpus}, "limit": 10}],
                    "limit": 10})
            .to_string(),
        )
        .expect("plan");
        let mut req = Bm25Request::new(q.clone(), 10);
        req.corpus = Some(corpus.clone());
        let direct = bm25_search(&snaps[0], &req).expect("search");
        let planned = execute(&snaps[0], &plan, None).expect("execute");
        let scores = |h: &[Hit]| h.iter().map(|h| h.score).collect::<Vec<_>>();
        assert_eq!(scores(&planned.hits), scores(&direct.hits), "{q:?}: plan");
        checked += 1;
    }
    println!(
        "corpus statistics: {checked} queries over 3 shards match the one-collection oracle; \
         with per-shard statistics {local_differs} would not"
    );
    assert!(local_differs > checked / 2, "{local_differs} of {checked}");

    // Statistics that cannot be the corpus's are refused, naming the figure.
    let q = "flow over a flat plate";
    let own = bm25_stats(&snaps[0], Some("body"), q).expect("stats");
    let mut small = CorpusStats::default();
    small.add(&own);
    small.docs -= 1;
    let mut missing = CorpusStats::default();
    missing.add(&own);
    let first = own.terms[0].0.clone();
    missing.df.remove(&first);
    for (bad, says) in [
        (small, "below this collection's own"),
        (missing, "no df for query term"),
    ] {
        let mut req = Bm25Request::new(q, 10);
        req.corpus = Some(bad);
        let e = bm25_search(&snaps[0], &req)
            .expect_err("refused")
            .to_string();
        assert!(e.contains(says), "{e}");
    }
}
