//! Background maintenance: *who seals and merges segments while writes keep being acknowledged?*
//!
//! ```text
//!   upsert ─► log (fdatasync) ─► publish ─► mutable full? ─► freeze: its rows stay in log gen g,
//!                                                            new writes go to gen g+1; notify
//!   maintenance thread (one per writable collection, holds the job lock while it works):
//!     seal:  write the frozen rows as a segment (no writer lock) ─► install under the writer
//!            lock: carry deletes made meanwhile, manifest (segment, flushed_seq, wal_gen = g+1),
//!            publish (one pointer swap), remove log g
//!     merge: while the policy finds segments to merge: write the merged segment (no writer
//!            lock) ─► install the same way (inputs out, merged in, deletes carried)
//!   while a seal is in flight, writes are paced: rows written since the freeze may grow at
//!   most at the sealer's measured rate (seconds per row of recent seals), and a writer that
//!   finds the mutable segment over 1.5x its bound waits for the seal (back-pressure; the
//!   delay is reported in `WriteReport::waited`).
//! ```
//!
//! The merge policy is size-tiered (in the spirit of tantivy's `LogMergePolicy`): segments are
//! grouped into tiers by live rows, a factor of [`MERGE_FACTOR`] apart, and [`MERGE_FACTOR`]
//! segments of one tier merge into one of the next, so each document is rewritten about
//! `log_MERGE_FACTOR(N / TIER_FLOOR)` times, not once per merge; a segment whose dead rows pass
//! [`REWRITE_DEAD_FRACTION`] is rewritten alone. Background merges build on half the cores
//! ([`merge_pool`]), so the seals writers may be waiting on keep the rest. A merge extends the
//! graph of its largest fully live input instead of building one from nothing.

use crate::segment_write::Progress;
use parking_lot::{Condvar, Mutex};
use serde::Serialize;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

/// Jobs kept in a collection's maintenance history.
const HISTORY: usize = 256;

/// One finished seal or merge, for `Collection::maintenance_history`.
#[derive(Debug, Clone, Serialize)]
pub struct MaintenanceRecord {
    /// `seal` or `merge`.
    pub kind: &'static str,
    /// When it started (wall clock).
    pub started: SystemTime,
    /// How long it ran.
    pub duration: Duration,
    /// Rows written into the new segment.
    pub rows: usize,
    /// Segments it replaced (0 for a seal).
    pub inputs: usize,
    /// Rows whose graph links came from an input's graph (a merge extends the graph of its
    /// largest input when every row of it is live; 0 when built from nothing).
    pub reused_graph_rows: usize,
    /// Whether it succeeded.
    pub ok: bool,
}

/// Segments of one tier merged together.
pub(crate) const MERGE_FACTOR: usize = 8;
/// Live rows below which every segment is in the lowest tier.
pub(crate) const TIER_FLOOR: usize = 1_000;
/// A segment whose dead (deleted or replaced) rows reach this fraction is rewritten alone.
pub(crate) const REWRITE_DEAD_FRACTION: f64 = 0.3;

/// One sealed segment as the policy sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SegmentSize {
    /// Rows, live or not.
    pub rows: usize,
    /// Rows visible now.
    pub live: usize,
}

/// The tier of a segment of `live` rows: 0 below `TIER_FLOOR·MERGE_FACTOR`, then one per factor.
pub(crate) fn tier(live: usize) -> u32 {
    let mut t = 0;
    let mut bound = TIER_FLOOR * MERGE_FACTOR;
    while live >= bound {
        t += 1;
        bound = bound.saturating_mul(MERGE_FACTOR);
    }
    t
}

