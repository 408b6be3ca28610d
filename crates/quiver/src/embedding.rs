//! Vectors of model-backed fields: computed for documents at upsert and for query texts.
//!
//! Every model-backed field (dense or multi) of a schema names a model and the payload fields its
//! text comes from ([`crate::document::document_text`]). Texts are grouped by model, and each
//! distinct (model, text) pair is encoded by **one** forward pass: a dense field and a multi
//! field on the same model and text share it ([`Embedder::embed_with_tokens`]).

use crate::document::{document_text, query_text};
use crate::error::{EngineError, Result};
use crate::models::ModelPool;
use quiver_embed::{EmbedOptions, Embedder, TokenEmbeddings};
use quiver_query::QueryEncoder;
use quiver_storage::{DenseField, Document, MultiField, Progress, Schema};
use serde_json::Value;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

/// Texts per call into a model (the model batches them further by length).
const CHUNK: usize = 256;

/// Where one encoded text's vectors go.
#[derive(Clone, Copy)]
enum Target {
    /// `docs[doc].vectors[dense[field]]`.
    Dense { doc: usize, field: usize },
    /// `docs[doc].multi[multi[field]]`.
    Multi { doc: usize, field: usize },
}

/// The distinct texts of one model and who needs what of them.
#[derive(Default)]
struct ModelWork {
    texts: Vec<String>,
    index: HashMap<String, usize>,
    pooled: Vec<bool>,
    tokens: Vec<bool>,
    targets: Vec<Vec<Target>>,
}

impl ModelWork {
    fn add(&mut self, text: String, target: Target) {
        let i = match self.index.get(&text) {
            Some(&i) => i,
            None => {
                let i = self.texts.len();
                self.index.insert(text.clone(), i);
                self.texts.push(text);
                self.pooled.push(false);
                self.tokens.push(false);
                self.targets.push(Vec::new());
                i
            }
        };
        match target {
            Target::Dense { .. } => self.pooled[i] = true,
            Target::Multi { .. } => self.tokens[i] = true,
        }
        self.targets[i].push(target);
    }
}

/// Computes the vectors of every model-backed field that a document does not already carry.
/// Errors name the document's position in `docs` and the field. Nothing is changed on error.
pub fn embed_documents(
    schema: &Schema,
    docs: &mut [Document],
    pool: &ModelPool,
    progress: &dyn Progress,
) -> Result<()> {
    let dense = schema.dense_fields();
    let multi = schema.multi_fields();
    let mut work: BTreeMap<String, ModelWork> = BTreeMap::new();
    for (fi, f) in dense.iter().enumerate() {
        let Some(model) = &f.embedding.model else {
            continue;
        };
        for (di, d) in docs.iter().enumerate() {
            if d.vectors.contains_key(&f.name) {
                continue;
            }
            let text = text_of(&f.embedding, d, di, &f.name)?;
            work.entry(model.clone())
                .or_default()
                .add(text, Target::Dense { doc: di, field: fi });
        }
    }
    for (fi, f) in multi.iter().enumerate() {
        let Some(model) = &f.embedding.model else {
            continue;
        };
        for (di, d) in docs.iter().enumerate() {
            if d.multi.contains_key(&f.name) {
                continue;
            }
            let text = text_of(&f.embedding, d, di, &f.name)?;
            work.entry(model.clone())
                .or_default()
                .add(text, Target::Multi { doc: di, field: fi });
        }
    }
    // Compute everything first, then write into the documents.
    let mut out_dense: Vec<(usize, String, Vec<f32>)> = Vec::new();
    let mut out_multi: Vec<(usize, String, Vec<Vec<f32>>)> = Vec::new();
    for (name, w) in &work {
        let model = pool.get(name)?;
        for f in &dense {
            if f.embedding.model.as_deref() == Some(name.as_str()) {
                check_dim(&f.name, f.dim, model.as_ref())?;
            }
        }
        for f in &multi {
            if f.embedding.model.as_deref() == Some(name.as_str()) {
                check_dim(&f.name, f.dim, model.as_ref())?;
            }
        }
        let need_punct = multi.iter().any(|f| {
            f.embedding.model.as_deref() == Some(name.as_str()) && f.spec.drop_punctuation
        });
        let punct = if need_punct {
            pool.punctuation(name, model.as_ref())?
        } else {
            Arc::default()
        };
        progress.start(&format!("embedding ({name})"), w.texts.len() as u64);
        let order: Vec<usize> = (0..w.texts.len()).collect();
        for chunk in order.chunks(CHUNK) {
            let (pooled, tokens) = encode(model.as_ref(), name, w, chunk)?;
            for (j, &i) in chunk.iter().enumerate() {
                for t in &w.targets[i] {
                    match *t {
                        Target::Dense { doc, field } => {
                            if let Some(p) = pooled.get(j) {
                                out_dense.push((doc, dense[field].name.clone(), p.clone()));
                            }
                        }
                        Target::Multi { doc, field } => {
                            if let Some(tok) = tokens.get(j) {
                                let kept = keep_tokens(&multi[field], tok, &punct);
                                out_multi.push((doc, multi[field].name.clone(), kept));
                            }
                        }
                    }
                }
            }
            progress.inc(chunk.len() as u64);
        }
        progress.finish();
    }
    for (doc, field, v) in out_dense {
        docs[doc].vectors.insert(field, v);
    }
    for (doc, field, v) in out_multi {
        docs[doc].multi.insert(field, v);
    }
    Ok(())
}

