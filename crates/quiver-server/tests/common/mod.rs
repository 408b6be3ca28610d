//! A real server on a random loopback port, in this process, and a blocking reqwest client.

#![allow(dead_code)]

use quiver_server::ServerConfig;
use reqwest::blocking::Client;
use reqwest::Method;
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::thread::JoinHandle;

pub struct Server {
    pub base: String,
    pub addr: SocketAddr,
    pub client: Client,
    /// Headers sent with every request (an API key).
    pub key: Option<(String, String)>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
    pub dir: tempfile::TempDir,
}

impl Server {
    /// Starts a server over a fresh database with `config` (its address is ignored).
    pub fn start(config: ServerConfig) -> Server {
        Server::start_in(tempfile::tempdir().unwrap(), config)
    }

    /// Starts a server over the database in `dir`.
    pub fn start_in(dir: tempfile::TempDir, config: ServerConfig) -> Server {
        let db = quiver::Database::open(dir.path()).unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (tx, rx) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                tx.send(l.local_addr().unwrap()).unwrap();
                quiver_server::serve_on(l, db, config, async move {
                    let _ = stopped.await;
                })
                .await
                .unwrap();
            });
        });
        let addr = rx.recv().unwrap();
        Server {
            base: format!("http://{addr}"),
            addr,
            client: Client::builder().build().unwrap(),
            key: None,
            stop: Some(stop),
            thread: Some(thread),
            dir,
        }
    }

    /// Sends `body` (raw bytes, as JSON) with `method` to `path`; returns status and JSON body.
    pub fn raw(&self, method: Method, path: &str, body: Option<Vec<u8>>) -> (u16, Value) {
        let mut r = self
            .client
            .request(method.clone(), format!("{}{path}", self.base));
        if let Some((k, v)) = &self.key {
            r = r.header(k.as_str(), v.as_str());
        }
        if let Some(b) = body {
            r = r.header("content-type", "application/json").body(b);
        }
        let resp = r.send().unwrap();
        let status = resp.status().as_u16();
        let text = resp.text().unwrap();
        let v = serde_json::from_str(&text).unwrap_or_else(|_| json!({"not_json": text}));
        (status, v)
    }

    pub fn call(&self, method: Method, path: &str, body: Option<Value>) -> (u16, Value) {
        self.raw(method, path, body.map(|b| serde_json::to_vec(&b).unwrap()))
    }

    /// A call that must succeed: its `result`.
    pub fn ok(&self, method: Method, path: &str, body: Option<Value>) -> Value {
        let (s, v) = self.call(method.clone(), path, body);
        assert_eq!(s, 200, "{method} {path}: {v}");
        assert_eq!(v["status"], "ok", "{v}");
        assert!(v["time"].as_f64().is_some(), "{v}");
        v["result"].clone()
    }

    /// A call that must fail with `status` and a JSON error; returns the message.
    pub fn err(&self, method: Method, path: &str, body: Option<Value>, status: u16) -> String {
        let (s, v) = self.call(method.clone(), path, body);
        Self::is_error(s, &v, status, &format!("{method} {path}"))
    }

    pub fn is_error(s: u16, v: &Value, status: u16, what: &str) -> String {
        assert_eq!(s, status, "{what}: {v}");
        let msg = v["status"]["error"]
            .as_str()
            .unwrap_or_else(|| panic!("{what}: no JSON error: {v}"));
        assert!(v["time"].as_f64().is_some(), "{v}");
        msg.to_string()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A seeded generator (xorshift64*), so failures can be replayed from the printed seed.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    pub fn f32(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0
    }
    pub fn vector(&mut self, dim: usize) -> Vec<f32> {
        (0..dim).map(|_| self.f32()).collect()
    }
}

pub fn normalized(v: &[f32]) -> Vec<f32> {
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    v.iter().map(|x| x / n).collect()
}

pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

pub fn floats(v: &Value) -> Vec<f32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect()
}
