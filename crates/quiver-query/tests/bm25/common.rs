//! Data sets, collections and the brute-force BM25 oracle shared by the BM25 tests.

#![allow(dead_code)]

pub use quiver_query::plan::{execute, Plan};
pub use quiver_query::{bm25_search, bm25_search_stats, bm25_stats, Bm25Request, CorpusStats, Hit};
pub use quiver_storage::{Collection, Database, DocId, Document, Filter, Schema};
pub use quiver_text::{Analyzer, AnalyzerSpec, Bm25Params};
pub use serde_json::{json, Value};
pub use std::collections::{BTreeMap, HashMap, HashSet};
pub use std::path::PathBuf;

// ---------------------------------------------------------------------------------------------
// Data

pub struct Beir {
    pub docs: Vec<(String, String, String)>,
    pub queries: Vec<(String, String)>,
    pub qrels: HashMap<String, HashMap<String, f64>>,
}

pub fn data_dir(name: &str) -> PathBuf {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/data")
        .join(name);
    assert!(
        p.join("corpus.jsonl").is_file(),
        "test data missing: {} (the repository's ../shared/data)",
        p.display()
    );
    p
}

pub fn read_jsonl(p: PathBuf) -> Vec<Value> {
    std::fs::read_to_string(&p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect()
}

pub fn s(v: &Value, k: &str) -> String {
    match v.get(k) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => String::new(),
    }
}

pub fn load(name: &str) -> Beir {
    let dir = data_dir(name);
    let docs = read_jsonl(dir.join("corpus.jsonl"))
        .iter()
        .map(|d| (s(d, "_id"), s(d, "title"), s(d, "text")))
        .collect();
    let mut qrels: HashMap<String, HashMap<String, f64>> = HashMap::new();
    let q = std::fs::read_to_string(dir.join("qrels/test.tsv")).expect("qrels");
    for line in q.lines().skip(1) {
        let f: Vec<&str> = line.split('\t').collect();
        if f.len() >= 3 {
            let score: f64 = f[2].trim().parse().expect("qrel score");
            qrels
                .entry(f[0].to_string())
                .or_default()
                .insert(f[1].to_string(), score);
        }
    }
    let queries = read_jsonl(dir.join("queries.jsonl"))
        .iter()
        .map(|q| (s(q, "_id"), s(q, "text")))
        .filter(|(id, _)| qrels.contains_key(id))
        .collect();
    Beir {
        docs,
        queries,
        qrels,
    }
}

pub fn schema(rows: usize, extra: &str) -> Schema {
    Schema::parse(&format!(
        "mutable_max_rows = {rows}\n[fields.body]\ntype = \"text\"\nsource = [\"title\", \"text\"]\n{extra}\n[fields.parity]\ntype = \"keyword\"\n"
    ))
    .expect("schema")
}

pub fn doc(i: usize, d: &(String, String, String)) -> Document {
    let mut doc = Document {
        id: Some(DocId::Str(d.0.clone())),
        ..Default::default()
    };
    doc.payload.insert("title".into(), json!(d.1));
    doc.payload.insert("text".into(), json!(d.2));
    doc.payload.insert(
        "parity".into(),
        json!(if i.is_multiple_of(2) { "even" } else { "odd" }),
    );
    doc
}

/// Upserts `docs` in batches of `batch`; with `flush`, seals what is left at the end.
pub fn fill(c: &Collection, docs: &[(String, String, String)], batch: usize, flush: bool) {
    let all: Vec<Document> = docs.iter().enumerate().map(|(i, d)| doc(i, d)).collect();
    for chunk in all.chunks(batch) {
        c.upsert(chunk.to_vec()).expect("upsert");
        // Seals run in the background: settle after each batch, so the layout is the one these
        // tests were written for (a segment each time the mutable segment fills).
        c.wait_for_maintenance().expect("settle");
    }
    if flush {
        c.flush().expect("flush");
    }
}

