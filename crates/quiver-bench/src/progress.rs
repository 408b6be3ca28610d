//! indicatif progress bars on stderr, drawn only when it is a terminal (or `QUIVER_PROGRESS=1`).

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;
use std::sync::Mutex;

/// Whether bars are drawn.
pub fn enabled() -> bool {
    std::env::var("QUIVER_PROGRESS")
        .map(|v| v == "1")
        .unwrap_or_else(|_| std::io::stderr().is_terminal())
}

/// A bar of `total` units with a label.
pub fn bar(label: &str, total: u64) -> ProgressBar {
    let target = if enabled() {
        ProgressDrawTarget::stderr()
    } else {
        ProgressDrawTarget::hidden()
    };
    let pb = ProgressBar::with_draw_target(Some(total), target);
    pb.set_style(
        ProgressStyle::with_template("{msg:>24} [{bar:40}] {pos}/{len} ({per_sec}, eta {eta})")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    pb.set_message(label.to_string());
    pb
}

/// Adapts the engine's progress events (embedding at upsert, index builds at seal) to bars.
#[derive(Default)]
pub struct Bars(Mutex<Option<ProgressBar>>);

impl Bars {
    /// No bar yet.
    pub fn new() -> Self {
        Bars::default()
    }
}

impl quiver::Progress for Bars {
    fn start(&self, label: &str, total: u64) {
        if let Ok(mut s) = self.0.lock() {
            *s = Some(bar(label, total));
        }
    }

    fn inc(&self, n: u64) {
        if let Ok(s) = self.0.lock() {
            if let Some(b) = s.as_ref() {
                b.inc(n);
            }
        }
    }

    fn finish(&self) {
        if let Ok(mut s) = self.0.lock() {
            if let Some(b) = s.take() {
                b.finish_and_clear();
            }
        }
    }
}