/// One forward pass over the texts of `chunk`: sentence vectors and/or token vectors as the
/// chunk's consumers need (empty vectors stand where one kind is not needed by any).
fn encode(
    model: &dyn Embedder,
    name: &str,
    w: &ModelWork,
    chunk: &[usize],
) -> Result<(Vec<Vec<f32>>, Vec<TokenEmbeddings>)> {
    let texts: Vec<&str> = chunk.iter().map(|&i| w.texts[i].as_str()).collect();
    let want_pooled = chunk.iter().any(|&i| w.pooled[i]);
    let want_tokens = chunk.iter().any(|&i| w.tokens[i]);
    let opts = EmbedOptions::default();
    let fail = |e: quiver_embed::EmbedError| EngineError::Model {
        name: name.to_string(),
        message: e.to_string(),
    };
    Ok(match (want_pooled, want_tokens) {
        (true, true) => {
            let (p, t) = model.embed_with_tokens(&texts, &opts).map_err(fail)?;
            (p.into_vecs(), t)
        }
        (true, false) => (
            model.embed(&texts, &opts).map_err(fail)?.into_vecs(),
            Vec::new(),
        ),
        (false, _) => (Vec::new(), model.embed_tokens(&texts, &opts).map_err(fail)?),
    })
}

fn text_of(
    embedding: &quiver_storage::Embedding,
    d: &Document,
    index: usize,
    field: &str,
) -> Result<String> {
    document_text(embedding, &d.payload).map_err(|message| EngineError::Document {
        index,
        field: Some(field.to_string()),
        message,
    })
}

fn check_dim(field: &str, dim: usize, model: &dyn Embedder) -> Result<()> {
    let got = model.info().dim;
    if got != dim {
        return Err(EngineError::BadRequest(format!(
            "field {field:?} has dim {dim} but model {:?} gives {got}-dimensional vectors",
            model.info().name
        )));
    }
    Ok(())
}

/// The vectors kept from one text's tokens: special tokens and punctuation dropped as the field
/// says (all kept when that would leave none).
pub fn keep_tokens(field: &MultiField, t: &TokenEmbeddings, punct: &HashSet<u32>) -> Vec<Vec<f32>> {
    let drop = |i: usize| {
        (field.spec.drop_special && t.special[i])
            || (field.spec.drop_punctuation && punct.contains(&t.ids[i]))
    };
    let keep = |i: usize| !drop(i);
    let mut out: Vec<Vec<f32>> = (0..t.ids.len())
        .filter(|&i| keep(i))
        .map(|i| t.row(i).to_vec())
        .collect();
    if out.is_empty() {
        out = (0..t.ids.len()).map(|i| t.row(i).to_vec()).collect();
    }
    out
}

