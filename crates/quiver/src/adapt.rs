//! Query adapters (issue 17, model migration): a linear map from a new model's space into a
//! dense field's stored space, fitted on the collection's own documents, so that text queries
//! embedded by the new model search the vectors the old one computed — without re-embedding the
//! corpus, and without the old model.
//!
//! [`Collection::adapt`] draws a seeded sample of stored documents, embeds their text (the
//! field's `embed` payload fields, the ingest's rule) with the new model, pairs each with its
//! stored vector and fits `quiver_linalg::Adapter`: orthogonal Procrustes when the dimensions
//! match and the sample has at least as many documents as the new model has dimensions
//! (semi-orthogonal when the dimensions differ), else ridge least squares. A tenth of the sample is held out
//! first to report how well the map fits (mean cosine of mapped held-out documents to their
//! stored vectors), then the map is fitted on the whole sample and stored in
//! `<collection>/adapters/<field>.json` (written to a temporary file, synced, renamed). From then
//! on, a text query on the field — in any mode, through `query`, `prepare` or `execute` — is
//! embedded by the new model and mapped; vector queries are untouched. A process that opened the
//! collection before sees the adapter when it opens it again.

use crate::engine::Collection;
use crate::error::{EngineError, Result};
use quiver_linalg::adapt::{Adapter, AdapterKind};
use quiver_query::plan::{Plan, Source};
use quiver_storage::Schema;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// How [`Collection::adapt`] fits.
#[derive(Debug, Clone)]
pub struct AdaptOptions {
    /// Documents embedded by the new model (at most; fewer when the collection is smaller).
    pub sample: usize,
    /// `Procrustes` or `Ridge`; `None`: Procrustes when the dimensions match and there are at
    /// least as many training documents as dimensions, else ridge.
    pub kind: Option<AdapterKind>,
    /// Seed of the sample draw.
    pub seed: u64,
}

impl Default for AdaptOptions {
    fn default() -> Self {
        AdaptOptions {
            sample: 2000,
            kind: None,
            seed: 42,
        }
    }
}

/// A stored adapter as [`Collection::adapters`] lists it (and `adapters/<field>.json` holds it,
/// with the map).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AdapterInfo {
    /// The dense field whose stored vectors queries are mapped onto.
    pub field: String,
    /// The model text queries are embedded by.
    pub model: String,
    /// `procrustes` or `ridge`.
    pub kind: String,
    /// The new model's dimension.
    pub d_in: usize,
    /// The field's dimension.
    pub d_out: usize,
    /// Ridge penalty (0 for Procrustes).
    pub lambda: f64,
    /// The name the field's vector files carried when the map was fitted (`DenseField::stored`;
    /// absent in older files: the field's name). Once the field switches models
    /// (`Collection::begin_switch`) its vectors are others and the adapter no longer applies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fitted_on: Option<String>,
    /// Documents the map was fitted on.
    pub sample: usize,
    /// Mean cosine of held-out documents, mapped, to their stored vectors (fitted without them).
    pub holdout_cosine: f64,
    /// Held-out documents.
    pub holdout: usize,
}

#[derive(Serialize, Deserialize)]
struct StoredAdapter {
    #[serde(flatten)]
    info: AdapterInfo,
    /// `d_in x d_out`, row-major.
    matrix: Vec<f32>,
}

/// A loaded adapter.
pub(crate) struct QueryAdapter {
    pub(crate) info: AdapterInfo,
    map: Adapter,
}

/// The adapters of one collection, by field.
pub(crate) type Adapters = HashMap<String, Arc<QueryAdapter>>;

/// What a collection's handles share: its adapters (loaded once per database and collection)
/// and the files that did not load.
#[derive(Default)]
pub(crate) struct AdapterSet {
    pub(crate) by_field: Adapters,
    pub(crate) errors: Vec<String>,
}

fn dir_of(c: &Collection) -> PathBuf {
    c.storage().dir().join("adapters")
}

fn parse_kind(info: &AdapterInfo, path: &Path) -> Result<AdapterKind> {
    AdapterKind::parse(&info.kind).ok_or_else(|| {
        EngineError::BadRequest(format!(
            "{}: unknown adapter kind {:?}",
            path.display(),
            info.kind
        ))
    })
}

