//! [`Database`] and [`Collection`]: the engine API every face (CLI, HTTP server, Python) calls.
//!
//! ```text
//!   Database ──collection(name)──► Collection ──upsert(docs)──► embed model-backed fields
//!      │ (a directory; one model       │                         (one pass per model and text)
//!      │  pool shared by all)          │                        ──► validate ──► durable write
//!      │                               └──query(&Query)──► Plan ──► execute on a Snapshot ──► hits
//!      └──► quiver_storage::Database (segments, WAL, locks)
//! ```

use crate::error::{EngineError, Result};
use crate::request::{Mode, Query, QueryResult};
#[cfg(feature = "embed")]
use crate::ModelPool;
use parking_lot::RwLock;
use quiver_query::plan::{Plan, PlanResult, QueryEncoder};
use quiver_storage as storage;
use quiver_storage::{
    CollectionInfo, DocId, Document, Filter, NoProgress, Progress, Schema, Snapshot, StorageError,
    StoredDoc, WriteReport,
};
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

/// How to open a [`Database`].
#[derive(Debug, Clone, Default)]
pub struct OpenOptions {
    /// Refuse every write through this handle ([`EngineError::ReadOnly`]).
    pub read_only: bool,
    /// The models to embed with (default: the process-wide [`ModelPool::global`]).
    #[cfg(feature = "embed")]
    pub pool: Option<Arc<ModelPool>>,
}

/// A database: a directory of collections.
pub struct Database {
    inner: storage::Database,
    read_only: bool,
    #[cfg(feature = "embed")]
    pool: Arc<ModelPool>,
    /// Each collection's query adapters, loaded on its first open through this handle and
    /// shared by every handle after (keyed by the storage collection they belong to).
    adapters: parking_lot::Mutex<HashMap<String, AdapterEntry>>,
}

type AdapterEntry = (
    std::sync::Weak<storage::Collection>,
    Arc<RwLock<crate::adapt::AdapterSet>>,
);

impl std::fmt::Debug for Database {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Database")
            .field("path", &self.path())
            .field("read_only", &self.read_only)
            .finish()
    }
}

impl Database {
    /// Opens (creating if needed) the database at `path` for reading and writing.
    pub fn open(path: impl AsRef<Path>) -> Result<Database> {
        Database::open_with(path, OpenOptions::default())
    }

    /// Opens the database at `path` for reading, beside a writer in another process if there is
    /// one: every write through this handle fails with [`EngineError::ReadOnly`], and each
    /// collection shows what was committed when it was opened.
    pub fn open_read_only(path: impl AsRef<Path>) -> Result<Database> {
        Database::open_with(
            path,
            OpenOptions {
                read_only: true,
                ..Default::default()
            },
        )
    }

    /// Opens the database at `path` with `options`.
    pub fn open_with(path: impl AsRef<Path>, options: OpenOptions) -> Result<Database> {
        let path = path.as_ref();
        if options.read_only && !path.join("collections").is_dir() {
            return Err(EngineError::BadRequest(format!(
                "{} is not a Quiver database (no collections/ folder)",
                path.display()
            )));
        }
        Ok(Database {
            inner: if options.read_only {
                storage::Database::open_read_only(path)?
            } else {
                storage::Database::open(path)?
            },
            read_only: options.read_only,
            #[cfg(feature = "embed")]
            pool: options.pool.unwrap_or_else(ModelPool::global),
            adapters: Default::default(),
        })
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        self.inner.path()
    }

    /// Whether writes are refused.
    pub fn is_read_only(&self) -> bool {
        self.read_only
    }

    /// The model pool of this database's collections.
    #[cfg(feature = "embed")]
    pub fn pool(&self) -> &Arc<ModelPool> {
        &self.pool
    }

    /// The storage layer underneath.
    pub fn storage(&self) -> &storage::Database {
        &self.inner
    }

    fn writable(&self) -> Result<()> {
        if self.read_only {
            return Err(EngineError::ReadOnly(self.path().display().to_string()));
        }
        Ok(())
    }

    /// Creates a collection (atomically) and returns it.
    pub fn create_collection(&self, name: &str, schema: &Schema) -> Result<Collection> {
        self.writable()?;
        let c = self.inner.create_collection(name, schema)?;
        self.wrap(c)
    }

