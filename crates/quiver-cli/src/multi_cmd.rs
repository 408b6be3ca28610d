//! Multi-vector fields in the CLI: token vectors computed at ingest for model-backed `multi` fields,
//! `"multi": {"field": [[...], ...]}` in JSONL, and `quiver search --multi FIELD` (MUVERA + exact
//! MaxSim rerank, or `--exact` brute-force MaxSim).

use crate::ops::{describe, parse_filter, SearchArgs};
use crate::progress::bar;
use anyhow::{anyhow, bail, Context, Result};
use quiver::{Collection, Document, MultiField, MultiSearchRequest, Schema};
use quiver_embed::{EmbedOptions, Embedder, TokenEmbeddings};
use serde_json::{json, Value};
use std::collections::HashSet;
use std::path::Path;

/// Parses the `multi` object of a JSONL line into `doc.multi`: field -> array of arrays of numbers.
pub fn parse_multi(v: Value, doc: &mut Document) -> std::result::Result<(), (String, String)> {
    let Value::Object(m) = v else {
        return Err((
            "multi".into(),
            "multi must be an object of field -> array of vectors".into(),
        ));
    };
    for (name, sets) in m {
        let at = format!("multi.{name}");
        let arr = sets.as_array().ok_or_else(|| {
            (
                at.clone(),
                "must be an array of vectors (arrays of numbers)".to_string(),
            )
        })?;
        let mut out = Vec::with_capacity(arr.len());
        for (j, v) in arr.iter().enumerate() {
            let comps = v
                .as_array()
                .ok_or_else(|| (at.clone(), format!("vector {j} is not an array of numbers")))?;
            let mut vec = Vec::with_capacity(comps.len());
            for (i, x) in comps.iter().enumerate() {
                let f = x.as_f64().ok_or_else(|| {
                    (
                        at.clone(),
                        format!("vector {j}, component {i} is not a number: {x}"),
                    )
                })?;
                vec.push(f as f32);
            }
            out.push(vec);
        }
        doc.multi.insert(name, out);
    }
    Ok(())
}

