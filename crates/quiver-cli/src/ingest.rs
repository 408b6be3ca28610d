//! `quiver ingest`: JSONL and Parquet into a collection.
//!
//! The whole input is parsed and validated first (types, dimensions, finiteness, duplicate ids);
//! any error names the line (JSONL) or row (Parquet) and the field, and nothing is written. Then
//! documents are upserted in batches; each batch is durable when its acknowledgement is printed
//! (`--ack`: one `{"acked": N}` line per batch on stdout, N = input lines committed so far).

use crate::ops::open_db;
use crate::progress::{bar, Bars};
use anyhow::{anyhow, bail, Context, Result};
use arrow_array::{
    Array, ArrayRef, BooleanArray, Float32Array, Float64Array, Int32Array, Int64Array,
    LargeListArray, LargeStringArray, ListArray, RecordBatch, StringArray, UInt64Array,
};
use clap::Args;
use quiver::{Collection, DocId, Document, Schema};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[derive(Args, Debug)]
pub struct IngestArgs {
    /// Collection.
    pub collection: String,
    /// Input: a .jsonl / .ndjson / .parquet file, or a folder of .md / .txt files (chunked by
    /// section; payload fields `path`, `title`, `text`, `chunk`).
    pub file: PathBuf,
    /// Input format (default: from the file extension).
    #[arg(long, value_parser = ["jsonl", "parquet"])]
    pub format: Option<String>,
    /// Documents per committed batch.
    #[arg(long, default_value_t = 1000)]
    pub batch_size: usize,
    /// Print {"acked": N} on stdout after each durable batch.
    #[arg(long)]
    pub ack: bool,
    /// Parquet: the id column.
    #[arg(long, default_value = "id")]
    pub id_column: String,
    /// Bulk load: write the input straight into sealed segments of `--segment-rows` rows
    /// (built on every core), without the log and mutable segment round trip; one commit at
    /// the end (a crash before it leaves the collection as it was). For a first load.
    #[arg(long)]
    pub bulk: bool,
    /// Rows per segment of a bulk load.
    #[arg(long, default_value_t = 200_000)]
    pub segment_rows: usize,
}

/// Where an input record came from, for error messages.
fn at(line: usize, parquet: bool) -> String {
    if parquet {
        format!("row {line}")
    } else {
        format!("line {line}")
    }
}

fn read_jsonl(path: &Path, schema: &Schema) -> Result<Vec<(usize, Document)>> {
    let f = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let size = f.metadata().map(|m| m.len()).unwrap_or(0);
    let pb = bar("parsing", size);
    let mut reader = std::io::BufReader::new(f);
    let mut out = Vec::new();
    let mut buf = Vec::new();
    let mut line_no = 0;
    loop {
        buf.clear();
        let n = reader
            .read_until(b'\n', &mut buf)
            .with_context(|| format!("reading {}", path.display()))?;
        if n == 0 {
            break;
        }
        line_no += 1;
        pb.inc(n as u64);
        let text = std::str::from_utf8(&buf)
            .map_err(|_| anyhow!("{}: line {line_no}: not valid UTF-8", path.display()))?;
        if text.trim().is_empty() {
            continue;
        }
        let v: Value = serde_json::from_str(text)
            .map_err(|e| anyhow!("{}: line {line_no}: malformed JSON: {e}", path.display()))?;
        let doc = quiver::document::document_from_json(v, schema).map_err(|e| {
            if e.field.is_empty() {
                anyhow!("{}: line {line_no}: {}", path.display(), e.message)
            } else {
                anyhow!(
                    "{}: line {line_no}, field {:?}: {}",
                    path.display(),
                    e.field,
                    e.message
                )
            }
        })?;
        out.push((line_no, doc));
    }
    pb.finish_and_clear();
    Ok(out)
}

fn list_values(col: &ArrayRef, row: usize) -> Option<ArrayRef> {
    if col.is_null(row) {
        return None;
    }
    if let Some(l) = col.as_any().downcast_ref::<ListArray>() {
        return Some(l.value(row));
    }
    col.as_any()
        .downcast_ref::<LargeListArray>()
        .map(|l| l.value(row))
}