/// Reads every `adapters/*.json` of the collection in `dir`. A file that does not read as an
/// adapter is left out and named in `errors` (queries on its field then use the field's own
/// model; `remove_adapter` still removes the file).
pub(crate) fn load_adapters(dir: &Path) -> (Adapters, Vec<String>) {
    let dir = dir.join("adapters");
    let (mut out, mut errors) = (HashMap::new(), Vec::new());
    let entries = match std::fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return (out, errors),
        Err(e) => return (out, vec![format!("{}: {e}", dir.display())]),
    };
    for path in entries.flatten().map(|e| e.path()) {
        if path.extension().is_none_or(|x| x != "json") {
            continue;
        }
        match read_adapter(&path) {
            Ok(a) => {
                out.insert(a.info.field.clone(), Arc::new(a));
            }
            Err(e) => errors.push(e.to_string()),
        }
    }
    (out, errors)
}

fn read_adapter(path: &Path) -> Result<QueryAdapter> {
    let bytes = std::fs::read(path).map_err(|e| io(path, e))?;
    let s: StoredAdapter = serde_json::from_slice(&bytes).map_err(|e| {
        EngineError::BadRequest(format!("{}: not a stored adapter: {e}", path.display()))
    })?;
    let kind = parse_kind(&s.info, path)?;
    let map = Adapter::linear(kind, s.info.d_in, s.info.d_out, s.matrix, s.info.lambda)
        .map_err(|e| EngineError::BadRequest(format!("{}: {e}", path.display())))?;
    Ok(QueryAdapter { info: s.info, map })
}

fn io(path: &Path, e: std::io::Error) -> EngineError {
    EngineError::Storage(quiver_storage::StorageError::Io {
        path: path.display().to_string(),
        source: e,
    })
}

/// The file of `field`'s adapter. A field name that could leave the `adapters` folder (a path
/// separator, a leading dot, a NUL) is refused.
fn adapter_path(c: &Collection, field: &str) -> Result<PathBuf> {
    let ok = !field.is_empty() && !field.starts_with('.') && !field.contains(['/', '\\', '\0']);
    if !ok {
        return Err(EngineError::BadRequest(format!(
            "{field:?} cannot name an adapter (no path separators or leading dots)"
        )));
    }
    Ok(dir_of(c).join(format!("{field}.json")))
}

/// Writes `bytes` to `path` atomically and durably (temporary file, fsync, rename, fsync dir).
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
    let tmp = path.with_extension("json.tmp");
    let mut f = std::fs::File::create(&tmp).map_err(|e| io(&tmp, e))?;
    f.write_all(bytes).map_err(|e| io(&tmp, e))?;
    f.sync_all().map_err(|e| io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| io(path, e))?;
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io(dir, e))
}

impl AdapterInfo {
    /// Whether the map was fitted on the vectors `field` holds now.
    pub(crate) fn fits(&self, field: &quiver_storage::DenseField) -> bool {
        self.fitted_on.as_deref().unwrap_or(&self.field) == field.stored
    }
}

impl Collection {
    /// The stored query adapters, by field.
    pub fn adapters(&self) -> Vec<AdapterInfo> {
        let mut v: Vec<AdapterInfo> = self
            .adapters
            .read()
            .by_field
            .values()
            .map(|a| a.info.clone())
            .collect();
        v.sort_by(|a, b| a.field.cmp(&b.field));
        v
    }

    /// Stored adapter files that did not load (each message names its file).
    pub fn adapter_errors(&self) -> Vec<String> {
        self.adapters.read().errors.clone()
    }

    /// Removes the adapter of `field` (durably: the folder is synced); `false` when there was
    /// none.
    pub fn remove_adapter(&self, field: &str) -> Result<bool> {
        self.writable()?;
        let path = adapter_path(self, field)?;
        let removed = match std::fs::remove_file(&path) {
            Ok(()) => true,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
            Err(e) => return Err(io(&path, e)),
        };
        if removed {
            let dir = dir_of(self);
            std::fs::File::open(&dir)
                .and_then(|d| d.sync_all())
                .map_err(|e| io(&dir, e))?;
        }
        let mut set = self.adapters.write();
        let had = set.by_field.remove(field).is_some();
        let name = format!("{field}.json");
        set.errors.retain(|e| !e.contains(&name));
        Ok(removed || had)
    }