// ---------------------------------------------------------------------------------------------
// The oracle: BM25 by formula over every document, with the same analyzer.

pub struct Oracle {
    pub docs: Vec<(String, HashMap<String, u32>, u32)>,
    pub params: Bm25Params,
    pub analyzer: Analyzer,
}

impl Oracle {
    pub fn new(
        docs: &[(String, String, String)],
        spec: AnalyzerSpec,
        params: Bm25Params,
    ) -> Oracle {
        let analyzer = Analyzer::new(spec);
        let docs = docs
            .iter()
            .map(|(id, title, text)| {
                let terms = analyzer.analyze(&format!("{title} {text}"));
                let mut tf: HashMap<String, u32> = HashMap::new();
                for t in &terms {
                    *tf.entry(t.clone()).or_default() += 1;
                }
                (id.clone(), tf, terms.len() as u32)
            })
            .collect();
        Oracle {
            docs,
            params,
            analyzer,
        }
    }

    /// All scores > 0 for `query`, over the documents `keep` allows (statistics) and returning
    /// only those `ret` allows.
    pub fn scores(
        &self,
        query: &str,
        keep: &dyn Fn(&str) -> bool,
        ret: &dyn Fn(&str) -> bool,
    ) -> Vec<(String, f64)> {
        let live: Vec<_> = self.docs.iter().filter(|d| keep(&d.0) && d.2 > 0).collect();
        let n = live.len() as f64;
        let avg = live.iter().map(|d| d.2 as f64).sum::<f64>() / n;
        let mut qtf: Vec<(String, u32)> = Vec::new();
        for t in self.analyzer.analyze(query) {
            match qtf.iter_mut().find(|(x, _)| *x == t) {
                Some((_, c)) => *c += 1,
                None => qtf.push((t, 1)),
            }
        }
        let (k1, b) = (self.params.k1 as f64, self.params.b as f64);
        let mut out = Vec::new();
        for d in &live {
            if !ret(&d.0) {
                continue;
            }
            let mut score = 0.0;
            for (t, q) in &qtf {
                let Some(&tf) = d.1.get(t) else { continue };
                let df = live.iter().filter(|x| x.1.contains_key(t)).count() as f64;
                let idf = (1.0 + (n - df + 0.5) / (df + 0.5)).ln();
                let tf = tf as f64;
                score += *q as f64 * idf * tf / (tf + k1 * (1.0 - b + b * d.2 as f64 / avg));
            }
            if score > 0.0 {
                out.push((d.0.clone(), score));
            }
        }
        out.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        out
    }
}

pub fn id_str(h: &Hit) -> String {
    match &h.id {
        DocId::Str(s) => s.clone(),
        DocId::Int(i) => i.to_string(),
    }
}

/// The engine's top k agrees with the oracle: same scores rank by rank (relative 1e-5), and the
/// same ids wherever the score is not tied at the cut.
pub fn assert_matches(got: &[Hit], want: &[(String, f64)], k: usize, what: &str) {
    let want = &want[..want.len().min(k)];
    assert_eq!(got.len(), want.len(), "{what}: hit count");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        let tol = 1e-5 * w.1.abs().max(1.0);
        assert!(
            (g.score as f64 - w.1).abs() <= tol,
            "{what}: rank {i}: engine {} {} vs oracle {} {}",
            id_str(g),
            g.score,
            w.0,
            w.1
        );
        let last = want.last().map_or(0.0, |x| x.1);
        if (w.1 - last).abs() > tol {
            assert_eq!(id_str(g), w.0, "{what}: rank {i}");
        }
    }
}

pub fn open_collection(
    dir: &std::path::Path,
    name: &str,
    schema: &Schema,
) -> (Database, std::sync::Arc<Collection>) {
    let db = Database::open(dir).expect("open db");
    let c = db.create_collection(name, schema).expect("create");
    (db, c)
}
