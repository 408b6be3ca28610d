//! BEIR-layout datasets: `corpus.jsonl`, `queries.jsonl`, `qrels/<split>.tsv`.
//!
//! ```text
//!   DIR/corpus.jsonl      {"_id": "4983", "title": "...", "text": "..."}   one document a line
//!   DIR/queries.jsonl     {"_id": "1", "text": "..."}                      one query a line
//!   DIR/qrels/test.tsv    query-id <TAB> corpus-id <TAB> score             header line first
//! ```
//!
//! [`load`] reads all three and keeps only the *judged* queries (those with at least one line in
//! the qrels), in the order of `queries.jsonl`, as BEIR's `GenericDataLoader` does. Ids may be JSON
//! strings or integers (integers are read as their decimal text, which is how the qrels name
//! them); `title` may be missing (empty), `text` must be a string. Extra keys (`metadata`) are
//! ignored. Every error names the file and the line.
//!
//! **Text of a document.** [`CorpusDoc::joined`] is `(title + " " + text).trim()` — the
//! convention of BEIR's dense models, sentence-transformers and MTEB (`title + sep + text`,
//! `sep = " "`, stripped; just the stripped text when there is no title). The same string is what
//! a BM25 field over `title` and `text` sees (Pyserini's flat BEIR index also indexes title and
//! text as one field). [`TextMode::TextOnly`] drops the title.
//!
//! Qrels scores are integers (graded relevance; `trec_eval` reads them as `long`). A judged query
//! that has no line in `queries.jsonl`, or a judgement of a document that is not in the corpus, is
//! not an error (some published BEIR sets have them) but is counted in [`BeirDataset::warnings`].

use crate::metrics::Qrels;
use serde_json::Value;
use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

/// Errors while loading a BEIR dataset. Each names the file (and line, where there is one).
#[derive(Debug, thiserror::Error)]
pub enum BeirError {
    /// A file could not be opened or read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A line is malformed.
    #[error("{path}:{line}: {msg}")]
    Line {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        msg: String,
    },
    /// The dataset as a whole is unusable (e.g. no judged query).
    #[error("{path}: {msg}")]
    Invalid {
        /// The file or folder.
        path: PathBuf,
        /// What is wrong.
        msg: String,
    },
}

/// One corpus document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CorpusDoc {
    /// `_id`.
    pub id: String,
    /// `title` (empty when absent).
    pub title: String,
    /// `text`.
    pub text: String,
}

/// Which parts of a document are embedded and indexed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TextMode {
    /// `(title + " " + text).trim()` (BEIR / sentence-transformers / MTEB convention).
    #[default]
    TitleText,
    /// `text.trim()` only.
    TextOnly,
}

impl CorpusDoc {
    /// The document's text under `mode` (see the module docs).
    pub fn joined(&self, mode: TextMode) -> String {
        match mode {
            TextMode::TitleText => format!("{} {}", self.title, self.text).trim().to_string(),
            TextMode::TextOnly => self.text.trim().to_string(),
        }
    }
}

/// One query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    /// `_id`.
    pub id: String,
    /// `text`.
    pub text: String,
}

/// A loaded dataset.
#[derive(Debug, Clone)]
pub struct BeirDataset {
    /// Folder name (e.g. `scifact`).
    pub name: String,
    /// All documents, in file order.
    pub corpus: Vec<CorpusDoc>,
    /// Judged queries only, in file order.
    pub queries: Vec<Query>,
    /// Judgements of the split.
    pub qrels: Qrels,
    /// Queries in `queries.jsonl` that the split does not judge (not evaluated).
    pub unjudged_queries: usize,
    /// Non-fatal oddities (judged queries without text, judged documents not in the corpus).
    pub warnings: Vec<String>,
}

fn io_err(path: &Path) -> impl Fn(std::io::Error) -> BeirError + '_ {
    move |source| BeirError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn id_of(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) if n.is_u64() || n.is_i64() => Some(n.to_string()),
        _ => None,
    }
}

/// Reads a JSONL file line by line: `f(line_number, object)`. Blank lines are skipped.
fn read_jsonl(
    path: &Path,
    mut f: impl FnMut(usize, &serde_json::Map<String, Value>) -> Result<(), String>,
) -> Result<(), BeirError> {
    let file = std::fs::File::open(path).map_err(io_err(path))?;
    for (i, line) in BufReader::new(file).lines().enumerate() {
        let line = line.map_err(io_err(path))?;
        if line.trim().is_empty() {
            continue;
        }
        let bad = |msg: String| BeirError::Line {
            path: path.to_path_buf(),
            line: i + 1,
            msg,
        };
        let v: Value =
            serde_json::from_str(&line).map_err(|e| bad(format!("not valid JSON: {e}")))?;
        let obj = v
            .as_object()
            .ok_or_else(|| bad("expected a JSON object".into()))?;
        f(i + 1, obj).map_err(bad)?;
    }
    Ok(())
}

