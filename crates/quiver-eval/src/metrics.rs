//! IR metrics computed exactly as `trec_eval` 9 (and so `pytrec_eval`, which wraps its code) does.
//!
//! A *run* maps each query to scored documents ([`Scored`]); *qrels* ([`Qrels`]) map each query to
//! judged documents and their integer relevance level. [`Evaluator`] computes [`Measure`]s per
//! query and their mean over the judged queries.
//!
//! ```
//! use quiver_eval::metrics::{Evaluator, Measure, Qrels, Scored};
//! let mut qrels = Qrels::default();
//! qrels.insert("q1".into(), "a".into(), 2);
//! qrels.insert("q1".into(), "b".into(), 1);
//! let ranked = vec![Scored::new("x", 0.9), Scored::new("b", 0.8), Scored::new("a", 0.5)];
//! let ev = Evaluator::new(vec![Measure::Recall(2), Measure::Precision(2), Measure::Mrr(10)]);
//! let v = ev.query(qrels.judgements("q1").unwrap(), &ranked);
//! assert_eq!(v, vec![0.5, 0.5, 0.5]);
//! ```
//!
//! # Ranking and ties
//!
//! `trec_eval` ignores the rank column of a run: it sorts each query's documents by score
//! descending and breaks ties by document id **descending** in byte order (`form_res_rels.c`,
//! `comp_sim_docno`: `strcmp(ptr2->docno, ptr1->docno)`). Scores are compared as `f32` (its
//! `float sim`), and Quiver's scores are `f32` too. [`trec_sort`] does the same, so cut-offs fall
//! on the same documents as in `pytrec_eval`. A document listed twice for one query counts once
//! (its first place in that order).
//!
//! # Definitions (rel(d) = judged level, unjudged = not relevant; relevant = rel >= level, 1 by default)
//!
//! | key | trec_eval | value for one query |
//! |---|---|---|
//! | `ndcg@k` | `ndcg_cut_k` | DCG@k / IDCG@k, DCG@k = Σ_{i=1..k} rel(d_i) / log2(i+1) (gain = the relevance level itself, graded); IDCG@k: the same sum over the query's judged documents with level > 0 sorted by level; 0 when IDCG is 0 |
//! | `recall@k` | `recall_k` | relevant in top k / relevant judged (0 when none is relevant) |
//! | `p@k` | `P_k` | relevant in top k / k (k, not the number retrieved) |
//! | `map@k` | `map_cut_k` | Σ over relevant d_i with i <= k of (relevant in top i)/i, divided by all relevant judged |
//! | `mrr@k` | `recip_rank` on the run cut to its top k | 1/i for the first relevant d_i with i <= k, else 0 (BEIR's MRR@k) |
//!
//! A judged query with no retrieved documents scores 0 on every measure, and counts in the mean
//! (like `trec_eval -c`; BEIR's runs always list every query, so its averages agree).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::io::Write;
use std::str::FromStr;

/// Errors of metric names.
#[derive(Debug, thiserror::Error)]
pub enum MetricError {
    /// A measure name that is not `ndcg@k`, `recall@k`, `p@k`, `map@k` or `mrr@k` with k >= 1.
    #[error("unknown measure {0:?}: expected ndcg@K, recall@K, p@K, map@K or mrr@K with K >= 1")]
    UnknownMeasure(String),
}

/// Judgements: query id -> document id -> relevance level.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Qrels {
    by_query: BTreeMap<String, HashMap<String, i64>>,
}

impl Qrels {
    /// Records that `query` judges `doc` at `level` (replacing an earlier judgement).
    pub fn insert(&mut self, query: String, doc: String, level: i64) {
        self.by_query.entry(query).or_default().insert(doc, level);
    }

    /// The level of (`query`, `doc`), if judged.
    pub fn get(&self, query: &str, doc: &str) -> Option<i64> {
        self.by_query.get(query)?.get(doc).copied()
    }

