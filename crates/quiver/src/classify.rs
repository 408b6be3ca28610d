//! Zero-shot classification of a collection's documents by label similarity (issue 17): each
//! label's text (name, description, keywords) is embedded by a dense field's model, optionally
//! refined Lbl2TransformerVec-style (`quiver_linalg::classify::label_vectors`: the centroid of
//! the documents nearest to it, iterated), and every document gets the most similar label — or,
//! with a threshold, every label at least that similar — written into a payload keyword field,
//! so filters can use it.
//!
//! The documents' vectors are the field's stored ones (nothing is re-embedded). Labels are
//! written back with a conditional upsert (`quiver_storage::Collection::upsert_unchanged`): a
//! document rewritten or deleted while the classification ran is left as the other write made
//! it, and counted in [`ClassifyReport::changed`].

use crate::engine::Collection;
use crate::error::{EngineError, Result};
use quiver_linalg::classify::{assign, label_vectors, LabelParams};
use quiver_storage::{DocId, FieldSpec, PayloadKind};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::time::Instant;

/// One label: `{"label": "Sports", "description": "...", "keywords": ["football"]}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Label {
    /// The name written into documents.
    pub label: String,
    /// What the label means, in words (embedded with the name).
    #[serde(default)]
    pub description: String,
    /// Words typical of it (appended to the text embedded).
    #[serde(default)]
    pub keywords: Vec<String>,
}

impl Label {
    /// The text embedded for the label: `"{label}: {description}"`, then `" (k1, k2)"` when it
    /// has keywords.
    pub fn text(&self) -> String {
        let mut t = format!("{}: {}", self.label, self.description);
        if !self.keywords.is_empty() {
            t.push_str(&format!(" ({})", self.keywords.join(", ")));
        }
        t
    }

    /// Parses and checks a label list (a JSON array of labels): at least one, names non-empty
    /// and distinct.
    pub fn parse_list(text: &str) -> Result<Vec<Label>> {
        let labels: Vec<Label> = serde_json::from_str(text).map_err(|e| {
            EngineError::BadRequest(format!(
                "labels: expected a JSON array of {{\"label\", \"description\", \"keywords\"}}: {e}"
            ))
        })?;
        check_labels(&labels)?;
        Ok(labels)
    }
}

fn check_labels(labels: &[Label]) -> Result<()> {
    if labels.is_empty() {
        return Err(EngineError::BadRequest("labels: the list is empty".into()));
    }
    let mut seen = std::collections::HashSet::new();
    for l in labels {
        if l.label.trim().is_empty() {
            return Err(EngineError::BadRequest(
                "labels: a label has no name".into(),
            ));
        }
        if !seen.insert(l.label.as_str()) {
            return Err(EngineError::BadRequest(format!(
                "labels: {:?} is listed twice",
                l.label
            )));
        }
    }
    Ok(())
}

/// How [`Collection::classify`] runs.
#[derive(Debug, Clone)]
pub struct ClassifyOptions {
    /// Dense field whose vectors are compared (default: the only one); it needs a model.
    pub field: Option<String>,
    /// Payload keyword field the labels are written into (added to the schema when absent).
    pub into: String,
    /// The labels.
    pub labels: Vec<Label>,
    /// Refinement rounds (0: plain label-description similarity).
    pub iterations: usize,
    /// Documents averaged per label and round (default: half a balanced share).
    pub top_docs: Option<usize>,
    /// Multi-label: every label whose cosine is at least this (a document may get none: the
    /// field is then removed from its payload). `None`: exactly the most similar label.
    pub threshold: Option<f32>,
    /// Documents per conditional upsert.
    pub batch: usize,
}

impl Default for ClassifyOptions {
    fn default() -> Self {
        ClassifyOptions {
            field: None,
            into: "label".into(),
            labels: Vec::new(),
            iterations: 1,
            top_docs: None,
            threshold: None,
            batch: 500,
        }
    }
}