fn field_id(obj: &serde_json::Map<String, Value>) -> Result<String, String> {
    match obj.get("_id") {
        None => Err("missing \"_id\"".into()),
        Some(v) => id_of(v).ok_or_else(|| format!("\"_id\" must be a string or integer, got {v}")),
    }
}

fn field_str(
    obj: &serde_json::Map<String, Value>,
    key: &str,
    required: bool,
) -> Result<String, String> {
    match obj.get(key) {
        None | Some(Value::Null) if !required => Ok(String::new()),
        None | Some(Value::Null) => Err(format!("missing string field {key:?}")),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(other) => Err(format!("field {key:?} must be a string, got {other}")),
    }
}

/// Reads `corpus.jsonl`.
pub fn read_corpus(path: &Path) -> Result<Vec<CorpusDoc>, BeirError> {
    let mut docs = Vec::new();
    let mut seen: HashMap<String, usize> = HashMap::new();
    read_jsonl(path, |line, obj| {
        let id = field_id(obj)?;
        if let Some(first) = seen.insert(id.clone(), line) {
            return Err(format!("duplicate _id {id:?} (first on line {first})"));
        }
        docs.push(CorpusDoc {
            id,
            title: field_str(obj, "title", false)?,
            text: field_str(obj, "text", true)?,
        });
        Ok(())
    })?;
    Ok(docs)
}

/// Reads `queries.jsonl`.
pub fn read_queries(path: &Path) -> Result<Vec<Query>, BeirError> {
    let mut out = Vec::new();
    let mut seen: HashMap<String, usize> = HashMap::new();
    read_jsonl(path, |line, obj| {
        let id = field_id(obj)?;
        if let Some(first) = seen.insert(id.clone(), line) {
            return Err(format!("duplicate _id {id:?} (first on line {first})"));
        }
        out.push(Query {
            id,
            text: field_str(obj, "text", true)?,
        });
        Ok(())
    })?;
    Ok(out)
}

/// Reads a qrels TSV (`query-id<TAB>corpus-id<TAB>score`, an optional header line whose score
/// column is not a number). Scores must be integers; a repeated (query, document) pair is an
/// error.
pub fn read_qrels(path: &Path) -> Result<Qrels, BeirError> {
    let file = std::fs::File::open(path).map_err(io_err(path))?;
    let mut qrels = Qrels::default();
    let mut first_line: HashMap<(String, String), usize> = HashMap::new();
    for (i, line) in BufReader::new(file).lines().enumerate() {
        let line = line.map_err(io_err(path))?;
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() {
            continue;
        }
        let bad = |msg: String| BeirError::Line {
            path: path.to_path_buf(),
            line: i + 1,
            msg,
        };
        let cols: Vec<&str> = line.split('\t').collect();
        if cols.len() != 3 {
            return Err(bad(format!(
                "expected 3 tab-separated columns (query-id, corpus-id, score), got {}",
                cols.len()
            )));
        }
        let score = match cols[2].trim().parse::<i64>() {
            Ok(s) => s,
            Err(_) if i == 0 => continue, // header: query-id corpus-id score
            Err(_) => {
                return Err(bad(format!(
                    "score {:?} is not an integer relevance level",
                    cols[2]
                )))
            }
        };
        let (q, d) = (cols[0].trim().to_string(), cols[1].trim().to_string());
        if q.is_empty() || d.is_empty() {
            return Err(bad("empty query-id or corpus-id".into()));
        }
        if let Some(first) = first_line.insert((q.clone(), d.clone()), i + 1) {
            return Err(bad(format!(
                "query {q:?} judges document {d:?} twice (first on line {first})"
            )));
        }
        qrels.insert(q, d, score);
    }
    Ok(qrels)
}