    /// All judgements of `query`.
    pub fn judgements(&self, query: &str) -> Option<&HashMap<String, i64>> {
        self.by_query.get(query)
    }

    /// Whether `query` has at least one judgement.
    pub fn judged(&self, query: &str) -> bool {
        self.by_query.contains_key(query)
    }

    /// Judged query ids, in id order.
    pub fn query_ids(&self) -> impl Iterator<Item = &str> {
        self.by_query.keys().map(String::as_str)
    }

    /// Every (query, document, level).
    pub fn pairs(&self) -> impl Iterator<Item = (&str, &str, i64)> {
        self.by_query
            .iter()
            .flat_map(|(q, m)| m.iter().map(move |(d, l)| (q.as_str(), d.as_str(), *l)))
    }

    /// Number of judged queries.
    pub fn len(&self) -> usize {
        self.by_query.len()
    }

    /// No judgements at all.
    pub fn is_empty(&self) -> bool {
        self.by_query.is_empty()
    }
}

/// A retrieved document and its score (higher is better).
#[derive(Debug, Clone, PartialEq)]
pub struct Scored {
    /// Document id.
    pub doc: String,
    /// Score.
    pub score: f32,
}

impl Scored {
    /// A scored document.
    pub fn new(doc: impl Into<String>, score: f32) -> Self {
        Scored {
            doc: doc.into(),
            score,
        }
    }
}

/// A run: query id -> retrieved documents (any order; [`trec_sort`] orders them).
pub type Run = HashMap<String, Vec<Scored>>;

/// Sorts as `trec_eval` does: score descending, then document id descending (byte order).
pub fn trec_sort(list: &mut [Scored]) {
    list.sort_by(|a, b| {
        b.score
            .total_cmp(&a.score)
            .then_with(|| b.doc.as_bytes().cmp(a.doc.as_bytes()))
    });
}

/// One measure at a cut-off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Measure {
    /// nDCG@k (`ndcg_cut_k`).
    Ndcg(usize),
    /// Recall@k (`recall_k`).
    Recall(usize),
    /// Precision@k (`P_k`).
    Precision(usize),
    /// MAP cut at k (`map_cut_k`).
    Map(usize),
    /// Reciprocal rank of the first relevant document in the top k (`recip_rank` on the cut run).
    Mrr(usize),
}

/// The measures `quiver eval` reports by default.
pub const DEFAULT_MEASURES: [Measure; 7] = [
    Measure::Ndcg(10),
    Measure::Recall(2),
    Measure::Recall(10),
    Measure::Recall(100),
    Measure::Map(100),
    Measure::Mrr(10),
    Measure::Precision(10),
];

impl Measure {
    /// The cut-off k.
    pub fn cutoff(&self) -> usize {
        match *self {
            Measure::Ndcg(k)
            | Measure::Recall(k)
            | Measure::Precision(k)
            | Measure::Map(k)
            | Measure::Mrr(k) => k,
        }
    }

    /// The name `trec_eval` / `pytrec_eval` print (`mrr@k` is `recip_rank` on a run cut to k).
    pub fn trec_name(&self) -> String {
        match *self {
            Measure::Ndcg(k) => format!("ndcg_cut_{k}"),
            Measure::Recall(k) => format!("recall_{k}"),
            Measure::Precision(k) => format!("P_{k}"),
            Measure::Map(k) => format!("map_cut_{k}"),
            Measure::Mrr(_) => "recip_rank".into(),
        }
    }
}

impl fmt::Display for Measure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (name, k) = match *self {
            Measure::Ndcg(k) => ("ndcg", k),
            Measure::Recall(k) => ("recall", k),
            Measure::Precision(k) => ("p", k),
            Measure::Map(k) => ("map", k),
            Measure::Mrr(k) => ("mrr", k),
        };
        write!(f, "{name}@{k}")
    }
}