/// The segments (indices into `segs`) to merge next, or `None`: first a segment whose dead rows
/// passed the threshold (alone), else the `MERGE_FACTOR` smallest segments of the lowest tier
/// that holds at least that many.
pub(crate) fn plan_merge(segs: &[SegmentSize]) -> Option<Vec<usize>> {
    let dead = segs.iter().position(|s| {
        s.rows > 0 && (s.rows - s.live.min(s.rows)) as f64 >= REWRITE_DEAD_FRACTION * s.rows as f64
    });
    if let Some(i) = dead {
        return Some(vec![i]);
    }
    let mut by_tier: std::collections::BTreeMap<u32, Vec<usize>> = Default::default();
    for (i, s) in segs.iter().enumerate() {
        by_tier.entry(tier(s.live)).or_default().push(i);
    }
    by_tier.into_values().find_map(|mut members| {
        if members.len() < MERGE_FACTOR {
            return None;
        }
        members.sort_by_key(|&i| (segs[i].live, i));
        members.truncate(MERGE_FACTOR);
        members.sort_unstable();
        Some(members)
    })
}

/// The threads background merges build on: half the cores (at least one), at a lower CPU
/// priority ([`lower_thread_priority`]), so a merge never takes the cores a seal (and with it
/// the writers paced by that seal) needs. Seals and explicit `compact` calls use rayon's global
/// pool. `None` if the pool could not be built (merges then use the global pool).
pub(crate) fn merge_pool() -> Option<&'static rayon::ThreadPool> {
    static POOL: std::sync::OnceLock<Option<rayon::ThreadPool>> = std::sync::OnceLock::new();
    POOL.get_or_init(|| {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        rayon::ThreadPoolBuilder::new()
            .num_threads((cores / 2).max(1))
            .thread_name(|i| format!("quiver-merge-{i}"))
            .start_handler(|_| lower_thread_priority())
            .build()
            .ok()
    })
    .as_ref()
}

/// Nice value of the merge pool's threads: the scheduler gives seals, writers and queries the
/// cores first and merges what is left (as RocksDB lowers its compaction threads). The merger
/// thread itself, which takes the writer lock to install a merge, keeps its priority.
const MERGE_NICE: i32 = 10;

/// Lowers the calling thread's CPU priority to [`MERGE_NICE`] (Linux; elsewhere a no-op). A
/// failure leaves the priority as it was: merges then only compete on equal terms.
pub(crate) fn lower_thread_priority() {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: `gettid` takes no arguments and cannot fail; `setpriority` with PRIO_PROCESS
        // and a thread id changes only that thread's nice value (Linux semantics) and reads no
        // memory of ours. Its result is deliberately ignored (see above).
        unsafe {
            let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
            libc::setpriority(libc::PRIO_PROCESS, tid, MERGE_NICE);
        }
    }
}

#[derive(Default)]
struct State {
    /// Work was asked for since the thread last looked.
    pending: bool,
    shutdown: bool,
    /// The last background failure, reported by the next write.
    error: Option<String>,
    /// When the segment being sealed now was frozen.
    frozen_at: Option<Instant>,
    /// Seconds per row of recent seals, freeze to install (moving average), for pacing.
    secs_per_row: Option<f64>,
    /// The seal being written now: when it started and its rows.
    writing: Option<(Instant, usize)>,
}

/// The sealer's pace as writers see it: when the segment now being sealed was frozen, and how
/// long a seal takes per row lately.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SealPace {
    pub frozen_at: Instant,
    pub secs_per_row: f64,
}

/// The maintenance thread's mailbox and the job lock.
#[derive(Default)]
pub(crate) struct Maintenance {
    state: Mutex<State>,
    cv: Condvar,
    /// Held for the whole of a seal or merge (the thread, `flush`, `compact`).
    pub(crate) job: Mutex<()>,
    thread: Mutex<Option<JoinHandle<()>>>,
    history: Mutex<VecDeque<MaintenanceRecord>>,
    /// Units of index build done and started in the seal being written (see [`SealProgress`]).
    build_done: AtomicU64,
    build_total: AtomicU64,
}

/// The [`Progress`] of a seal: counts its index-build units for pacing writers and passes
/// everything on to the collection's own progress.
pub(crate) struct SealProgress<'a> {
    pub inner: &'a dyn Progress,
    pub mailbox: &'a Maintenance,
}

