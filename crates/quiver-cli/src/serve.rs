//! `quiver serve`: the HTTP server (`quiver-server`) over one database, until SIGINT or
//! SIGTERM; then in-flight requests finish and the database closes.

use anyhow::{Context, Result};
use clap::Args;
use quiver_server::ServerConfig;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// Address to listen on (default 127.0.0.1:6333, or `addr` in the config file); port 0
    /// picks a free port (the address is printed).
    #[arg(long)]
    pub addr: Option<SocketAddr>,
    /// TOML file with a `[server]` table (keys, limits; see `quiver_server::ServerConfig`).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Serve a non-loopback address with no API key configured.
    #[arg(long)]
    pub allow_unauthenticated: bool,
}

/// The configuration: file, then `QUIVER_API_KEY` / `QUIVER_READ_ONLY_API_KEY`, then flags.
fn config(a: &ServeArgs) -> Result<ServerConfig> {
    let mut c = match &a.config {
        Some(p) => {
            let text = std::fs::read_to_string(p)
                .with_context(|| format!("reading config {}", p.display()))?;
            ServerConfig::from_toml(&text).with_context(|| format!("config {}", p.display()))?
        }
        None => ServerConfig::default(),
    }
    .with_env_keys();
    if let Some(addr) = a.addr {
        c.addr = addr;
    }
    c.allow_unauthenticated |= a.allow_unauthenticated;
    c.validate()?;
    Ok(c)
}

/// Resolves when SIGINT or SIGTERM arrives.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}

pub fn run(db: &Path, as_json: bool, a: ServeArgs) -> Result<()> {
    let config = config(&a)?;
    init_logging();
    let database = crate::ops::open_db(db)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("quiver-http")
        .build()
        .context("starting the async runtime")?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(config.addr)
            .await
            .with_context(|| format!("binding {}", config.addr))?;
        let addr = listener.local_addr()?;
        if as_json {
            println!(
                "{}",
                serde_json::json!({"listening": format!("http://{addr}"), "db": db})
            );
        } else {
            eprintln!(
                "quiver serve: listening on http://{addr} (database {})",
                db.display()
            );
        }
        let config = ServerConfig { addr, ..config };
        quiver_server::serve_on(listener, database, config, shutdown_signal()).await?;
        eprintln!("quiver serve: stopped");
        anyhow::Ok(())
    })
}

/// Request logs to standard error, one line per request; level from `QUIVER_LOG` (default
/// `info`; e.g. `QUIVER_LOG=warn` quiets them).
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("QUIVER_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .try_init();
}
