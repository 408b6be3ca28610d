//! Text inputs of the CLI: a folder of Markdown/text files chunked into documents, and snippets
//! for printing. (Which payload fields a model embeds, and with which prefix, is the engine's
//! rule: `quiver::document::document_text`.)

use anyhow::{anyhow, Context, Result};
use quiver::Document;
use std::path::Path;

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
