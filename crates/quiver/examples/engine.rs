//! The engine API with a model-backed collection: plain documents in, every kind of query out.
//!
//! ```sh
//! cargo run --release -p quiver --example engine            # pulls all-MiniLM-L6-v2 on first use
//! ```

use quiver::{Database, DocId, Document, Mode, Query, Schema};
use serde_json::json;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let db = Database::open(dir.path())?;
    // A dense field and a multi (token-vector) field on one model, computed from the payload's
    // title and text, a BM25 field over the same text, and a keyword field for filters.
    let schema = Schema::parse(
        r#"{"fields": {
          "emb":  {"type": "dense", "dim": 384, "metric": "cosine", "model": "all-MiniLM-L6-v2", "embed": ["title", "text"]},
          "tok":  {"type": "multi", "dim": 384, "metric": "cosine", "model": "all-MiniLM-L6-v2", "embed": ["title", "text"]},
          "body": {"type": "text", "source": ["title", "text"]},
          "kind": {"type": "keyword"}
        }}"#,
    )?;
    let c = db.create_collection("animals", &schema)?;
    let rows = [
        (
            "Quokka",
            "A small marsupial from Rottnest Island, known for its smile.",
            "mammal",
        ),
        (
            "Kea",
            "An alpine parrot of New Zealand that takes apart cars.",
            "bird",
        ),
        (
            "Axolotl",
            "A salamander that keeps its larval gills all its life.",
            "amphibian",
        ),
        (
            "Platypus",
            "An egg-laying mammal with a duck's bill and venomous spurs.",
            "mammal",
        ),
    ];
    let docs = rows
        .iter()
        .enumerate()
        .map(|(i, (title, text, kind))| {
            let mut d = Document {
                id: Some(DocId::Int(i as u64)),
                ..Default::default()
            };
            d.payload.insert("title".into(), json!(title));
            d.payload.insert("text".into(), json!(text));
            d.payload.insert("kind".into(), json!(kind));
            d
        })
        .collect();
    c.upsert(docs)?; // embeds emb and tok in one forward pass per document

    let question = "which animal smiles?";
    for mode in [Mode::Dense, Mode::Bm25, Mode::Hybrid, Mode::Multi] {
        let q = Query::text(question)
            .with_mode(mode)
            .with_limit(2)
            .with_filter(json!({"field": "kind", "eq": "mammal"}));
        let res = c.query(&q)?;
        let top: Vec<String> = res
            .hits
            .iter()
            .map(|h| format!("{} ({:.3})", h.id, h.score))
            .collect();
        println!("{:<7} {}", mode.name(), top.join(", "));
    }
    Ok(())
}
