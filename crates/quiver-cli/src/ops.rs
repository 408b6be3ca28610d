//! init, collection management, search, get, delete, count.

use crate::progress::Bars;
use anyhow::{anyhow, bail, Context, Result};
use clap::{Args, Subcommand};
use quiver::{search, Database, DocId, Filter, Schema, SearchRequest, Strategy};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub fn open_db(db: &Path) -> Result<Database> {
    Database::open(db).with_context(|| format!("opening database {}", db.display()))
}

pub fn init(db: &Path, as_json: bool) -> Result<()> {
    open_db(db)?;
    if as_json {
        println!(
            "{}",
            json!({"db": db.display().to_string(), "created": true})
        );
    } else {
        println!("database ready at {}", db.display());
    }
    Ok(())
}

#[derive(Subcommand, Debug)]
pub enum CollectionCmd {
    /// Create a collection from a schema (TOML or JSON file, or inline JSON with --schema-json).
    Create {
        name: String,
        #[arg(long, conflicts_with = "schema_json")]
        schema: Option<PathBuf>,
        #[arg(long)]
        schema_json: Option<String>,
    },
    /// List collections.
    List,
    /// Counts, segments and sizes of a collection.
    Info { name: String },
    /// Delete a collection and its files.
    Drop { name: String },
    /// Seal the mutable segment now (builds its indexes).
    Flush { name: String },
    /// Merge all sealed segments into one, dropping deleted rows.
    Compact { name: String },
}

pub fn collection(db: &Path, as_json: bool, cmd: CollectionCmd) -> Result<()> {
    let d = open_db(db)?;
    match cmd {
        CollectionCmd::Create {
            name,
            schema,
            schema_json,
        } => {
            let text = match (schema, schema_json) {
                (Some(p), _) => std::fs::read_to_string(&p)
                    .with_context(|| format!("reading schema {}", p.display()))?,
                (None, Some(s)) => s,
                (None, None) => bail!("give --schema FILE or --schema-json '{{...}}'"),
            };
            let schema = Schema::parse(&text)?;
            d.create_collection(&name, &schema)?;
            if as_json {
                println!(
                    "{}",
                    json!({"created": name, "schema": serde_json::to_value(&schema)?})
                );
            } else {
                println!("created collection {name}");
            }
        }
        CollectionCmd::List => {
            let names = d.list_collections()?;
            if as_json {
                println!("{}", json!({"collections": names}));
            } else {
                names.iter().for_each(|n| println!("{n}"));
            }
        }
        CollectionCmd::Info { name } => {
            let c = d.collection(&name)?;
            let info = c.info();
            let schema = c.schema();
            let dense: Vec<Value> = schema
                .dense_fields()
                .iter()
                .map(|f| {
                    json!({"field": f.name, "dim": f.dim, "metric": f.metric.name(), "index": serde_json::to_value(f.index).unwrap_or(Value::Null),
                           "bytes_per_vector_f32": f.dim * 4, "total_vector_bytes": f.dim * 4 * info.documents})
                })
                .collect();
            let v = json!({"name": info.name, "documents": info.documents, "mutable_rows": info.mutable_rows,
                "segments": info.segments.iter().map(|(n, r, l)| json!({"name": n, "rows": r, "live": l})).collect::<Vec<_>>(),
                "graph_bytes": info.graph_bytes, "seq": info.seq, "dense_fields": dense, "tiers": serde_json::to_value(&info.dense)?, "multi_fields": info.multi, "schema": serde_json::to_value(schema.as_ref())?});
            let mut v = v;
            let snap = c.snapshot();
            v["text_fields"] = schema
                .text_fields()
                .iter()
                .filter_map(|f| snap.text_stats(&f.name))
                .map(|s| json!({"field": s.field, "docs": s.docs, "avg_len": s.avg_len,
                    "terms": s.terms.iter().map(|(seg, n)| json!({"segment": seg, "terms": n})).collect::<Vec<_>>()}))
                .collect::<Vec<_>>()
                .into();
            if as_json {
                println!("{v}");
            } else {
                println!("{}", serde_json::to_string_pretty(&v)?);
            }
        }
        CollectionCmd::Drop { name } => {
            d.drop_collection(&name)?;
            if as_json {
                println!("{}", json!({"dropped": name}));
            } else {
                println!("dropped collection {name}");
            }
        }
        CollectionCmd::Flush { name } => {
            let c = d.collection(&name)?;
            c.set_progress(Arc::new(Bars::new()));
            c.flush()?;
            let info = c.info();
            if as_json {
                println!(
                    "{}",
                    json!({"flushed": name, "segments": info.segments.len()})
                );
            } else {
                println!("flushed {name}: {} sealed segments", info.segments.len());
            }
        }
        CollectionCmd::Compact { name } => {
            let c = d.collection(&name)?;
            c.set_progress(Arc::new(Bars::new()));
            c.compact()?;
            let info = c.info();
            if as_json {
                println!(
                    "{}",
                    json!({"compacted": name, "segments": info.segments.len(), "documents": info.documents})
                );
            } else {
                println!(
                    "compacted {name}: {} documents in {} segments",
                    info.documents,
                    info.segments.len()
                );
            }
        }
    }
    Ok(())
}