impl Progress for SealProgress<'_> {
    fn start(&self, label: &str, total: u64) {
        self.mailbox.build_total.fetch_add(total, Ordering::Relaxed);
        self.inner.start(label, total);
    }
    fn inc(&self, n: u64) {
        self.mailbox.build_done.fetch_add(n, Ordering::Relaxed);
        self.inner.inc(n);
    }
    fn finish(&self) {
        self.inner.finish();
    }
}

impl Maintenance {
    /// Asks the thread to look for work.
    pub(crate) fn notify(&self) {
        self.state.lock().pending = true;
        self.cv.notify_all();
    }

    /// A mutable segment was frozen for sealing now.
    pub(crate) fn frozen(&self) {
        self.state.lock().frozen_at = Some(Instant::now());
    }

    /// A seal ended (installed when `rows` is `Some`): updates the pace and wakes writers
    /// waiting for it.
    pub(crate) fn sealed(&self, rows: Option<usize>) {
        let mut s = self.state.lock();
        if let (Some(rows), Some(t)) = (rows.filter(|&r| r > 0), s.frozen_at) {
            let spr = t.elapsed().as_secs_f64() / rows as f64;
            s.secs_per_row = Some(match s.secs_per_row {
                Some(old) => 0.5 * old + 0.5 * spr,
                None => spr,
            });
        }
        if rows.is_some() {
            s.frozen_at = None;
        }
        s.writing = None;
        self.cv.notify_all();
    }

    /// A seal of `rows` rows starts writing.
    pub(crate) fn writing(&self, rows: usize) {
        self.build_done.store(0, Ordering::Relaxed);
        self.build_total.store(0, Ordering::Relaxed);
        self.state.lock().writing = Some((Instant::now(), rows));
    }

    /// The pace of the seal now running: measured on that seal once a twentieth of its index
    /// build is done (so a slowdown, say a merge taking cores, shows at once), else the recent
    /// seals' average; `None` before any measure.
    pub(crate) fn pace(&self) -> Option<SealPace> {
        let s = self.state.lock();
        let frozen_at = s.frozen_at?;
        let (done, total) = (
            self.build_done.load(Ordering::Relaxed),
            self.build_total.load(Ordering::Relaxed),
        );
        let live = s
            .writing
            .filter(|_| total > 0 && done * 20 >= total)
            .map(|(t, rows)| {
                t.elapsed().as_secs_f64() / (rows.max(1) as f64 * done as f64 / total as f64)
            });
        Some(SealPace {
            frozen_at,
            secs_per_row: live.or(s.secs_per_row)?,
        })
    }

    /// Waits for work; `false` when the collection is closing, unless work was asked for before
    /// and `finish_pending` (the sealer: a frozen segment is sealed before the thread stops).
    pub(crate) fn wait_for_work(&self, finish_pending: bool) -> bool {
        let mut s = self.state.lock();
        while !s.pending && !s.shutdown {
            self.cv.wait(&mut s);
        }
        let pending = std::mem::take(&mut s.pending);
        !s.shutdown || (pending && finish_pending)
    }

    /// Waits while `blocked()` holds and `until` has not passed (checked again at each wake-up,
    /// and every 50 ms in case a wake was missed), unless the job failed (its error is pending)
    /// or the thread is stopping; returns how long it waited. `blocked` must not lock this
    /// mailbox.
    pub(crate) fn wait_while(&self, blocked: impl Fn() -> bool, until: Instant) -> Duration {
        let t = Instant::now();
        let mut s = self.state.lock();
        loop {
            let now = Instant::now();
            if now >= until || !blocked() || s.shutdown || s.error.is_some() {
                break;
            }
            self.cv
                .wait_for(&mut s, (until - now).min(Duration::from_millis(50)));
        }
        t.elapsed()
    }

    /// Records a finished job.
    pub(crate) fn record(&self, r: MaintenanceRecord) {
        let mut h = self.history.lock();
        if h.len() == HISTORY {
            h.pop_front();
        }
        h.push_back(r);
    }