impl FromStr for Measure {
    type Err = MetricError;
    /// `ndcg@10`, `recall@100`, `p@5` (or `P@5`), `map@100`, `mrr@10`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || MetricError::UnknownMeasure(s.to_string());
        let (name, k) = s.trim().split_once('@').ok_or_else(bad)?;
        let k: usize = k.parse().map_err(|_| bad())?;
        if k == 0 {
            return Err(bad());
        }
        Ok(match name.to_ascii_lowercase().as_str() {
            "ndcg" => Measure::Ndcg(k),
            "recall" | "r" => Measure::Recall(k),
            "p" | "precision" => Measure::Precision(k),
            "map" => Measure::Map(k),
            "mrr" => Measure::Mrr(k),
            _ => return Err(bad()),
        })
    }
}

/// Computes measures per query and on average.
#[derive(Debug, Clone)]
pub struct Evaluator {
    /// What to compute, in output order.
    pub measures: Vec<Measure>,
    /// Minimum level that counts as relevant for recall, precision, MAP and MRR (`trec_eval -l`,
    /// default 1). nDCG uses the levels themselves as gains.
    pub relevance_level: i64,
}

/// Per-query values and their means, in the evaluator's measure order.
#[derive(Debug, Clone, PartialEq)]
pub struct Evaluation {
    /// The measures.
    pub measures: Vec<Measure>,
    /// Query id -> one value per measure.
    pub per_query: BTreeMap<String, Vec<f64>>,
    /// Mean over the evaluated queries, per measure.
    pub mean: Vec<f64>,
}

impl Evaluation {
    /// The mean of `m`, if it was computed.
    pub fn mean_of(&self, m: Measure) -> Option<f64> {
        let i = self.measures.iter().position(|x| *x == m)?;
        self.mean.get(i).copied()
    }
}

impl Evaluator {
    /// An evaluator with relevance level 1.
    pub fn new(measures: Vec<Measure>) -> Self {
        Evaluator {
            measures,
            relevance_level: 1,
        }
    }

    /// Documents needed per query: the largest cut-off.
    pub fn depth(&self) -> usize {
        self.measures.iter().map(Measure::cutoff).max().unwrap_or(0)
    }

    /// The measures of one query: `judged` are its judgements, `retrieved` its documents in any
    /// order (they are ordered with [`trec_sort`]).
    pub fn query(&self, judged: &HashMap<String, i64>, retrieved: &[Scored]) -> Vec<f64> {
        let mut ranked = retrieved.to_vec();
        trec_sort(&mut ranked);
        let mut seen = HashSet::with_capacity(ranked.len());
        ranked.retain(|s| seen.insert(s.doc.clone()));
        let level = |d: &str| judged.get(d).copied();
        let rels: Vec<Option<i64>> = ranked.iter().map(|s| level(&s.doc)).collect();
        let relevant = |r: &Option<i64>| r.is_some_and(|l| l >= self.relevance_level);
        let num_rel = judged
            .values()
            .filter(|&&l| l >= self.relevance_level)
            .count();
        let mut ideal: Vec<i64> = judged.values().copied().filter(|&l| l > 0).collect();
        ideal.sort_unstable_by(|a, b| b.cmp(a));
        let discount = |i: usize| ((i + 2) as f64).log2();
        self.measures
            .iter()
            .map(|m| {
                let k = m.cutoff();
                let top = &rels[..k.min(rels.len())];
                let hits = || top.iter().filter(|r| relevant(r)).count() as f64;
                match *m {
                    Measure::Ndcg(_) => {
                        let dcg: f64 = top
                            .iter()
                            .enumerate()
                            .map(|(i, r)| r.unwrap_or(0) as f64 / discount(i))
                            .sum();
                        let idcg: f64 = ideal
                            .iter()
                            .take(k)
                            .enumerate()
                            .map(|(i, &g)| g as f64 / discount(i))
                            .sum();
                        if idcg > 0.0 {
                            dcg / idcg
                        } else {
                            0.0
                        }
                    }
                    Measure::Recall(_) => {
                        if num_rel == 0 {
                            0.0
                        } else {
                            hits() / num_rel as f64
                        }
                    }
                    Measure::Precision(_) => hits() / k as f64,
                    Measure::Map(_) => {
                        if num_rel == 0 {
                            return 0.0;
                        }
                        let mut found = 0usize;
                        let mut sum = 0.0;
                        for (i, r) in top.iter().enumerate() {
                            if relevant(r) {
                                found += 1;
                                sum += found as f64 / (i + 1) as f64;
                            }
                        }
                        sum / num_rel as f64
                    }
                    Measure::Mrr(_) => top
                        .iter()
                        .position(relevant)
                        .map_or(0.0, |i| 1.0 / (i + 1) as f64),
                }
            })
            .collect()
    }

