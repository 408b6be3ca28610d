//! Text in, vectors out: the glue between collections whose dense fields name a model and the
//! embedding layer (`quiver-embed`). Documents carry text in payload fields; their vectors are
//! computed here before validation, and text queries are embedded with the same model and the
//! field's query prefix.

use crate::progress::bar;
use anyhow::{anyhow, bail, Context, Result};
use quiver::{DenseField, Document, Schema};
use quiver_embed::{load_model, EmbedOptions, Embedder, LoadOptions};
use serde_json::Value;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Models loaded so far, by name.
#[derive(Default)]
pub struct Models {
    loaded: HashMap<String, Arc<dyn Embedder>>,
}

impl Models {
    /// The model called `name`: a local model directory, or a registry name (pulled into the cache
    /// on first use, with a progress bar, and verified).
    pub fn get(&mut self, name: &str) -> Result<Arc<dyn Embedder>> {
        if let Some(m) = self.loaded.get(name) {
            return Ok(m.clone());
        }
        let dir = if Path::new(name).join("config.json").exists() {
            PathBuf::from(name)
        } else {
            quiver_embed::fetch::ensure_model(name, crate::progress::enabled()).with_context(
                || format!("getting model {name:?} (try `quiver models pull {name}`)"),
            )?
        };
        let opts = LoadOptions {
            name: Some(name.to_string()),
            ..Default::default()
        };
        let m: Arc<dyn Embedder> = Arc::from(
            load_model(&dir, &opts)
                .with_context(|| format!("loading model {name:?} from {}", dir.display()))?,
        );
        self.loaded.insert(name.to_string(), m.clone());
        Ok(m)
    }
}

fn check_dim(field: &DenseField, model: &dyn Embedder) -> Result<()> {
    let dim = model.info().dim;
    if dim != field.dim {
        bail!(
            "field {:?} has dim {} but model {:?} gives {dim}-dimensional vectors",
            field.name,
            field.dim,
            model.info().name
        );
    }
    Ok(())
}

/// The text a document contributes to a model-backed field (dense or multi): its `embed` payload
/// fields, present and non-empty, joined with a blank line, after the document prefix.
pub fn document_text(
    embedding: &quiver::Embedding,
    doc: &Document,
) -> std::result::Result<String, String> {
    let mut parts = Vec::new();
    for name in &embedding.embed {
        match doc.payload.get(name) {
            None | Some(Value::Null) => {}
            Some(Value::String(s)) if s.trim().is_empty() => {}
            Some(Value::String(s)) => parts.push(s.as_str()),
            Some(other) => {
                return Err(format!("text field {name:?} must be a string, got {other}"))
            }
        }
    }
    if parts.is_empty() {
        return Err(format!(
            "no text to embed: fields {:?} are missing or empty",
            embedding.embed
        ));
    }
    Ok(format!(
        "{}{}",
        embedding.document_prefix,
        parts.join("\n\n")
    ))
}

/// Computes the vectors of every model-backed dense field for `docs` (those that do not already
/// carry one). `where_` names a document for error messages (e.g. "line 12").
pub fn fill_vectors(
    schema: &Schema,
    docs: &mut [(usize, Document)],
    models: &mut Models,
    where_: &dyn Fn(usize) -> String,
) -> Result<()> {
    for field in schema.dense_fields() {
        let Some(name) = field.embedding.model.clone() else {
            continue;
        };
        let todo: Vec<usize> = (0..docs.len())
            .filter(|&i| !docs[i].1.vectors.contains_key(&field.name))
            .collect();
        if todo.is_empty() {
            continue;
        }
        let mut texts = Vec::with_capacity(todo.len());
        for &i in &todo {
            let t = document_text(&field.embedding, &docs[i].1)
                .map_err(|m| anyhow!("{}, field {:?}: {m}", where_(docs[i].0), field.name))?;
            texts.push(t);
        }
        let model = models.get(&name)?;
        check_dim(&field, model.as_ref())?;
        let pb = bar(&format!("embedding {}", field.name), texts.len() as u64);
        for (chunk_ids, chunk_texts) in todo.chunks(256).zip(texts.chunks(256)) {
            let refs: Vec<&str> = chunk_texts.iter().map(|s| s.as_str()).collect();
            let out = model
                .embed(&refs, &EmbedOptions::default())
                .with_context(|| format!("embedding field {:?}", field.name))?;
            for (j, &i) in chunk_ids.iter().enumerate() {
                docs[i]
                    .1
                    .vectors
                    .insert(field.name.clone(), out.row(j).to_vec());
            }
            pb.inc(chunk_ids.len() as u64);
        }
        pb.finish_and_clear();
    }
    Ok(())
}

/// Embeds a text query for `field` (with the field's query prefix).
pub fn embed_query(field: &DenseField, text: &str, models: &mut Models) -> Result<Vec<f32>> {
    let name = field.embedding.model.as_ref().ok_or_else(|| {
        anyhow!("field {:?} has no model, so text queries cannot be embedded; pass --vector, or declare `model` and `embed` in the schema", field.name)
    })?;
    let model = models.get(name)?;
    check_dim(field, model.as_ref())?;
    let q = format!("{}{}", field.embedding.query_prefix, text);
    let out = model.embed(&[q.as_str()], &EmbedOptions::default())?;
    Ok(out.row(0).to_vec())
}

