//! init, collection management, search, get, delete, count.

use crate::progress::Bars;
use anyhow::{anyhow, bail, Context, Result};
use clap::{Args, Subcommand};
use quiver::{Database, DocId, Filter, IdLookup, ModelPool, OpenOptions, PoolOptions, Schema};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Opens the database for writing, with a model pool that pulls missing registry models (with a
/// progress bar on a terminal). Only one process at a time can hold it so.
pub fn open_db(db: &Path) -> Result<Database> {
    open_db_as(db, false)
}

/// Opens the database read-only: works while another process (an `ingest`, a server) writes.
pub fn open_db_read(db: &Path) -> Result<Database> {
    open_db_as(db, true)
}

fn open_db_as(db: &Path, read_only: bool) -> Result<Database> {
    open_db_with(db, read_only, None)
}

/// [`open_db`] or [`open_db_read`] with models computing on `threads` threads (default: every
/// core).
pub(crate) fn open_db_with(db: &Path, read_only: bool, threads: Option<usize>) -> Result<Database> {
    if threads == Some(0) {
        bail!("--threads must be at least 1");
    }
    let pool = ModelPool::new(PoolOptions {
        progress: crate::progress::enabled(),
        threads,
        ..Default::default()
    });
    let options = OpenOptions {
        pool: Some(Arc::new(pool)),
        read_only,
    };
    Database::open_with(db, options).with_context(|| format!("opening database {}", db.display()))
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
    /// Check every file against its checksum (vectors included) and read every index; exits 1
    /// naming each damaged file. Opening and searching check only what they read.
    Verify { name: String },
    /// Add a field to a collection that holds documents (dense and text fields are backfilled
    /// from the stored text, with a progress bar), or drop one.
    Alter {
        name: String,
        /// The field to add (with --schema-json, the field's spec, e.g. '{"type": "text"}').
        #[arg(long, requires = "schema_json", conflicts_with = "drop_field")]
        add_field: Option<String>,
        #[arg(long)]
        schema_json: Option<String>,
        /// The field to drop.
        #[arg(long)]
        drop_field: Option<String>,
        /// Only change the schema; backfill later with `collection backfill`.
        #[arg(long)]
        no_backfill: bool,
        #[command(flatten)]
        throttle: Throttle,
    },
    /// Compute fields added by `alter` for the documents stored before (resumes an interrupted
    /// backfill where its last durable batch ended).
    Backfill {
        name: String,
        #[command(flatten)]
        throttle: Throttle,
    },
}

/// How hard a backfill may work.
#[derive(Args, Debug, Clone)]
pub struct Throttle {
    /// Fraction of the time the backfill may be busy (0 < duty <= 1); it sleeps the rest, so
    /// searches keep their latency.
    #[arg(long, default_value_t = 0.5)]
    duty: f64,
    /// Documents embedded per durable batch.
    #[arg(long, default_value_t = 64)]
    batch: usize,
    /// Threads the model computes with (default: every core). Fewer leave cores to searches:
    /// on two cores, one model thread kept search p99 within 2x of idle where two gave 3.7x
    /// (`quiver bench backfill`).
    #[arg(long)]
    pub(crate) threads: Option<usize>,
}

impl Throttle {
    pub(crate) fn options(&self) -> quiver::BackfillOptions {
        quiver::BackfillOptions {
            batch: self.batch,
            duty: self.duty,
            stop: None,
        }
    }
}

pub fn collection(db: &Path, as_json: bool, cmd: CollectionCmd) -> Result<()> {
    let d = match &cmd {
        CollectionCmd::List | CollectionCmd::Info { .. } | CollectionCmd::Verify { .. } => {
            open_db_read(db)?
        }
        CollectionCmd::Alter { throttle, .. } | CollectionCmd::Backfill { throttle, .. } => {
            open_db_with(db, false, throttle.threads)?
        }
        _ => open_db(db)?,
    };
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
            let v = d.collection(&name)?.describe()?;
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
        CollectionCmd::Verify { name } => {
            let c = d.collection(&name)?;
            let t = std::time::Instant::now();
            let errors = c.verify();
            let info = c.info();
            let msgs: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
            if as_json {
                println!(
                    "{}",
                    json!({"collection": name, "ok": msgs.is_empty(), "errors": msgs,
                           "segments": info.segments.len(), "documents": info.documents,
                           "seconds": t.elapsed().as_secs_f64()})
                );
            } else if msgs.is_empty() {
                println!(
                    "{name}: ok ({} segments, {} documents checked in {:.2}s)",
                    info.segments.len(),
                    info.documents,
                    t.elapsed().as_secs_f64()
                );
            } else {
                for m in &msgs {
                    eprintln!("{m}");
                }
            }
            if !msgs.is_empty() {
                bail!("{name}: {} damaged file(s)", msgs.len());
            }
        }
        CollectionCmd::Alter {
            name,
            add_field,
            schema_json,
            drop_field,
            no_backfill,
            throttle,
        } => {
            let add = add_field.zip(schema_json);
            let backfill = (!no_backfill).then(|| throttle.options());
            crate::alter::alter(&d, &name, add, drop_field, backfill, as_json)?;
        }
        CollectionCmd::Backfill { name, throttle } => {
            let c = d.collection(&name)?;
            let r = crate::alter::run_backfill(&c, &throttle.options(), as_json)?;
            if as_json {
                println!("{}", json!({"collection": name, "backfill": r}));
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

/// How `get` and `delete` read their id arguments.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum IdType {
    /// Digits find an integer id or a string id of those digits (an error names both when both
    /// exist); a JSON string (`'"275294"'`) is a string id; anything else a string id.
    #[default]
    Auto,
    /// Integer ids.
    Int,
    /// String ids, taken verbatim.
    Str,
}

/// The id a command-line argument names in `c` (see [`quiver::Collection::lookup_id`]).
pub fn resolve_id(c: &quiver::Collection, arg: &str, how: IdType) -> Result<IdLookup> {
    let exact = |id: DocId| -> Result<IdLookup> {
        Ok(if c.get(&id)?.is_some() {
            IdLookup::Found(id)
        } else {
            IdLookup::Missing(id)
        })
    };
    match how {
        IdType::Int => exact(DocId::Int(arg.trim().parse().map_err(|_| {
            anyhow!("{arg:?} is not an integer id (--id-type int)")
        })?)),
        IdType::Str => exact(DocId::Str(arg.to_string())),
        IdType::Auto => match c.lookup_id(arg) {
            IdLookup::Ambiguous(n) => bail!(
                "id {n} is ambiguous: both the integer {n} and the string \"{n}\" exist; pass --id-type int or --id-type str (or quote the string as JSON: '\"{n}\"')"
            ),
            found => Ok(found),
        },
    }
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
    crate::search_text::run(db, as_json, a)
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

#[derive(Args, Debug)]
pub struct GetArgs {
    pub collection: String,
    /// Ids: digits find an integer id or a string id of those digits; a JSON string
    /// (`'"275294"'`) is the string id.
    #[arg(required = true)]
    pub ids: Vec<String>,
    /// Include vectors.
    #[arg(long)]
    pub vectors: bool,
    /// How ids are read.
    #[arg(long, value_enum, default_value = "auto")]
    pub id_type: IdType,
}

pub fn get(db: &Path, as_json: bool, a: GetArgs) -> Result<()> {
    let d = open_db_read(db)?;
    let c = d.collection(&a.collection)?;
    let mut found = Vec::new();
    let mut missing = Vec::new();
    for s in &a.ids {
        match resolve_id(&c, s, a.id_type)? {
            IdLookup::Found(id) => match c.get(&id)? {
                Some(doc) => found.push(doc.to_json(a.vectors)),
                None => missing.push(id.to_json()),
            },
            IdLookup::Missing(id) => missing.push(id.to_json()),
            IdLookup::Ambiguous(_) => missing.push(Value::String(s.clone())),
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
    /// Ids to delete (as for `get`).
    pub ids: Vec<String>,
    /// Delete every document matching this filter (JSON).
    #[arg(long)]
    pub filter: Option<String>,
    /// How ids are read.
    #[arg(long, value_enum, default_value = "auto")]
    pub id_type: IdType,
}

pub fn delete(db: &Path, as_json: bool, a: DeleteArgs) -> Result<()> {
    if a.ids.is_empty() == a.filter.is_none() {
        bail!("give ids or --filter (exactly one of them)");
    }
    let d = open_db(db)?;
    let c = d.collection(&a.collection)?;
    let report = match &a.filter {
        Some(f) => c.delete_by_filter(&parse_filter(f)?)?,
        None => {
            let mut ids: Vec<DocId> = Vec::new();
            for s in &a.ids {
                if let IdLookup::Found(id) = resolve_id(&c, s, a.id_type)? {
                    ids.push(id);
                }
            }
            c.delete(&ids)?
        }
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
    let d = open_db_read(db)?;
    let c = d.collection(&a.collection)?;
    let f = a.filter.as_deref().map(parse_filter).transpose()?;
    let n = c.count(f.as_ref())?;
    if as_json {
        println!("{}", json!({"count": n}));
    } else {
        println!("{n}");
    }
    Ok(())
}