fn floats(a: &ArrayRef) -> Option<Vec<f32>> {
    if let Some(x) = a.as_any().downcast_ref::<Float32Array>() {
        return Some(
            (0..x.len())
                .map(|i| if x.is_null(i) { f32::NAN } else { x.value(i) })
                .collect(),
        );
    }
    a.as_any().downcast_ref::<Float64Array>().map(|x| {
        (0..x.len())
            .map(|i| {
                if x.is_null(i) {
                    f32::NAN
                } else {
                    x.value(i) as f32
                }
            })
            .collect()
    })
}

fn scalar_json(col: &ArrayRef, row: usize) -> Option<Value> {
    if col.is_null(row) {
        return Some(Value::Null);
    }
    let a = col.as_any();
    if let Some(x) = a.downcast_ref::<Int64Array>() {
        return Some(x.value(row).into());
    }
    if let Some(x) = a.downcast_ref::<Int32Array>() {
        return Some(x.value(row).into());
    }
    if let Some(x) = a.downcast_ref::<UInt64Array>() {
        return Some(x.value(row).into());
    }
    if let Some(x) = a.downcast_ref::<Float64Array>() {
        return serde_json::Number::from_f64(x.value(row)).map(Value::Number);
    }
    if let Some(x) = a.downcast_ref::<Float32Array>() {
        return serde_json::Number::from_f64(x.value(row) as f64).map(Value::Number);
    }
    if let Some(x) = a.downcast_ref::<StringArray>() {
        return Some(x.value(row).into());
    }
    if let Some(x) = a.downcast_ref::<LargeStringArray>() {
        return Some(x.value(row).into());
    }
    a.downcast_ref::<BooleanArray>()
        .map(|x| x.value(row).into())
}

fn read_parquet(path: &Path, schema: &Schema, id_column: &str) -> Result<Vec<(usize, Document)>> {
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    let f = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(f)
        .with_context(|| format!("{}: not a readable Parquet file", path.display()))?;
    let total = builder.metadata().file_metadata().num_rows().max(0) as u64;
    let reader = builder
        .build()
        .with_context(|| format!("reading {}", path.display()))?;
    let pb = bar("parsing", total);
    let dense: HashMap<String, usize> = schema
        .dense_fields()
        .into_iter()
        .map(|f| (f.name, f.dim))
        .collect();
    let mut out = Vec::new();
    let mut row_no = 0usize;
    for batch in reader {
        let batch: RecordBatch = batch.with_context(|| format!("reading {}", path.display()))?;
        let names: Vec<String> = batch
            .schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect();
        if !names.iter().any(|n| n == id_column) {
            bail!(
                "{}: no id column {id_column:?} (columns: {}); use --id-column",
                path.display(),
                names.join(", ")
            );
        }
        for r in 0..batch.num_rows() {
            row_no += 1;
            let mut doc = Document::default();
            for (ci, name) in names.iter().enumerate() {
                let col = batch.column(ci);
                let err = |msg: String| {
                    anyhow!("{}: row {row_no}, field {name:?}: {msg}", path.display())
                };
                if name == id_column {
                    let v = scalar_json(col, r)
                        .ok_or_else(|| err("unsupported id column type".into()))?;
                    doc.id = Some(DocId::from_json(&v).ok_or_else(|| {
                        err(format!(
                            "id must be a non-negative integer or non-empty string, got {v}"
                        ))
                    })?);
                } else if dense.contains_key(name) {
                    let vals = list_values(col, r).ok_or_else(|| {
                        err("vector column must be a non-null list<float>".into())
                    })?;
                    doc.vectors.insert(
                        name.clone(),
                        floats(&vals).ok_or_else(|| {
                            err("vector column must be a list of float32 or float64".into())
                        })?,
                    );
                } else {
                    let v = scalar_json(col, r).ok_or_else(|| {
                        err(format!(
                            "unsupported payload column type {}",
                            col.data_type()
                        ))
                    })?;
                    if !v.is_null() {
                        doc.payload.insert(name.clone(), v);
                    }
                }
            }
            out.push((row_no, doc));
        }
        pb.inc(batch.num_rows() as u64);
    }
    pb.finish_and_clear();
    Ok(out)
}