/// Parses a command-line id: digits are integer ids, anything else a string id.
pub fn parse_id(s: &str) -> DocId {
    s.parse::<u64>()
        .map(DocId::Int)
        .unwrap_or_else(|_| DocId::Str(s.to_string()))
}

pub fn parse_filter(s: &str) -> Result<Filter> {
    let v: Value =
        serde_json::from_str(s).map_err(|e| anyhow!("--filter is not valid JSON: {e}"))?;
    Ok(Filter::from_json(&v)?)
}

#[derive(Args, Debug)]
pub struct SearchArgs {
    /// Collection.
    pub collection: String,
    /// Query text, embedded with the field's model (or give --vector).
    pub query: Option<String>,
    /// Query vector as a JSON array, e.g. '[0.1, 0.2]'.
    #[arg(long, conflicts_with = "vector_file")]
    pub vector: Option<String>,
    /// File holding the query vector as a JSON array.
    #[arg(long)]
    pub vector_file: Option<PathBuf>,
    /// Dense field (default: the only one).
    #[arg(long)]
    pub field: Option<String>,
    /// Number of results.
    #[arg(short = 'k', long, default_value_t = 10)]
    pub k: usize,
    /// HNSW beam width.
    #[arg(long)]
    pub ef: Option<usize>,
    /// Payload filter as JSON.
    #[arg(long)]
    pub filter: Option<String>,
    /// Exact scan instead of the planner's choice.
    #[arg(long)]
    pub exact: bool,
    /// Print the per-segment plan.
    #[arg(long)]
    pub explain: bool,
    /// Search this multi-vector field: MUVERA candidates reranked by exact MaxSim (`--exact`:
    /// brute-force MaxSim). `--vector` then takes a JSON array of vectors.
    #[arg(long)]
    pub multi: Option<String>,
    /// Multi: ball-carve query vectors at this inner-product threshold before the rerank.
    #[arg(long)]
    pub ball_carving: Option<f32>,
    /// BM25 and hybrid search.
    #[command(flatten)]
    pub text: crate::search_text::TextSearchArgs,
    /// Run the funnel preset on the dense field: its cheapest codec's shortlist, its richest
    /// codec, then the f32 vectors (or its Matryoshka prefix cascade).
    #[arg(long, conflicts_with = "exact")]
    pub funnel: bool,
    /// First-stage shortlist of --funnel (default max(100·k, 1000)).
    #[arg(long, requires = "funnel")]
    pub shortlist: Option<usize>,
}