    /// Opens a collection.
    pub fn collection(&self, name: &str) -> Result<Collection> {
        let c = self.inner.collection(name)?;
        self.wrap(c)
    }

    /// Names of all collections, sorted.
    pub fn list_collections(&self) -> Result<Vec<String>> {
        Ok(self.inner.list_collections()?)
    }

    /// Deletes a collection and its files.
    pub fn drop_collection(&self, name: &str) -> Result<()> {
        self.writable()?;
        Ok(self.inner.drop_collection(name)?)
    }

    fn wrap(&self, inner: Arc<storage::Collection>) -> Result<Collection> {
        let adapters = {
            let mut all = self.adapters.lock();
            match all.get(inner.name()) {
                Some((w, set)) if w.upgrade().is_some_and(|c| Arc::ptr_eq(&c, &inner)) => {
                    set.clone()
                }
                _ => {
                    let (by_field, errors) = crate::adapt::load_adapters(inner.dir());
                    let set = Arc::new(RwLock::new(crate::adapt::AdapterSet { by_field, errors }));
                    all.insert(
                        inner.name().to_string(),
                        (Arc::downgrade(&inner), set.clone()),
                    );
                    set
                }
            }
        };
        Ok(Collection {
            adapters,
            inner,
            read_only: self.read_only,
            progress: Arc::new(RwLock::new(Arc::new(NoProgress))),
            #[cfg(feature = "embed")]
            pool: self.pool.clone(),
        })
    }
}

/// A collection of documents with a schema. Cheap to clone; clones share everything.
#[derive(Clone)]
pub struct Collection {
    inner: Arc<storage::Collection>,
    /// Query adapters by field (`adapt.rs`), loaded at the first open.
    pub(crate) adapters: Arc<RwLock<crate::adapt::AdapterSet>>,
    read_only: bool,
    progress: Arc<RwLock<Arc<dyn Progress>>>,
    #[cfg(feature = "embed")]
    pool: Arc<ModelPool>,
}

impl std::fmt::Debug for Collection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Collection")
            .field("name", &self.name())
            .field("read_only", &self.read_only)
            .finish()
    }
}

/// What a bare id argument (`275294`, `abc`, `"275294"`) names in a collection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdLookup {
    /// Exactly one stored document has this id.
    Found(DocId),
    /// No stored document has it (the id as it would be stored).
    Missing(DocId),
    /// Digits that name both an integer id and a string id; quote it as JSON to choose.
    Ambiguous(u64),
}

impl Collection {
    /// The collection's name.
    pub fn name(&self) -> &str {
        self.inner.name()
    }

    /// The current schema (fields added or dropped since the collection was opened included).
    pub fn schema(&self) -> Arc<Schema> {
        self.inner.schema()
    }

    /// A consistent read view (what queries run on).
    pub fn snapshot(&self) -> Snapshot {
        self.inner.snapshot()
    }

    /// Counts, segments and sizes.
    pub fn info(&self) -> CollectionInfo {
        self.inner.info()
    }

    /// Checks every file of the collection (see [`storage::Collection::verify`]); returns every
    /// problem found, each naming its file.
    pub fn verify(&self) -> Vec<StorageError> {
        self.inner.verify()
    }

    /// The storage layer underneath.
    pub fn storage(&self) -> &Arc<storage::Collection> {
        &self.inner
    }

    /// The model pool this collection embeds with.
    #[cfg(feature = "embed")]
    pub fn pool(&self) -> &Arc<ModelPool> {
        &self.pool
    }

    /// Reports long work (embedding, sealing, compaction) to `p`.
    pub fn set_progress(&self, p: Arc<dyn Progress>) {
        self.inner.set_progress(p.clone());
        *self.progress.write() = p;
    }

    /// Where long work of this collection reports progress.
    pub(crate) fn progress_sink(&self) -> Arc<dyn Progress> {
        self.progress.read().clone()
    }

    pub(crate) fn writable(&self) -> Result<()> {
        if self.read_only {
            return Err(EngineError::ReadOnly(format!(
                "collection {:?}",
                self.name()
            )));
        }
        Ok(())
    }