pub fn run(db: &Path, as_json: bool, a: IngestArgs) -> Result<()> {
    let d = open_db(db)?;
    let c = d.collection(&a.collection)?;
    let schema: Arc<Schema> = c.schema().clone();
    let format = a.format.clone().unwrap_or_else(|| {
        if a.file.extension().is_some_and(|e| e == "parquet") {
            "parquet".into()
        } else {
            "jsonl".into()
        }
    });
    let parquet = format == "parquet";
    let t0 = std::time::Instant::now();
    let folder = a.file.is_dir();
    let docs = if folder {
        crate::text::read_folder(&a.file)?
    } else if parquet {
        read_parquet(&a.file, &schema, &a.id_column)?
    } else {
        read_jsonl(&a.file, &schema)?
    };
    let label = a.file.display().to_string();
    let where_ = |line: usize| {
        if folder {
            format!("{label}: document {line}")
        } else {
            format!("{label}: {}", at(line, parquet))
        }
    };
    // Embed model-backed fields, then validate everything, before writing anything.
    c.set_progress(Arc::new(Bars::new()));
    let (lines, mut plain): (Vec<usize>, Vec<Document>) = docs.into_iter().unzip();
    let located = |e: quiver::EngineError| match e {
        quiver::EngineError::Document {
            index,
            field: Some(f),
            message,
        } => anyhow!("{}, field {f:?}: {message}", where_(lines[index])),
        quiver::EngineError::Document { index, message, .. } => {
            anyhow!("{}: {message}", where_(lines[index]))
        }
        e => anyhow!(e),
    };
    c.embed(&mut plain).map_err(located)?;
    c.validate(&plain).map_err(located)?;
    let written = if a.bulk {
        let n = plain.len();
        c.bulk_load(plain, a.segment_rows).map_err(located)?;
        if a.ack {
            println!("{}", json!({"acked": lines.last().copied().unwrap_or(0)}));
        }
        n
    } else {
        let docs: Vec<(usize, Document)> = lines.iter().copied().zip(plain).collect();
        write_batches(&c, docs, a.batch_size, a.ack)?
    };
    let secs = t0.elapsed().as_secs_f64();
    let info = c.info();
    if as_json {
        println!(
            "{}",
            json!({"ingested": written, "collection": a.collection, "documents": info.documents, "seconds": secs, "docs_per_s": written as f64 / secs.max(1e-9)})
        );
    } else {
        println!("ingested {written} documents into {} in {secs:.2}s ({:.0} docs/s); collection now holds {}", a.collection, written as f64 / secs.max(1e-9), info.documents);
    }
    Ok(())
}

/// Upserts validated documents in batches of `batch_size`, each durable before the next; with
/// `ack`, prints `{"acked": LINE}` after each. Returns the number written.
pub fn write_batches(
    c: &Collection,
    docs: Vec<(usize, Document)>,
    batch_size: usize,
    ack: bool,
) -> Result<usize> {
    c.set_progress(Arc::new(Bars::new()));
    let pb = bar("ingesting", docs.len() as u64);
    let mut written = 0usize;
    let stdout = std::io::stdout();
    for chunk in docs.chunks(batch_size.max(1)) {
        let last_line = chunk.last().map_or(0, |x| x.0);
        let report = c.upsert(chunk.iter().map(|(_, d)| d.clone()).collect())?;
        if let Some(e) = &report.maintenance_error {
            eprintln!("warning: batch stored, but sealing the mutable segment failed: {e}");
        }
        written += chunk.len();
        pb.inc(chunk.len() as u64);
        if ack {
            let mut out = stdout.lock();
            writeln!(out, "{}", json!({"acked": last_line}))?;
            out.flush()?;
        }
    }
    pb.finish_and_clear();
    Ok(written)
}