/// `text` on one line (whitespace collapsed), cut to `max_chars` characters with an ellipsis.
pub fn snippet(text: &str, max_chars: usize) -> String {
    let flat = text.split_whitespace().collect::<Vec<_>>().join(" ");
    match flat.char_indices().nth(max_chars) {
        Some((cut, _)) => format!("{}…", &flat[..cut]),
        None => flat,
    }
}

/// Splits Markdown or plain text into retrieval-sized chunks: one per section (a heading and the
/// text under it), long sections cut at paragraph breaks to at most `max_chars` (a 256-token model
/// reads about 1,000 characters). Returns (title, text) pairs; the title is the nearest heading.
pub fn chunk_markdown(text: &str, fallback_title: &str, max_chars: usize) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut title = fallback_title.to_string();
    let mut paras: Vec<String> = Vec::new();
    let mut cur = String::new();
    let flush_section = |title: &str, paras: &mut Vec<String>, out: &mut Vec<(String, String)>| {
        let mut piece = String::new();
        for p in paras.drain(..) {
            if !piece.is_empty() && piece.len() + p.len() + 2 > max_chars {
                out.push((title.to_string(), std::mem::take(&mut piece)));
            }
            if !piece.is_empty() {
                piece.push_str("\n\n");
            }
            piece.push_str(&p);
        }
        if !piece.trim().is_empty() {
            out.push((title.to_string(), piece));
        }
    };
    let mut in_code = false;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            in_code = !in_code;
        }
        let heading = !in_code && line.starts_with('#');
        if heading || (!in_code && line.trim().is_empty()) {
            if !cur.trim().is_empty() {
                paras.push(std::mem::take(&mut cur));
            }
            cur.clear();
            if heading {
                flush_section(&title, &mut paras, &mut out);
                title = line.trim_start_matches('#').trim().to_string();
            }
            continue;
        }
        if !cur.is_empty() {
            cur.push('\n');
        }
        cur.push_str(line);
    }
    if !cur.trim().is_empty() {
        paras.push(cur);
    }
    flush_section(&title, &mut paras, &mut out);
    out
}

/// Documents from a folder of `.md`, `.markdown` and `.txt` files (recursively, in path order):
/// id `"<relative path>#<chunk>"`, payload `{"path", "title", "text", "chunk"}`.
pub fn read_folder(dir: &Path) -> Result<Vec<(usize, Document)>> {
    let mut files = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).with_context(|| format!("reading folder {}", d.display()))? {
            let p = e?.path();
            let name = p
                .file_name()
                .map(|n| n.to_string_lossy().to_string())
                .unwrap_or_default();
            if name.starts_with('.') || name == "target" || name == "node_modules" {
                continue;
            }
            if p.is_dir() {
                stack.push(p);
            } else if p
                .extension()
                .is_some_and(|x| x == "md" || x == "markdown" || x == "txt")
            {
                files.push(p);
            }
        }
    }
    files.sort();
    let mut docs = Vec::new();
    for f in files {
        let bytes = std::fs::read(&f).with_context(|| format!("reading {}", f.display()))?;
        let text = String::from_utf8(bytes)
            .map_err(|_| anyhow!("{}: not valid UTF-8 text", f.display()))?;
        let rel = f
            .strip_prefix(dir)
            .unwrap_or(&f)
            .to_string_lossy()
            .to_string();
        docs.extend(text_documents(&rel, &text, docs.len()));
    }
    Ok(docs)
}

/// Chunked documents of one text (see [`read_folder`]); numbering continues from `start`.
pub fn text_documents(rel_path: &str, text: &str, start: usize) -> Vec<(usize, Document)> {
    let stem = Path::new(rel_path)
        .file_stem()
        .map(|s| s.to_string_lossy().to_string())
        .unwrap_or_default();
    chunk_markdown(text, &stem, 1000)
        .into_iter()
        .enumerate()
        .map(|(k, (title, chunk))| {
            let mut d = Document {
                id: Some(quiver::DocId::Str(format!("{rel_path}#{k}"))),
                ..Default::default()
            };
            d.payload.insert("path".into(), rel_path.into());
            d.payload.insert("title".into(), title.into());
            d.payload.insert("text".into(), chunk.into());
            d.payload.insert("chunk".into(), (k as u64).into());
            (start + k + 1, d)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_follow_headings_and_size() {
        let md = "# Title\n\nintro para\n\n## Part A\n\nalpha\nbeta\n\n```\n# not a heading\n```\n\n## Part B\n\n".to_string() + &"word ".repeat(500);
        let chunks = chunk_markdown(&md, "doc", 1000);
        assert_eq!(chunks[0], ("Title".to_string(), "intro para".to_string()));
        assert_eq!(chunks[1].0, "Part A");
        assert!(chunks[1].1.contains("# not a heading"));
        assert!(chunks.iter().all(|c| c.1.len() <= 2600));
        assert!(chunks.iter().any(|c| c.0 == "Part B"));
    }
}