    /// The last jobs, oldest first.
    pub(crate) fn history(&self) -> Vec<MaintenanceRecord> {
        self.history.lock().iter().cloned().collect()
    }

    pub(crate) fn set_error(&self, e: String) {
        self.state.lock().error = Some(e);
        self.cv.notify_all();
    }

    pub(crate) fn take_error(&self) -> Option<String> {
        self.state.lock().error.take()
    }

    pub(crate) fn start(&self, handle: JoinHandle<()>) {
        *self.thread.lock() = Some(handle);
    }

    /// Whether a thread serves this mailbox.
    pub(crate) fn running(&self) -> bool {
        let alive = self
            .thread
            .lock()
            .as_ref()
            .is_some_and(|h| !h.is_finished());
        alive && !self.stopping()
    }

    /// Whether the collection is closing.
    pub(crate) fn stopping(&self) -> bool {
        self.state.lock().shutdown
    }

    /// Stops the thread after its current job and waits for it (unless called from it).
    pub(crate) fn shutdown(&self) {
        self.state.lock().shutdown = true;
        self.cv.notify_all();
        let handle = self.thread.lock().take();
        if let Some(h) = handle {
            if h.thread().id() != std::thread::current().id() {
                let _ = h.join();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sizes(live: &[usize]) -> Vec<SegmentSize> {
        live.iter()
            .map(|&l| SegmentSize { rows: l, live: l })
            .collect()
    }

    #[test]
    fn tiers_are_a_factor_apart() {
        assert_eq!(tier(0), 0);
        assert_eq!(tier(TIER_FLOOR * MERGE_FACTOR - 1), 0);
        assert_eq!(tier(TIER_FLOOR * MERGE_FACTOR), 1);
        assert_eq!(tier(TIER_FLOOR * MERGE_FACTOR * MERGE_FACTOR), 2);
    }

    #[test]
    fn merges_a_full_tier_only() {
        assert_eq!(plan_merge(&sizes(&[500; 7])), None);
        assert_eq!(plan_merge(&sizes(&[500; 8])), Some((0..8).collect()));
        // A big segment is left alone while small ones merge.
        let mut s = vec![200_000];
        s.extend([3_000; 8]);
        assert_eq!(plan_merge(&sizes(&s)), Some((1..9).collect()));
        // The smallest members of the tier go first.
        let s = [900, 100, 800, 200, 700, 300, 600, 400, 500];
        assert_eq!(plan_merge(&sizes(&s)), Some((1..9).collect()));
    }

    #[test]
    fn a_segment_with_many_dead_rows_is_rewritten_alone() {
        let s = [
            SegmentSize {
                rows: 1000,
                live: 1000,
            },
            SegmentSize {
                rows: 1000,
                live: 650,
            },
        ];
        assert_eq!(plan_merge(&s), Some(vec![1]));
        let s = [SegmentSize {
            rows: 1000,
            live: 750,
        }];
        assert_eq!(plan_merge(&s), None);
    }

    /// Each document is rewritten O(log N) times: simulate 1,000 seals of 2,000 rows.
    #[test]
    fn rewrites_grow_logarithmically() {
        let mut segs: Vec<SegmentSize> = Vec::new();
        let mut written = 0usize;
        for _ in 0..1000 {
            segs.push(SegmentSize {
                rows: 2000,
                live: 2000,
            });
            written += 2000;
            while let Some(m) = plan_merge(&segs) {
                let rows: usize = m.iter().map(|&i| segs[i].live).sum();
                written += rows;
                for &i in m.iter().rev() {
                    segs.remove(i);
                }
                segs.push(SegmentSize { rows, live: rows });
            }
        }
        let total = 2_000_000f64;
        let per_doc = written as f64 / total;
        println!(
            "{} segments, each document written {per_doc:.2} times",
            segs.len()
        );
        // log_8(2e6 / 1e3) ≈ 3.7 tiers above the first write.
        assert!(per_doc < 1.0 + 4.0, "{per_doc}");
        assert!(segs.len() <= 4 * MERGE_FACTOR);
    }
}
