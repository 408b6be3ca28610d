//! [`ServerConfig`]: the address, API keys and limits of `quiver serve`, from the `[server]`
//! table of a TOML file, the environment (`QUIVER_API_KEY`, `QUIVER_READ_ONLY_API_KEY`) and
//! flags, in that order of precedence (a flag wins).

use serde::Deserialize;
use std::net::SocketAddr;
use std::time::Duration;

/// Why a configuration is refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file does not parse or has an unknown key.
    #[error("config: {0}")]
    Parse(String),
    /// A value is out of range or the combination is unsafe.
    #[error("config: {0}")]
    Invalid(String),
}

/// How the server runs. [`ServerConfig::default`] is loopback-only, no keys, 32 MiB bodies.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Where to listen.
    pub addr: SocketAddr,
    /// The read-write key (`QUIVER_API_KEY`).
    pub api_key: Option<String>,
    /// The read-only key (`QUIVER_READ_ONLY_API_KEY`): writes with it are refused with 403.
    pub read_only_api_key: Option<String>,
    /// Allow binding a non-loopback address with no key configured.
    pub allow_unauthenticated: bool,
    /// Largest request body in bytes (413 past it).
    pub body_limit_bytes: usize,
    /// Seconds a read may run before it is answered with 503 (writes always run to the end:
    /// an acknowledged write must be durable, and a cut one must not half-happen).
    pub timeout_seconds: f64,
    /// Largest `limit`, `offset`, `k`, `candidates` or scroll page.
    pub max_limit: usize,
    /// Most points (documents or ids) in one request.
    pub max_batch: usize,
    /// Most searches in one `query/batch` request.
    pub max_batch_queries: usize,
    /// Requests served at once; more are answered with 503 at once rather than queued.
    pub max_concurrency: usize,
    /// Origins allowed by CORS (empty: CORS off, browsers on other origins are refused).
    pub cors_origins: Vec<String>,
    /// The model TEI's `POST /embed` uses when a request names none.
    pub embed_model: String,
}

impl Default for ServerConfig {
    fn default() -> ServerConfig {
        ServerConfig {
            addr: SocketAddr::from(([127, 0, 0, 1], 6333)),
            api_key: None,
            read_only_api_key: None,
            allow_unauthenticated: false,
            body_limit_bytes: 32 << 20,
            timeout_seconds: 60.0,
            max_limit: 10_000,
            max_batch: 10_000,
            max_batch_queries: 256,
            max_concurrency: 256,
            cors_origins: Vec::new(),
            embed_model: "all-MiniLM-L6-v2".into(),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    server: ServerConfig,
}

impl ServerConfig {
    /// The `[server]` table of a TOML configuration (missing keys keep their defaults).
    pub fn from_toml(text: &str) -> Result<ServerConfig, ConfigError> {
        toml::from_str::<File>(text)
            .map(|f| f.server)
            .map_err(|e| ConfigError::Parse(e.to_string()))
    }

    /// Takes keys from `QUIVER_API_KEY` and `QUIVER_READ_ONLY_API_KEY` where set (non-empty).
    pub fn with_env_keys(mut self) -> ServerConfig {
        let var = |k| std::env::var(k).ok().filter(|v: &String| !v.is_empty());
        if let Some(k) = var("QUIVER_API_KEY") {
            self.api_key = Some(k);
        }
        if let Some(k) = var("QUIVER_READ_ONLY_API_KEY") {
            self.read_only_api_key = Some(k);
        }
        self
    }

    /// The read timeout.
    pub fn timeout(&self) -> Duration {
        Duration::from_secs_f64(self.timeout_seconds)
    }

    /// Whether any key is configured.
    pub fn has_keys(&self) -> bool {
        self.api_key.is_some() || self.read_only_api_key.is_some()
    }

    /// Refuses unsafe or meaningless settings: a non-loopback address with no key (unless
    /// `allow_unauthenticated`), empty keys, a read-only key equal to the read-write one, zero
    /// limits, a timeout that is not a positive number.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |m: &str| Err(ConfigError::Invalid(m.into()));
        if !self.addr.ip().is_loopback() && !self.has_keys() && !self.allow_unauthenticated {
            return Err(ConfigError::Invalid(format!(
                "{} is not a loopback address and no API key is set: set QUIVER_API_KEY (or \
                 api_key in [server]), or pass --allow-unauthenticated to serve it open",
                self.addr
            )));
        }
        if self.api_key.as_deref() == Some("") || self.read_only_api_key.as_deref() == Some("") {
            return bad("API keys must not be empty");
        }
        if self.api_key.is_some() && self.api_key == self.read_only_api_key {
            return bad("the read-only key must differ from the read-write key");
        }
        if !(self.timeout_seconds.is_finite() && self.timeout_seconds > 0.0) {
            return bad("timeout_seconds must be a positive number");
        }
        let limits = [
            ("body_limit_bytes", self.body_limit_bytes),
            ("max_limit", self.max_limit),
            ("max_batch", self.max_batch),
            ("max_batch_queries", self.max_batch_queries),
            ("max_concurrency", self.max_concurrency),
        ];
        if let Some((name, _)) = limits.iter().find(|(_, v)| *v == 0) {
            return Err(ConfigError::Invalid(format!("{name} must be at least 1")));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_keys_and_safety() {
        let c =
            ServerConfig::from_toml("[server]\naddr = \"0.0.0.0:7000\"\nmax_limit = 50\n").unwrap();
        assert_eq!(c.max_limit, 50);
        assert_eq!(c.body_limit_bytes, 32 << 20);
        // Open to the network without a key: refused.
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .contains("not a loopback"));
        let keyed = ServerConfig {
            api_key: Some("k".into()),
            ..c.clone()
        };
        keyed.validate().unwrap();
        let open = ServerConfig {
            allow_unauthenticated: true,
            ..c
        };
        open.validate().unwrap();
        assert!(ServerConfig::from_toml("[server]\nbogus = 1\n").is_err());
        ServerConfig::default().validate().unwrap();
        let same = ServerConfig {
            api_key: Some("k".into()),
            read_only_api_key: Some("k".into()),
            ..Default::default()
        };
        assert!(same.validate().is_err());
    }
}