    /// Fits an adapter from `model`'s space to dense field `field`'s stored vectors and stores
    /// it (see the module docs). Bad input — an unknown field or model, a field with no text to
    /// embed, the relative kind, too few documents — fails before anything is stored.
    pub fn adapt(&self, field: &str, model: &str, opts: &AdaptOptions) -> Result<AdapterInfo> {
        self.writable()?;
        let schema = self.schema();
        let f = schema
            .dense(field)
            .ok_or_else(|| EngineError::BadRequest(format!("adapt: no dense field {field:?}")))?;
        if f.embedding.embed.is_empty() {
            return Err(EngineError::BadRequest(format!(
                "adapt: field {field:?} names no payload text (`embed`) to embed with {model:?}"
            )));
        }
        if schema.backfill.contains(field) {
            return Err(EngineError::BadRequest(format!(
                "adapt: field {field:?} is still being backfilled"
            )));
        }
        if opts.kind == Some(AdapterKind::Relative) {
            return Err(EngineError::BadRequest(
                "adapt: a relative adapter would need every stored vector re-described; store \
                 procrustes or ridge (`quiver eval --adapter` measures relative)"
                    .into(),
            ));
        }
        // The sample: stored vectors and the texts they came from.
        let snap = self.snapshot();
        let mut rows = Vec::new();
        snap.for_each_visible_loc(None, |_, loc| rows.push(loc));
        rows.shuffle(&mut rand::rngs::StdRng::seed_from_u64(opts.seed));
        let (mut texts, mut y) = (Vec::new(), Vec::new());
        for loc in rows {
            if texts.len() >= opts.sample {
                break;
            }
            let (s, r) = snap.place(loc);
            let seg = snap.segment(s);
            let Some(v) = seg
                .dense(field)
                .and_then(|d| d.vector(r).map(<[f32]>::to_vec))
            else {
                continue;
            };
            if let Ok(t) = crate::document::document_text(&f.embedding, &seg.payload(r)) {
                texts.push(t);
                y.extend_from_slice(&v);
            }
        }
        if texts.len() < 20 {
            return Err(EngineError::BadRequest(format!(
                "adapt: {} documents with text and a vector; at least 20 are needed",
                texts.len()
            )));
        }
        let x = self.embed_texts_by(model, &texts, true)?;
        let (d_in, d_out) = (x.len() / texts.len(), f.dim);
        // Fewer pairs than dimensions leave an orthogonal map free on the rest of the space
        // (held-out documents then map badly); ridge shrinks it towards zero there instead.
        let train = texts.len() - texts.len() / 10;
        let kind = opts.kind.unwrap_or(if d_in == d_out && train >= d_in {
            AdapterKind::Procrustes
        } else {
            AdapterKind::Ridge
        });
        if kind == AdapterKind::Procrustes && train < d_in {
            return Err(EngineError::BadRequest(format!(
                "adapt: procrustes needs at least {d_in} documents to fit on (the new model's \
                 dimension), {train} are available after holding out a tenth; use ridge, or a \
                 larger sample"
            )));
        }
        let fit = |x: &[f32], y: &[f32]| {
            Adapter::fit(kind, x, y, d_in, d_out)
                .map_err(|e| EngineError::BadRequest(format!("adapt: {e}")))
        };
        // Hold out every tenth document to measure the fit, then fit on all of them.
        let n = texts.len();
        let (mut xt, mut yt, mut xh, mut yh) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for i in 0..n {
            let (xi, yi) = (&x[i * d_in..(i + 1) * d_in], &y[i * d_out..(i + 1) * d_out]);
            if i % 10 == 9 {
                xh.extend_from_slice(xi);
                yh.extend_from_slice(yi);
            } else {
                xt.extend_from_slice(xi);
                yt.extend_from_slice(yi);
            }
        }
        let trial = fit(&xt, &yt)?;
        let holdout = xh.len() / d_in;
        let mut total = 0.0;
        for i in 0..holdout {
            let m = trial
                .map_query(&xh[i * d_in..(i + 1) * d_in])
                .map_err(|e| EngineError::BadRequest(format!("adapt: {e}")))?;
            let mut yi = yh[i * d_out..(i + 1) * d_out].to_vec();
            quiver_linalg::normalize(&mut yi);
            total += quiver_linalg::dot(&m, &yi) as f64;
        }
        let map = fit(&x, &y)?;
        let info = AdapterInfo {
            field: field.to_string(),
            model: model.to_string(),
            kind: kind.name().to_string(),
            d_in,
            d_out,
            lambda: map.lambda(),
            fitted_on: Some(f.stored.clone()),
            sample: n,
            holdout_cosine: total / holdout.max(1) as f64,
            holdout,
        };
        let stored = StoredAdapter {
            info: info.clone(),
            matrix: map.matrix().map(<[f32]>::to_vec).unwrap_or_default(),
        };
        let bytes = serde_json::to_vec(&stored)
            .map_err(|e| EngineError::BadRequest(format!("adapt: {e}")))?;
        write_atomic(&adapter_path(self, field)?, &bytes)?;
        self.adapters.write().by_field.insert(
            field.to_string(),
            Arc::new(QueryAdapter {
                info: info.clone(),
                map,
            }),
        );
        Ok(info)
    }