pub fn search_cmd(db: &Path, as_json: bool, a: SearchArgs) -> Result<()> {
    let d = open_db(db)?;
    let c = d.collection(&a.collection)?;
    if let Some(f) = &a.multi {
        return crate::multi_cmd::search(&c, as_json, &a, f);
    }
    let mode = crate::search_text::resolve_mode(&c, &a);
    if mode != crate::search_text::Mode::Dense {
        return crate::search_text::run(&c, as_json, &a, mode);
    }
    let (vector, field) = match (&a.vector, &a.vector_file, &a.query) {
        (Some(v), _, None) => (parse_vector(v)?, a.field.clone()),
        (None, Some(p), None) => {
            let text =
                std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
            (parse_vector(&text)?, a.field.clone())
        }
        (None, None, Some(text)) => {
            let schema = c.schema();
            let dense = schema.dense_fields();
            let field = match &a.field {
                Some(f) => schema
                    .dense(f)
                    .ok_or_else(|| anyhow!("unknown dense field {f:?}"))?,
                None => dense
                    .iter()
                    .find(|f| f.embedding.model.is_some())
                    .cloned()
                    .ok_or_else(|| {
                        anyhow!(
                            "no dense field of {:?} has a model; pass --vector",
                            a.collection
                        )
                    })?,
            };
            let v = crate::text::embed_query(&field, text, &mut crate::text::Models::default())?;
            (v, Some(field.name))
        }
        (None, None, None) => bail!(
            "give a query text, or the query vector as --vector '[...]' or --vector-file FILE"
        ),
        _ => bail!("give exactly one of: query text, --vector, --vector-file"),
    };
    if a.funnel {
        return funnel_search(&c, as_json, &a, vector, field);
    }
    search_with(&c, as_json, &a, vector, field)
}

/// Prints hits as a numbered table: id, score, and a description of the payload.
pub fn print_hits(hits: &[quiver::Hit]) {
    for (i, h) in hits.iter().enumerate() {
        println!(
            "{:>3}. {:<24} {:>10.5}  {}",
            i + 1,
            h.id.to_string(),
            h.score,
            describe(h.payload.as_ref())
        );
    }
}

/// One line for a hit: `title — text snippet` for text documents, else the payload as JSON.
pub fn describe(payload: Option<&serde_json::Map<String, Value>>) -> String {
    let Some(p) = payload else {
        return String::new();
    };
    match p.get("text").and_then(Value::as_str) {
        Some(text) => {
            let snippet = crate::text::snippet(text, 110);
            match p.get("title").and_then(Value::as_str) {
                Some(t) => format!("{t} — {snippet}"),
                None => snippet,
            }
        }
        None => Value::Object(p.clone()).to_string(),
    }
}

pub(crate) fn parse_vector(text: &str) -> Result<Vec<f32>> {
    Ok(serde_json::from_str::<Vec<f64>>(text.trim())
        .map_err(|e| anyhow!("query vector must be a JSON array of numbers: {e}"))?
        .into_iter()
        .map(|x| x as f32)
        .collect())
}

/// `quiver search --funnel`: the funnel preset plan for the dense field.
fn funnel_search(
    c: &quiver::Collection,
    as_json: bool,
    a: &SearchArgs,
    vector: Vec<f32>,
    field: Option<String>,
) -> Result<()> {
    let snap = c.snapshot();
    let f = quiver::query::resolve_dense(&snap, field.as_deref())?;
    let query = quiver::query::plan::DenseQuery {
        vector: Some(vector),
        ef: a.ef,
        ..Default::default()
    };
    let mut plan = quiver::query::presets::funnel(&f, query, a.k, a.shortlist)?;
    plan.filter = match &a.filter {
        Some(s) => {
            Some(serde_json::from_str(s).map_err(|e| anyhow!("--filter is not valid JSON: {e}"))?)
        }
        None => None,
    };
    let t = std::time::Instant::now();
    let res = quiver::execute(&snap, &plan, None)?;
    crate::query_cmd::print_result(&res, t.elapsed().as_secs_f64() * 1e3, as_json, a.explain)
}