/// Loads the dataset in `dir` with the qrels of `split` (`qrels/<split>.tsv`).
pub fn load(dir: &Path, split: &str) -> Result<BeirDataset, BeirError> {
    let corpus = read_corpus(&dir.join("corpus.jsonl"))?;
    let all_queries = read_queries(&dir.join("queries.jsonl"))?;
    let qrels_path = dir.join("qrels").join(format!("{split}.tsv"));
    let qrels = read_qrels(&qrels_path)?;
    if qrels.is_empty() {
        return Err(BeirError::Invalid {
            path: qrels_path,
            msg: "no judgements".into(),
        });
    }
    let total = all_queries.len();
    let queries: Vec<Query> = all_queries
        .into_iter()
        .filter(|q| qrels.judged(&q.id))
        .collect();
    if queries.is_empty() {
        return Err(BeirError::Invalid {
            path: dir.join("queries.jsonl"),
            msg: format!("no query is judged in {}", qrels_path.display()),
        });
    }
    let mut warnings = Vec::new();
    let have: HashSet<&str> = queries.iter().map(|q| q.id.as_str()).collect();
    let missing: Vec<&str> = qrels.query_ids().filter(|q| !have.contains(q)).collect();
    if !missing.is_empty() {
        warnings.push(format!(
            "{} judged queries have no text in queries.jsonl and are not evaluated (e.g. {:?})",
            missing.len(),
            missing[0]
        ));
    }
    let ids: HashSet<&str> = corpus.iter().map(|d| d.id.as_str()).collect();
    let absent = qrels.pairs().filter(|(_, d, _)| !ids.contains(d)).count();
    if absent > 0 {
        warnings.push(format!(
            "{absent} judgements name documents that are not in corpus.jsonl"
        ));
    }
    let name = dir
        .canonicalize()
        .unwrap_or_else(|_| dir.to_path_buf())
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| dir.display().to_string());
    Ok(BeirDataset {
        name,
        corpus,
        unjudged_queries: total - queries.len(),
        queries,
        qrels,
        warnings,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, body: &str) {
        let p = dir.join(name);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).expect("mkdir");
        }
        std::fs::write(p, body).expect("write");
    }

    #[test]
    fn loads_judged_queries_and_joins_title() {
        let d = tempfile::tempdir().expect("tempdir");
        write(
            d.path(),
            "corpus.jsonl",
            "{\"_id\": \"d1\", \"title\": \"Quokkas\", \"text\": \" live on Rottnest. \"}\n\n{\"_id\": 7, \"text\": \"no title\", \"metadata\": {}}\n",
        );
        write(
            d.path(),
            "queries.jsonl",
            "{\"_id\": \"q1\", \"text\": \"where?\"}\n{\"_id\": \"q2\", \"text\": \"unjudged\"}\n",
        );
        write(
            d.path(),
            "qrels/test.tsv",
            "query-id\tcorpus-id\tscore\nq1\td1\t2\nq1\t7\t0\n",
        );
        let ds = load(d.path(), "test").expect("load");
        assert_eq!(ds.corpus.len(), 2);
        assert_eq!(ds.corpus[1].id, "7");
        assert_eq!(
            ds.corpus[0].joined(TextMode::TitleText),
            "Quokkas  live on Rottnest."
        );
        assert_eq!(ds.corpus[1].joined(TextMode::TitleText), "no title");
        assert_eq!(ds.corpus[0].joined(TextMode::TextOnly), "live on Rottnest.");
        assert_eq!(ds.queries.len(), 1);
        assert_eq!(ds.unjudged_queries, 1);
        assert_eq!(ds.qrels.get("q1", "d1"), Some(2));
        assert!(ds.warnings.is_empty(), "{:?}", ds.warnings);
    }

    #[test]
    fn errors_name_file_and_line() {
        let d = tempfile::tempdir().expect("tempdir");
        write(
            d.path(),
            "corpus.jsonl",
            "{\"_id\": \"d1\", \"text\": \"a\"}\n{\"_id\": \"d2\", \"title\": 3, \"text\": \"b\"}\n",
        );
        write(
            d.path(),
            "queries.jsonl",
            "{\"_id\": \"q1\", \"text\": \"x\"}\n",
        );
        write(d.path(), "qrels/test.tsv", "q1\td1\t1\n");
        let e = load(d.path(), "test").expect_err("bad title").to_string();
        assert!(e.contains("corpus.jsonl:2") && e.contains("title"), "{e}");

        write(
            d.path(),
            "corpus.jsonl",
            "{\"_id\": \"d1\", \"text\": \"a\"}\n",
        );
        write(d.path(), "qrels/test.tsv", "q1\td1\t1\nq1\td1\t2\n");
        let e = load(d.path(), "test").expect_err("duplicate").to_string();
        assert!(e.contains("test.tsv:2") && e.contains("twice"), "{e}");

        write(
            d.path(),
            "qrels/test.tsv",
            "q-id\tc-id\tscore\nq1\td1\tyes\n",
        );
        let e = load(d.path(), "test").expect_err("score").to_string();
        assert!(e.contains("test.tsv:2") && e.contains("\"yes\""), "{e}");

        write(d.path(), "qrels/test.tsv", "q1\td1\n");
        let e = load(d.path(), "test").expect_err("columns").to_string();
        assert!(
            e.contains("test.tsv:1") && e.contains("3 tab-separated"),
            "{e}"
        );

        write(d.path(), "qrels/test.tsv", "q9\td1\t1\n");
        let e = load(d.path(), "test")
            .expect_err("nothing judged")
            .to_string();
        assert!(e.contains("no query is judged"), "{e}");

        let e = load(d.path(), "dev").expect_err("no split").to_string();
        assert!(e.contains("dev.tsv"), "{e}");
    }
}