    /// `texts` embedded by `model` as they are (no prefix), row-major; with `bar`, progress
    /// goes to the collection's sink.
    #[cfg(feature = "embed")]
    pub(crate) fn embed_texts_by(
        &self,
        model: &str,
        texts: &[String],
        bar: bool,
    ) -> Result<Vec<f32>> {
        let progress = match bar {
            true => self.progress_sink(),
            false => Arc::new(quiver_storage::NoProgress),
        };
        progress.start("adapt", texts.len() as u64);
        let mut out = Vec::new();
        for chunk in texts.chunks(64) {
            let refs: Vec<&str> = chunk.iter().map(String::as_str).collect();
            let opts = quiver_embed::EmbedOptions::default();
            out.extend_from_slice(self.pool().embed_with(model, &refs, &opts)?.as_flat());
            progress.inc(chunk.len() as u64);
        }
        progress.finish();
        Ok(out)
    }

    #[cfg(not(feature = "embed"))]
    pub(crate) fn embed_texts_by(
        &self,
        model: &str,
        _texts: &[String],
        _bar: bool,
    ) -> Result<Vec<f32>> {
        Err(EngineError::BadRequest(format!(
            "model {model:?} cannot run: this build has no embedding (feature `embed`)"
        )))
    }

    /// Embeds the text of every dense source on a field with an adapter by the adapter's model
    /// and maps it into the field's space (the plan then carries the vector).
    pub(crate) fn apply_adapters(&self, schema: &Schema, plan: &mut Plan) -> Result<()> {
        let adapters = self.adapters.read().by_field.clone();
        if adapters.is_empty() {
            return Ok(());
        }
        for p in &mut plan.prefetch {
            let Source::Dense(d) = &mut p.source else {
                continue;
            };
            let Ok(f) = crate::request::dense_field(schema, d.field.as_deref(), d.text.is_some())
            else {
                continue; // the executor reports the missing field
            };
            let (name, dim) = (f.name.clone(), f.dim);
            // An adapter fitted on vectors the field no longer holds (its switch completed and
            // a crash came before the adapter's removal) is not applied.
            let adapter = adapters.get(&name).filter(|a| a.info.fits(&f));
            if let (Some(text), Some(a), None) = (&d.text, adapter, &d.vector) {
                if a.info.d_out != dim {
                    return Err(EngineError::BadRequest(format!(
                        "the adapter of {name:?} maps into {} dimensions but the field has {dim}; \
                         fit it again (`quiver adapt`) or remove it",
                        a.info.d_out
                    )));
                }
                let v = self.embed_texts_by(&a.info.model, std::slice::from_ref(text), false)?;
                let mapped = a
                    .map
                    .map_query(&v)
                    .map_err(|e| EngineError::BadRequest(format!("adapter of {name:?}: {e}")))?;
                d.vector = Some(mapped);
                d.text = None;
            }
        }
        Ok(())
    }
}