fn search_with(
    c: &quiver::Collection,
    as_json: bool,
    a: &SearchArgs,
    vector: Vec<f32>,
    field: Option<String>,
) -> Result<()> {
    let mut req = SearchRequest::new(vector, a.k);
    req.field = field;
    req.ef = a.ef;
    req.filter = a.filter.as_deref().map(parse_filter).transpose()?;
    req.strategy = if a.exact {
        Strategy::Exact
    } else {
        Strategy::Auto
    };
    let t = std::time::Instant::now();
    let res = search(&c.snapshot(), &req)?;
    let took = t.elapsed().as_secs_f64() * 1e3;
    if as_json {
        let mut v = json!({"hits": res.hits, "took_ms": took});
        if a.explain {
            v["explain"] = serde_json::to_value(&res.explain)?;
        }
        println!("{v}");
    } else {
        print_hits(&res.hits);
        if a.explain {
            for p in &res.explain {
                println!(
                    "  {:<24} rows {:>8} allowed {:>8} {:<6} {} us",
                    p.segment, p.rows, p.allowed, p.method, p.micros
                );
            }
        }
        eprintln!("{} hits in {took:.2} ms", res.hits.len());
    }
    Ok(())
}

#[derive(Args, Debug)]
pub struct GetArgs {
    pub collection: String,
    /// Ids (digits are integer ids).
    #[arg(required = true)]
    pub ids: Vec<String>,
    /// Include vectors.
    #[arg(long)]
    pub vectors: bool,
}

pub fn get(db: &Path, as_json: bool, a: GetArgs) -> Result<()> {
    let d = open_db(db)?;
    let c = d.collection(&a.collection)?;
    let mut found = Vec::new();
    let mut missing = Vec::new();
    for s in &a.ids {
        let id = parse_id(s);
        match c.get(&id) {
            Some(doc) => found.push(doc.to_json(a.vectors)),
            None => missing.push(id.to_json()),
        }
    }
    if as_json {
        println!("{}", json!({"documents": found, "missing": missing}));
    } else {
        found.iter().for_each(|d| println!("{d}"));
        if !missing.is_empty() {
            eprintln!(
                "not found: {}",
                missing
                    .iter()
                    .map(|v| v.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
    }
    if found.is_empty() {
        bail!("no document found");
    }
    Ok(())
}

#[derive(Args, Debug)]
pub struct DeleteArgs {
    pub collection: String,
    /// Ids to delete.
    pub ids: Vec<String>,
    /// Delete every document matching this filter (JSON).
    #[arg(long)]
    pub filter: Option<String>,
}

pub fn delete(db: &Path, as_json: bool, a: DeleteArgs) -> Result<()> {
    if a.ids.is_empty() == a.filter.is_none() {
        bail!("give ids or --filter (exactly one of them)");
    }
    let d = open_db(db)?;
    let c = d.collection(&a.collection)?;
    let report = match &a.filter {
        Some(f) => c.delete_by_filter(&parse_filter(f)?)?,
        None => c.delete(&a.ids.iter().map(|s| parse_id(s)).collect::<Vec<_>>())?,
    };
    if as_json {
        println!("{}", json!({"deleted": report.count}));
    } else {
        println!("deleted {} documents", report.count);
    }
    Ok(())
}

#[derive(Args, Debug)]
pub struct CountArgs {
    pub collection: String,
    #[arg(long)]
    pub filter: Option<String>,
}

pub fn count(db: &Path, as_json: bool, a: CountArgs) -> Result<()> {
    let d = open_db(db)?;
    let c = d.collection(&a.collection)?;
    let f = a.filter.as_deref().map(parse_filter).transpose()?;
    let n = c.count(f.as_ref());
    if as_json {
        println!("{}", json!({"count": n}));
    } else {
        println!("{n}");
    }
    Ok(())
}