/// Token ids whose text is only punctuation, from the model's `tokenizer.json` vocabulary.
pub fn punctuation_ids(model_dir: &Path) -> Result<HashSet<u32>> {
    let p = model_dir.join("tokenizer.json");
    let text = std::fs::read_to_string(&p).with_context(|| format!("reading {}", p.display()))?;
    let v: Value =
        serde_json::from_str(&text).with_context(|| format!("parsing {}", p.display()))?;
    let vocab = v["model"]["vocab"]
        .as_object()
        .ok_or_else(|| anyhow!("{}: no model.vocab map (only WordPiece/BPE vocabularies are supported for drop_punctuation)", p.display()))?;
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

/// The vectors kept from one text's tokens: special tokens and punctuation dropped as the field
/// says (all kept when that would leave none).
pub fn keep_tokens(field: &MultiField, t: &TokenEmbeddings, punct: &HashSet<u32>) -> Vec<Vec<f32>> {
    let keep = |i: usize| {
        !(field.spec.drop_special && t.special[i])
            && !(field.spec.drop_punctuation && punct.contains(&t.ids[i]))
    };
    let mut out: Vec<Vec<f32>> = (0..t.ids.len())
        .filter(|&i| keep(i))
        .map(|i| t.row(i).to_vec())
        .collect();
    if out.is_empty() {
        out = (0..t.ids.len()).map(|i| t.row(i).to_vec()).collect();
    }
    out
}

fn model_for(
    field: &MultiField,
    models: &mut crate::text::Models,
) -> Result<std::sync::Arc<dyn Embedder>> {
    let name = field.embedding.model.as_ref().ok_or_else(|| {
        anyhow!("field {:?} has no model, so text cannot be embedded; supply vectors, or declare `model` and `embed` in the schema", field.name)
    })?;
    let model = models.get(name)?;
    if model.info().dim != field.dim {
        bail!(
            "field {:?} has dim {} but model {:?} gives {}-dimensional token vectors",
            field.name,
            field.dim,
            model.info().name,
            model.info().dim
        );
    }
    Ok(model)
}

/// Computes the token vectors of every model-backed multi field for `docs` (those that do not
/// already carry a set).
pub fn fill_multi(
    schema: &Schema,
    docs: &mut [(usize, Document)],
    models: &mut crate::text::Models,
    where_: &dyn Fn(usize) -> String,
) -> Result<()> {
    for field in schema.multi_fields() {
        if field.embedding.model.is_none() {
            continue;
        }
        let todo: Vec<usize> = (0..docs.len())
            .filter(|&i| !docs[i].1.multi.contains_key(&field.name))
            .collect();
        if todo.is_empty() {
            continue;
        }
        let mut texts = Vec::with_capacity(todo.len());
        for &i in &todo {
            texts.push(
                crate::text::document_text(&field.embedding, &docs[i].1)
                    .map_err(|m| anyhow!("{}, field {:?}: {m}", where_(docs[i].0), field.name))?,
            );
        }
        let model = model_for(&field, models)?;
        let punct = if field.spec.drop_punctuation {
            punctuation_ids(&model.info().dir)?
        } else {
            HashSet::new()
        };
        let pb = bar(
            &format!("embedding tokens {}", field.name),
            texts.len() as u64,
        );
        for (ids, chunk) in todo.chunks(256).zip(texts.chunks(256)) {
            let refs: Vec<&str> = chunk.iter().map(|s| s.as_str()).collect();
            let out = model
                .embed_tokens(&refs, &EmbedOptions::default())
                .with_context(|| format!("embedding tokens of field {:?}", field.name))?;
            for (j, &i) in ids.iter().enumerate() {
                docs[i]
                    .1
                    .multi
                    .insert(field.name.clone(), keep_tokens(&field, &out[j], &punct));
            }
            pb.inc(ids.len() as u64);
        }
        pb.finish_and_clear();
    }
    Ok(())
}

/// The token vectors of a text query for `field` (query prefix, special tokens and punctuation
/// dropped as for documents).
pub fn embed_query_tokens(
    field: &MultiField,
    text: &str,
    models: &mut crate::text::Models,
) -> Result<Vec<Vec<f32>>> {
    let model = model_for(field, models)?;
    let punct = if field.spec.drop_punctuation {
        punctuation_ids(&model.info().dir)?
    } else {
        HashSet::new()
    };
    let q = format!("{}{}", field.embedding.query_prefix, text);
    let out = model.embed_tokens(&[q.as_str()], &EmbedOptions::default())?;
    let t = out
        .first()
        .ok_or_else(|| anyhow!("the model returned no token vectors"))?;
    Ok(keep_tokens(field, t, &punct))
}

/// `quiver search COLLECTION "text" --multi FIELD` (or `--vector '[[...], ...]'`).
pub fn search(c: &Collection, as_json: bool, a: &SearchArgs, field_name: &str) -> Result<()> {
    let schema = c.schema();
    let field = schema
        .multi(field_name)
        .ok_or_else(|| anyhow!("unknown multi field {field_name:?}"))?;
    let query: Vec<Vec<f32>> = match (&a.vector, &a.vector_file, &a.query) {
        (Some(v), _, None) => parse_sets(v)?,
        (None, Some(p), None) => parse_sets(
            &std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?,
        )?,
        (None, None, Some(text)) => {
            embed_query_tokens(&field, text, &mut crate::text::Models::default())?
        }
        (None, None, None) => {
            bail!("give a query text, or the query vectors as --vector '[[...], ...]'")
        }
        _ => bail!("give exactly one of: query text, --vector, --vector-file"),
    };
    let mut req = MultiSearchRequest::new(field_name, query, a.k);
    req.ef = a.ef;
    req.candidates = a.text.candidates;
    req.ball_carving = a.ball_carving;
    req.filter = a.filter.as_deref().map(parse_filter).transpose()?;
    let t = std::time::Instant::now();
    let snap = c.snapshot();
    let res = if a.exact {
        quiver::maxsim_search(&snap, &req)?
    } else {
        quiver::muvera_search(&snap, &req)?
    };
    let took = t.elapsed().as_secs_f64() * 1e3;
    if as_json {
        let mut v = json!({"hits": res.hits, "took_ms": took, "query_vectors": req.query.len()});
        if a.explain {
            v["explain"] = serde_json::to_value(&res.explain)?;
        }
        println!("{v}");
    } else {
        for (i, h) in res.hits.iter().enumerate() {
            println!(
                "{:>3}. {:<24} {:>10.5}  {}",
                i + 1,
                h.id.to_string(),
                h.score,
                describe(h.payload.as_ref())
            );
        }
        if a.explain {
            for p in &res.explain {
                println!(
                    "  {:<24} rows {:>8} allowed {:>8} {:<6} {} us",
                    p.segment, p.rows, p.allowed, p.method, p.micros
                );
            }
        }
        eprintln!(
            "{} hits in {took:.2} ms ({} query vectors)",
            res.hits.len(),
            req.query.len()
        );
    }
    Ok(())
}

fn parse_sets(text: &str) -> Result<Vec<Vec<f32>>> {
    let v: Vec<Vec<f64>> = serde_json::from_str(text.trim()).map_err(|e| {
        anyhow!("multi-vector query must be a JSON array of arrays of numbers: {e}")
    })?;
    Ok(v.into_iter()
        .map(|r| r.into_iter().map(|x| x as f32).collect())
        .collect())
}