    /// Evaluates `run` on the queries `query_ids` (each must be judged in `qrels`; unjudged ids
    /// are skipped). A query missing from the run scores 0.
    pub fn evaluate<'a>(
        &self,
        qrels: &Qrels,
        run: &Run,
        query_ids: impl IntoIterator<Item = &'a str>,
    ) -> Evaluation {
        let mut per_query = BTreeMap::new();
        let empty = Vec::new();
        for q in query_ids {
            let Some(judged) = qrels.judgements(q) else {
                continue;
            };
            let retrieved = run.get(q).unwrap_or(&empty);
            per_query.insert(q.to_string(), self.query(judged, retrieved));
        }
        let n = per_query.len().max(1) as f64;
        let mean = (0..self.measures.len())
            .map(|i| per_query.values().map(|v: &Vec<f64>| v[i]).sum::<f64>() / n)
            .collect();
        Evaluation {
            measures: self.measures.clone(),
            per_query,
            mean,
        }
    }

    /// Evaluates `run` on every judged query of `qrels`.
    pub fn evaluate_all(&self, qrels: &Qrels, run: &Run) -> Evaluation {
        self.evaluate(qrels, run, qrels.query_ids())
    }
}

/// Writes `run` in the TREC run format `qid Q0 docid rank score tag`, queries in id order, each
/// query's documents in [`trec_sort`] order, scores printed so that they read back as the same
/// `f32`. An id containing whitespace (the format's separator) is an `InvalidInput` error naming
/// it, before anything is written.
pub fn write_trec_run(mut w: impl Write, run: &Run, tag: &str) -> std::io::Result<()> {
    let spaced = |s: &str| s.is_empty() || s.chars().any(char::is_whitespace);
    for (q, list) in run {
        if let Some(bad) = std::iter::once(q.as_str())
            .chain(list.iter().map(|s| s.doc.as_str()))
            .chain(std::iter::once(tag))
            .find(|s| spaced(s))
        {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("id {bad:?} is empty or contains whitespace, which the TREC run format cannot hold (write JSON instead)"),
            ));
        }
    }
    let mut queries: Vec<&String> = run.keys().collect();
    queries.sort();
    for q in queries {
        let mut list = run[q].clone();
        trec_sort(&mut list);
        for (i, s) in list.iter().enumerate() {
            writeln!(w, "{q} Q0 {} {} {:?} {tag}", s.doc, i + 1, s.score)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn judged(pairs: &[(&str, i64)]) -> HashMap<String, i64> {
        pairs.iter().map(|(d, l)| (d.to_string(), *l)).collect()
    }

    #[test]
    fn ties_break_by_descending_doc_id() {
        let mut l = vec![
            Scored::new("a", 1.0),
            Scored::new("c", 1.0),
            Scored::new("z", 0.5),
            Scored::new("b", 1.0),
            Scored::new("10", 2.0),
            Scored::new("9", 2.0),
        ];
        trec_sort(&mut l);
        let order: Vec<&str> = l.iter().map(|s| s.doc.as_str()).collect();
        assert_eq!(order, ["9", "10", "c", "b", "a", "z"]);
    }

    #[test]
    fn graded_ndcg_by_formula() {
        // Ranking c(0), b(2), a(1) after the tie-break; ideal b(2), a(1).
        let j = judged(&[("a", 1), ("b", 2), ("c", 0)]);
        let run = [
            Scored::new("a", 1.0),
            Scored::new("b", 1.0),
            Scored::new("c", 1.0),
        ];
        let ev = Evaluator::new(vec![Measure::Ndcg(1), Measure::Ndcg(3), Measure::Mrr(10)]);
        let v = ev.query(&j, &run);
        let dcg3 = 2.0 / 3f64.log2() + 1.0 / 4f64.log2();
        let idcg3 = 2.0 + 1.0 / 3f64.log2();
        assert_eq!(v[0], 0.0);
        assert!((v[1] - dcg3 / idcg3).abs() < 1e-12, "{v:?}");
        assert_eq!(v[2], 0.5);
    }

    #[test]
    fn precision_divides_by_k_and_map_by_all_relevant() {
        let j = judged(&[("a", 1), ("b", 1), ("c", 1), ("n", 0)]);
        let run = [
            Scored::new("a", 3.0),
            Scored::new("x", 2.0),
            Scored::new("b", 1.0),
        ];
        let ev = Evaluator::new(vec![
            Measure::Precision(10),
            Measure::Map(2),
            Measure::Map(100),
            Measure::Recall(2),
            Measure::Recall(100),
        ]);
        let v = ev.query(&j, &run);
        assert_eq!(v[0], 2.0 / 10.0);
        assert_eq!(v[1], 1.0 / 3.0);
        assert!((v[2] - (1.0 + 2.0 / 3.0) / 3.0).abs() < 1e-12);
        assert_eq!(v[3], 1.0 / 3.0);
        assert_eq!(v[4], 2.0 / 3.0);
    }

    #[test]
    fn missing_queries_score_zero_and_count() {
        let mut qrels = Qrels::default();
        qrels.insert("q1".into(), "a".into(), 1);
        qrels.insert("q2".into(), "b".into(), 1);
        let mut run = Run::new();
        run.insert("q1".into(), vec![Scored::new("a", 1.0)]);
        run.insert("unjudged".into(), vec![Scored::new("a", 1.0)]);
        let e = Evaluator::new(vec![Measure::Ndcg(10)]).evaluate_all(&qrels, &run);
        assert_eq!(e.per_query.len(), 2);
        assert_eq!(e.per_query["q2"], vec![0.0]);
        assert_eq!(e.mean_of(Measure::Ndcg(10)), Some(0.5));
    }

    #[test]
    fn measure_names_round_trip() {
        for m in DEFAULT_MEASURES {
            assert_eq!(m.to_string().parse::<Measure>().ok(), Some(m));
        }
        assert_eq!("P@5".parse::<Measure>().ok(), Some(Measure::Precision(5)));
        assert!("ndcg@0".parse::<Measure>().is_err());
        assert!("ndcg10".parse::<Measure>().is_err());
        assert!("bpref@10".parse::<Measure>().is_err());
    }

    #[test]
    fn trec_run_format() {
        let mut run = Run::new();
        run.insert(
            "q".into(),
            vec![Scored::new("a", 0.1), Scored::new("b", 0.25)],
        );
        let mut out = Vec::new();
        write_trec_run(&mut out, &run, "t").expect("write");
        let text = String::from_utf8(out).expect("utf8");
        assert_eq!(text, "q Q0 b 1 0.25 t\nq Q0 a 2 0.1 t\n");
        run.insert("q2".into(), vec![Scored::new("Geneva Durben", 1.0)]);
        let e = write_trec_run(Vec::new(), &run, "t").expect_err("space in id");
        assert!(e.to_string().contains("\"Geneva Durben\""), "{e}");
    }
}