    /// Computes the vectors of every model-backed field (dense and multi) that a document does
    /// not already carry; one forward pass per (model, text). Errors name the document's
    /// position in `docs` and the field; on error nothing is changed.
    pub fn embed(&self, docs: &mut [Document]) -> Result<()> {
        self.embed_with(&self.schema(), docs, self.progress_sink().as_ref())
    }

    /// [`Collection::embed`] for the model-backed fields of `schema`, reporting to `progress`.
    pub(crate) fn embed_with(
        &self,
        schema: &Schema,
        docs: &mut [Document],
        #[allow(unused_variables)] progress: &dyn Progress,
    ) -> Result<()> {
        #[cfg(feature = "embed")]
        {
            crate::embedding::embed_documents(schema, docs, &self.pool, progress)
        }
        #[cfg(not(feature = "embed"))]
        {
            crate::embedding_off::check_supplied(schema, docs)
        }
    }

    /// Checks `docs` against the schema (types, dimensions, finiteness, duplicate ids) without
    /// writing; the error names the first bad document's position and field.
    pub fn validate(&self, docs: &[Document]) -> Result<()> {
        let mut seen: HashMap<&DocId, usize> = HashMap::with_capacity(docs.len());
        for (i, d) in docs.iter().enumerate() {
            self.schema()
                .prepare(d.clone())
                .map_err(|e| in_batch(i, e))?;
            if let Some(id) = &d.id {
                if let Some(first) = seen.insert(id, i) {
                    return Err(EngineError::Document {
                        index: i,
                        field: Some("id".into()),
                        message: format!("duplicate id {id} (first at position {first})"),
                    });
                }
            }
        }
        Ok(())
    }