/// What [`Collection::classify`] did.
#[derive(Debug, Clone, Serialize)]
pub struct ClassifyReport {
    /// The dense field compared.
    pub field: String,
    /// The payload field written.
    pub into: String,
    /// Whether `into` was added to the schema.
    pub added_field: bool,
    /// Documents classified.
    pub documents: usize,
    /// Documents written with their label(s).
    pub written: usize,
    /// Documents rewritten or deleted while the classification ran (left alone).
    pub changed: usize,
    /// Documents written per label (multi-label: a document counts under each of its labels).
    pub counts: BTreeMap<String, usize>,
    /// Documents written with no label (only with a threshold: the field is removed from them).
    pub unlabelled: usize,
    /// Wall seconds.
    pub seconds: f64,
}

impl Collection {
    /// Classifies every visible document into `opts.labels` by similarity on a dense field and
    /// writes the result into payload keyword field `opts.into` (see the module docs). Bad
    /// input (no or duplicate labels, a field without a model, `into` naming a field of another
    /// kind, a bad threshold) fails before anything is written.
    pub fn classify(&self, opts: &ClassifyOptions) -> Result<ClassifyReport> {
        let t0 = Instant::now();
        self.writable()?;
        check_labels(&opts.labels)?;
        if opts.threshold.is_some_and(|t| !(-1.0..=1.0).contains(&t)) || opts.batch == 0 {
            return Err(EngineError::BadRequest(format!(
                "classify: the threshold must be a cosine in [-1, 1] and batch >= 1 (got {:?} and {})",
                opts.threshold, opts.batch
            )));
        }
        let schema = self.schema();
        let field = crate::request::dense_field(&schema, opts.field.as_deref(), true)?;
        let Some(model) = field.embedding.model.clone() else {
            return Err(EngineError::BadRequest(format!(
                "classify: field {:?} has no model to embed the labels with",
                field.name
            )));
        };
        if !schema.backfill.is_empty() {
            // Documents written back must carry every field, and some still lack one.
            return Err(EngineError::BadRequest(format!(
                "classify: fields {:?} are still being backfilled; run `quiver collection \
                 backfill {}` first",
                schema.backfill,
                self.name()
            )));
        }
        let added_field = match schema.fields.get(&opts.into) {
            None => true,
            Some(_) if schema.payload_kind(&opts.into) == Some(PayloadKind::Keyword) => false,
            Some(_) => {
                return Err(EngineError::BadRequest(format!(
                    "classify: field {:?} exists and is not a keyword field",
                    opts.into
                )))
            }
        };
        self.check_into(&schema, &opts.into, added_field)?;
        let texts: Vec<String> = opts.labels.iter().map(Label::text).collect();
        let desc = self.embed_label_texts(&model, &texts, field.dim)?;

        let snap = self.snapshot();
        let (mut ids, mut docs) = (Vec::new(), Vec::new());
        snap.for_each_visible_loc(None, |id, loc| {
            let (s, r) = snap.place(loc);
            let seg = snap.segment(s);
            let v = seg
                .dense(&field.name)
                .and_then(|d| d.vector(r).map(<[f32]>::to_vec));
            if let Some(v) = v {
                ids.push(id.clone());
                docs.extend_from_slice(&v);
            }
        });
        let params = LabelParams {
            iterations: opts.iterations,
            top_docs: opts.top_docs,
        };
        let bad = |e: quiver_linalg::LinalgError| EngineError::BadRequest(format!("classify: {e}"));
        let lv = label_vectors(&desc, &docs, field.dim, params).map_err(bad)?;
        let assigned = assign(&lv, &docs, field.dim, opts.threshold).map_err(bad)?;
        drop(docs);

        if added_field {
            self.add_field(&opts.into, FieldSpec::Keyword)?;
        }
        let mut report = ClassifyReport {
            field: field.name.clone(),
            into: opts.into.clone(),
            added_field,
            documents: ids.len(),
            written: 0,
            changed: 0,
            counts: opts.labels.iter().map(|l| (l.label.clone(), 0)).collect(),
            unlabelled: 0,
            seconds: 0.0,
        };
        let progress = self.progress_sink();
        progress.start("classify", ids.len() as u64);
        // The label value written: one name, or (with a threshold) a list; none removes it.
        let value = |labels: &[usize]| match (opts.threshold, labels) {
            (None, [one]) => json!(opts.labels[*one].label),
            (_, []) => Value::Null,
            _ => json!(labels
                .iter()
                .map(|&l| &opts.labels[l].label)
                .collect::<Vec<_>>()),
        };
        let pairs: Vec<(DocId, &[usize])> = ids
            .into_iter()
            .zip(assigned.iter().map(|a| a.labels.as_slice()))
            .collect();
        for chunk in pairs.chunks(opts.batch) {
            let batch: Vec<_> = chunk
                .iter()
                .filter_map(|(id, labels)| {
                    let mut d = snap.get(id)?.into_document();
                    match value(labels) {
                        Value::Null => d.payload.remove(&opts.into),
                        v => d.payload.insert(opts.into.clone(), v),
                    };
                    Some(d)
                })
                .collect();
            let (w, changed) = self.storage().upsert_unchanged(batch, snap.seq())?;
            report.written += w.count;
            report.changed += changed.len();
            // Counted over the documents written (not those rewritten meanwhile).
            let changed: std::collections::HashSet<&DocId> = changed.iter().collect();
            for (_, labels) in chunk.iter().filter(|(id, _)| !changed.contains(id)) {
                for &l in labels.iter() {
                    *report
                        .counts
                        .entry(opts.labels[l].label.clone())
                        .or_default() += 1;
                }
                report.unlabelled += labels.is_empty() as usize;
            }
            progress.inc(chunk.len() as u64);
        }
        progress.finish();
        snap.check()?;
        report.seconds = t0.elapsed().as_secs_f64();
        Ok(report)
    }

