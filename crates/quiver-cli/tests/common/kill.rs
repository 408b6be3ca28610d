//! SIGKILL a real `quiver` child process at a point its own output proves: the child runs with
//! `QUIVER_TEST_EVENTS=1`, so the storage layer and the engine print `quiver-event: NAME` lines
//! on stderr (seal-start/-end, compact-start/-end, bulk-segment, backfill-batch,
//! backfill-segment, install-start, install-written), and the events it printed before dying
//! say where the kill landed. JSON lines on stdout with an `acked` count (`ingest --ack`) say how
//! far an ingest had got.

use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// When to send the SIGKILL.
#[derive(Debug, Clone, Copy)]
pub enum KillAt {
    /// After this many milliseconds.
    Delay(u64),
    /// As soon as the child prints its `nth` (1-based) `quiver-event: <event>` line; if that
    /// never comes, when the child ends on its own.
    Event(&'static str, usize),
}

/// What one killed run left behind.
#[derive(Debug)]
pub struct Killed {
    /// The last `acked` count the child printed on stdout (0 if none).
    pub acked: usize,
    /// Every `quiver-event:` the child printed before it died, in order.
    pub events: Vec<String>,
    /// The child had already exited when the kill was due (the kill hit nothing).
    pub exited_first: bool,
}

impl Killed {
    /// How many times the child printed `event`.
    pub fn count(&self, event: &str) -> usize {
        self.events.iter().filter(|e| *e == event).count()
    }

    /// Whether a job that prints `START` and then `END` (or `<kind>-failed`) had started more
    /// often than it ended when the child died.
    pub fn between(&self, start: &str, end: &str) -> bool {
        self.count(start) > self.count(end)
    }

    /// Whether a job of `kind` (`seal` or `compact`) had started and not ended.
    pub fn running(&self, kind: &str) -> bool {
        let started = self.count(&format!("{kind}-start"));
        started > self.count(&format!("{kind}-end")) + self.count(&format!("{kind}-failed"))
    }
}

/// Spawns `cmd` with test events on, SIGKILLs it as `at` says, and reports what it printed.
pub fn spawn_then_kill(mut cmd: Command, at: KillAt) -> Killed {
    let mut child = cmd
        .env("QUIVER_TEST_EVENTS", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let stdout = child.stdout.take().expect("stdout");
    let stderr = child.stderr.take().expect("stderr");
    let acks = std::thread::spawn(move || {
        let mut last = 0usize;
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if let Ok(v) = serde_json::from_str::<Value>(&line) {
                if let Some(n) = v["acked"].as_u64() {
                    last = n as usize;
                }
            }
        }
        last
    });
    let (tx, rx) = mpsc::channel::<String>();
    let events = std::thread::spawn(move || {
        let mut all = Vec::new();
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if let Some(e) = line.strip_prefix("quiver-event: ") {
                all.push(e.to_string());
                let _ = tx.send(e.to_string());
            }
        }
        all
    });
    match at {
        KillAt::Delay(ms) => std::thread::sleep(Duration::from_millis(ms)),
        KillAt::Event(want, nth) => {
            let mut seen = 0;
            let deadline = Instant::now() + Duration::from_secs(120);
            while Instant::now() < deadline {
                match rx.recv_timeout(Duration::from_millis(100)) {
                    Ok(e) if e == want => {
                        seen += 1;
                        if seen == nth {
                            break;
                        }
                    }
                    Ok(_) | Err(mpsc::RecvTimeoutError::Timeout) => {}
                    Err(mpsc::RecvTimeoutError::Disconnected) => break, // the child ended
                }
            }
        }
    }
    let exited_first = matches!(child.try_wait(), Ok(Some(_)));
    let _ = child.kill(); // SIGKILL
    let _ = child.wait();
    Killed {
        acked: acks.join().expect("ack reader"),
        events: events.join().expect("event reader"),
        exited_first,
    }
}