    /// Inserts or replaces documents, atomically and durably: vectors of model-backed fields are
    /// computed first ([`Collection::embed`]), then the whole batch is validated and committed,
    /// or nothing is written.
    ///
    /// A field added while the vectors were computed (`add_field` from another thread) does
    /// not fail the write: the documents come back unwritten, the new field's vectors are
    /// computed, and the write is tried again under the new schema.
    pub fn upsert(&self, mut docs: Vec<Document>) -> Result<WriteReport> {
        self.writable()?;
        // What the caller supplied: a retry drops what the engine computed under the old
        // schema (a field may have been dropped, or added again with another model).
        let supplied: Vec<(Vec<String>, Vec<String>)> = docs
            .iter()
            .map(|d| {
                (
                    d.vectors.keys().cloned().collect(),
                    d.multi.keys().cloned().collect(),
                )
            })
            .collect();
        loop {
            let schema = self.schema();
            self.embed_with(&schema, &mut docs, self.progress_sink().as_ref())?;
            match self.inner.upsert_under(docs, &schema) {
                Ok(Ok(report)) => return Ok(report),
                Ok(Err(back)) => {
                    docs = back;
                    for (d, (v, m)) in docs.iter_mut().zip(&supplied) {
                        d.vectors.retain(|k, _| v.contains(k));
                        d.multi.retain(|k, _| m.contains(k));
                        d.multi_raw.retain(|k, _| m.contains(k));
                    }
                }
                Err(StorageError::InBatch { index, source }) => {
                    return Err(in_batch(index, *source))
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Loads documents straight into sealed segments of up to `segment_rows` rows (see
    /// `quiver_storage::Collection::bulk_load`): for a first load, no log or mutable segment
    /// round trip. Vectors of model-backed fields are computed first; the whole input is
    /// validated before anything is written.
    pub fn bulk_load(&self, mut docs: Vec<Document>, segment_rows: usize) -> Result<WriteReport> {
        self.writable()?;
        self.embed(&mut docs)?;
        self.inner
            .bulk_load(docs, segment_rows)
            .map_err(|e| match e {
                StorageError::InBatch { index, source } => in_batch(index, *source),
                e => e.into(),
            })
    }

    /// Runs a query: compiles it into a plan ([`Query::to_plan`]), embeds its text with the
    /// fields' models, and executes it on a fresh snapshot.
    pub fn query(&self, q: &Query) -> Result<QueryResult> {
        let t = Instant::now();
        let snap = self.snapshot();
        let (mode, mut plan) = q.to_plan(snap.schema())?;
        self.apply_adapters(snap.schema(), &mut plan)?;
        let res = self.execute_on(&snap, &plan)?;
        Ok(QueryResult {
            hits: res.hits,
            mode,
            explain: res.explain,
            took_ms: t.elapsed().as_secs_f64() * 1e3,
            pending: crate::evolve::pending_for(&snap, &plan),
        })
    }

    /// Compiles `q` into the plan [`Collection::query`] would run, with the text of every dense
    /// and multi source embedded here: the plan carries the query vectors. A sharded collection
    /// sends that plan to its shards, so a query is embedded once, not once per shard. (A
    /// rescore stage on a field no source searches still embeds where it runs.)
    pub fn prepare(&self, q: &Query) -> Result<(Mode, Plan)> {
        let schema = self.schema();
        let (mode, mut plan) = q.to_plan(&schema)?;
        self.apply_adapters(&schema, &mut plan)?;
        #[cfg(feature = "embed")]
        self.embed_sources(&mut plan)?;
        Ok((mode, plan))
    }

    /// Replaces the text of dense and multi sources on model-backed fields by its vectors.
    #[cfg(feature = "embed")]
    fn embed_sources(&self, plan: &mut Plan) -> Result<()> {
        use quiver_query::plan::Source;
        let enc = crate::embedding::PoolEncoder::new(self.pool.clone());
        let schema = self.schema();
        let only = |mut all: Vec<storage::DenseField>| (all.len() == 1).then(|| all.remove(0));
        for p in &mut plan.prefetch {
            match &mut p.source {
                Source::Dense(d) if d.vector.is_none() => {
                    let field = match &d.field {
                        Some(n) => schema.dense(n),
                        None => only(schema.user_dense_fields()),
                    };
                    if let (Some(text), Some(f)) = (&d.text, field) {
                        if f.embedding.model.is_some() {
                            d.vector = Some(enc.dense(&f, text)?);
                            d.text = None;
                        }
                    }
                }
                Source::Multi(m) if m.vectors.is_none() => {
                    if let (Some(text), Some(f)) = (&m.text, schema.multi(&m.field)) {
                        if f.embedding.model.is_some() {
                            m.vectors = Some(enc.multi(&f, text)?);
                            m.text = None;
                        }
                    }
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// The statistics a BM25 search of `text` on text field `field` (`None`: the only one) would
    /// score with, over this collection's visible documents: N, total length, df per query term.
    /// A sharded collection sums them over its shards and passes the sum in each BM25 source's
    /// `stats`, so every shard scores as one collection holding all documents.
    pub fn bm25_stats(&self, field: Option<&str>, text: &str) -> Result<quiver_query::Bm25Stats> {
        let snap = self.snapshot();
        let stats = quiver_query::bm25_stats(&snap, field, text)?;
        snap.check()?;
        Ok(stats)
    }

    /// Runs a plan on a fresh snapshot.
    pub fn execute(&self, plan: &Plan) -> Result<PlanResult> {
        let snap = self.snapshot();
        if self.adapters.read().by_field.is_empty() {
            return self.execute_on(&snap, plan);
        }
        let mut plan = plan.clone();
        self.apply_adapters(snap.schema(), &mut plan)?;
        self.execute_on(&snap, &plan)
    }

    fn execute_on(&self, snap: &Snapshot, plan: &Plan) -> Result<PlanResult> {
        #[cfg(feature = "embed")]
        let encoder = crate::embedding::PoolEncoder::new(self.pool.clone());
        #[cfg(feature = "embed")]
        let enc: Option<&dyn QueryEncoder> = Some(&encoder);
        #[cfg(not(feature = "embed"))]
        let enc: Option<&dyn QueryEncoder> = None;
        let res = quiver_query::plan::execute(snap, plan, enc)?;
        // Sections are checked when first read: an answer built over one that failed is not
        // served (the error names the file).
        snap.check()?;
        Ok(res)
    }

    /// The query vector of `text` for dense field `field` (its model and query prefix).
    #[cfg(feature = "embed")]
    pub fn embed_query(&self, field: &str, text: &str) -> Result<Vec<f32>> {
        let f = self.schema().dense(field).ok_or_else(|| {
            EngineError::Query(quiver_query::QueryError::UnknownField(field.to_string()))
        })?;
        crate::embedding::PoolEncoder::new(self.pool.clone()).dense(&f, text)
    }

    /// The stored document with this id (an error if a file it was read from failed its checks).
    pub fn get(&self, id: &DocId) -> Result<Option<StoredDoc>> {
        let snap = self.snapshot();
        let d = snap.get(id);
        snap.check()?;
        Ok(d)
    }

    fn exists(&self, id: &DocId) -> bool {
        self.snapshot().find(id).is_some()
    }

    /// Finds the id a command-line or URL argument names: a JSON id (`"275294"` is the string,
    /// `275294` in JSON the integer) is taken as given; bare digits find an integer id or a
    /// string id of those digits, and report [`IdLookup::Ambiguous`] when both exist; anything
    /// else is a string id.
    pub fn lookup_id(&self, arg: &str) -> IdLookup {
        let t = arg.trim();
        if t.starts_with('"') {
            if let Some(id) = serde_json::from_str(t)
                .ok()
                .and_then(|v| DocId::from_json(&v))
            {
                return self.found_or_missing(id);
            }
        }
        match t.parse::<u64>() {
            Ok(n) => {
                let int = self.exists(&DocId::Int(n));
                let string = self.exists(&DocId::Str(t.to_string()));
                match (int, string) {
                    (true, true) => IdLookup::Ambiguous(n),
                    (true, false) => IdLookup::Found(DocId::Int(n)),
                    (false, true) => IdLookup::Found(DocId::Str(t.to_string())),
                    (false, false) => IdLookup::Missing(DocId::Int(n)),
                }
            }
            Err(_) => self.found_or_missing(DocId::Str(arg.to_string())),
        }
    }

    fn found_or_missing(&self, id: DocId) -> IdLookup {
        if self.exists(&id) {
            IdLookup::Found(id)
        } else {
            IdLookup::Missing(id)
        }
    }

    /// Deletes documents by id (ids that do not exist are skipped). Durable when this returns.
    pub fn delete(&self, ids: &[DocId]) -> Result<WriteReport> {
        self.writable()?;
        Ok(self.inner.delete(ids)?)
    }

    /// Deletes every document matching `filter`.
    pub fn delete_by_filter(&self, filter: &Filter) -> Result<WriteReport> {
        self.writable()?;
        Ok(self.inner.delete_by_filter(filter)?)
    }

    /// Documents (matching `filter`).
    pub fn count(&self, filter: Option<&Filter>) -> Result<usize> {
        let snap = self.snapshot();
        let n = snap.count(filter);
        snap.check()?;
        Ok(n)
    }

    /// Up to `limit` documents in id order after `after` (a cursor), and the next cursor.
    pub fn scroll(
        &self,
        after: Option<&DocId>,
        limit: usize,
        filter: Option<&Filter>,
    ) -> Result<(Vec<StoredDoc>, Option<DocId>)> {
        let snap = self.snapshot();
        let page = snap.scroll(after, limit, filter);
        snap.check()?;
        Ok(page)
    }

    /// Seals the mutable segment now.
    pub fn flush(&self) -> Result<()> {
        self.writable()?;
        Ok(self.inner.flush()?)
    }

    /// The last background seals and merges (see
    /// `quiver_storage::Collection::maintenance_history`).
    pub fn maintenance_history(&self) -> Vec<quiver_storage::MaintenanceRecord> {
        self.inner.maintenance_history()
    }

    /// Finishes the background seal and merges due now, in this thread, so the segment layout
    /// is settled (see `quiver_storage::Collection::wait_for_maintenance`).
    pub fn wait_for_maintenance(&self) -> Result<()> {
        self.writable()?;
        Ok(self.inner.wait_for_maintenance()?)
    }

    /// Merges all sealed segments into one, dropping deleted rows.
    pub fn compact(&self) -> Result<()> {
        self.writable()?;
        Ok(self.inner.compact()?)
    }
}

/// A storage error about document `index` of a batch, as an engine error naming it.
fn in_batch(index: usize, e: StorageError) -> EngineError {
    match e {
        StorageError::InvalidDocument { field, msg, .. } => EngineError::Document {
            index,
            field: Some(field),
            message: msg,
        },
        StorageError::InBatch { source, .. } => in_batch(index, *source),
        other => EngineError::Document {
            index,
            field: None,
            message: other.to_string(),
        },
    }
}