    /// `into` must not be what a field is computed from, nor — when it is not declared yet —
    /// a payload key documents already use (classify would overwrite their values).
    fn check_into(
        &self,
        schema: &quiver_storage::Schema,
        into: &str,
        undeclared: bool,
    ) -> Result<()> {
        let source = schema
            .dense_fields()
            .iter()
            .any(|f| f.embedding.embed.iter().any(|e| e == into))
            || schema
                .multi_fields()
                .iter()
                .any(|f| f.embedding.embed.iter().any(|e| e == into))
            || schema
                .text_fields()
                .iter()
                .any(|f| f.source.iter().any(|e| e == into));
        if source || into.trim().is_empty() {
            return Err(EngineError::BadRequest(format!(
                "classify: {into:?} cannot take the labels: a field is computed from it"
            )));
        }
        if undeclared {
            let snap = self.snapshot();
            let mut used = None;
            snap.for_each_visible_loc(None, |id, loc| {
                if used.is_none() {
                    let (s, r) = snap.place(loc);
                    if snap
                        .segment(s)
                        .payload(r)
                        .get(into)
                        .is_some_and(|v| !v.is_null())
                    {
                        used = Some(id.clone());
                    }
                }
            });
            if let Some(id) = used {
                return Err(EngineError::BadRequest(format!(
                    "classify: documents already have payload key {into:?} (document {id}); \
                     choose another field, or declare it as a keyword field to overwrite it"
                )));
            }
        }
        Ok(())
    }

    fn embed_label_texts(&self, model: &str, texts: &[String], dim: usize) -> Result<Vec<f32>> {
        let flat = self.embed_texts_by(model, texts, false)?;
        if flat.len() != texts.len() * dim {
            return Err(EngineError::BadRequest(format!(
                "classify: model {model:?} gives vectors of another dimension than the field's {dim}"
            )));
        }
        Ok(flat)
    }
}