/// Token ids whose text is only punctuation, from a model's `tokenizer.json` vocabulary (the rule
/// of multi fields' `drop_punctuation`).
pub(crate) fn punctuation_ids(model: &dyn Embedder) -> Result<HashSet<u32>> {
    punctuation_ids_in(&model.info().dir).map_err(|message| EngineError::Model {
        name: model.info().name.clone(),
        message,
    })
}

/// [`punctuation_ids`] of the model in directory `dir` (its `tokenizer.json`).
pub fn punctuation_ids_in(dir: &std::path::Path) -> std::result::Result<HashSet<u32>, String> {
    let p = dir.join("tokenizer.json");
    let text = std::fs::read_to_string(&p).map_err(|e| format!("{}: {e}", p.display()))?;
    let v: Value = serde_json::from_str(&text).map_err(|e| format!("{}: {e}", p.display()))?;
    let vocab = v["model"]["vocab"].as_object().ok_or_else(|| {
        format!(
            "{}: no model.vocab map (only WordPiece/BPE vocabularies are supported for drop_punctuation)",
            p.display()
        )
    })?;
    Ok(vocab
        .iter()
        .filter(|(tok, _)| {
            let t = tok.trim_start_matches("##");
            !t.is_empty()
                && t.chars().all(|c| {
                    c.is_ascii_punctuation() || (!c.is_alphanumeric() && !c.is_whitespace())
                })
        })
        .filter_map(|(_, id)| id.as_u64().map(|i| i as u32))
        .collect())
}

/// Embeds query texts with the models of a [`ModelPool`] (the field's model and query prefix).
/// `Send + Sync`: one encoder can serve many threads.
pub struct PoolEncoder {
    pool: Arc<ModelPool>,
}

impl PoolEncoder {
    /// An encoder over `pool`.
    pub fn new(pool: Arc<ModelPool>) -> PoolEncoder {
        PoolEncoder { pool }
    }

    /// The query vector of `text` for dense `field`.
    pub fn dense(&self, field: &DenseField, text: &str) -> Result<Vec<f32>> {
        let name = field.embedding.model.as_ref().ok_or_else(|| {
            EngineError::BadRequest(format!(
                "field {:?} has no model, so text queries cannot be embedded; give a vector, or declare `model` and `embed` in the schema",
                field.name
            ))
        })?;
        let model = self.pool.get(name)?;
        check_dim(&field.name, field.dim, model.as_ref())?;
        let q = query_text(&field.embedding, text);
        let out = model
            .embed(&[q.as_str()], &EmbedOptions::default())
            .map_err(|e| EngineError::Model {
                name: name.clone(),
                message: e.to_string(),
            })?;
        Ok(out.row(0).to_vec())
    }

    /// The query's token vectors for multi `field` (special tokens and punctuation dropped as
    /// for documents).
    pub fn multi(&self, field: &MultiField, text: &str) -> Result<Vec<Vec<f32>>> {
        let name = field.embedding.model.as_ref().ok_or_else(|| {
            EngineError::BadRequest(format!(
                "multi field {:?} has no model, so text queries cannot be embedded; give vectors",
                field.name
            ))
        })?;
        let model = self.pool.get(name)?;
        check_dim(&field.name, field.dim, model.as_ref())?;
        let punct = if field.spec.drop_punctuation {
            self.pool.punctuation(name, model.as_ref())?
        } else {
            Arc::default()
        };
        let q = query_text(&field.embedding, text);
        let out = model
            .embed_tokens(&[q.as_str()], &EmbedOptions::default())
            .map_err(|e| EngineError::Model {
                name: name.clone(),
                message: e.to_string(),
            })?;
        let t = out.first().ok_or_else(|| EngineError::Model {
            name: name.clone(),
            message: "the model returned no token vectors".into(),
        })?;
        Ok(keep_tokens(field, t, &punct))
    }
}

impl QueryEncoder for PoolEncoder {
    fn encode_dense(
        &self,
        field: &DenseField,
        text: &str,
    ) -> std::result::Result<Vec<f32>, String> {
        self.dense(field, text).map_err(|e| e.to_string())
    }

    fn encode_multi(
        &self,
        field: &MultiField,
        text: &str,
    ) -> std::result::Result<Vec<Vec<f32>>, String> {
        self.multi(field, text).map_err(|e| e.to_string())
    }
}
