//! The collection's side of background maintenance (`maintenance.rs` has the threads' mailbox
//! and the merge policy): freezing a full mutable segment, sealing it, merging segments, each
//! written without the writer lock and installed in one short step under it; back-pressure on
//! writers; the threads' start and stop; garbage collection of what a new manifest no longer
//! names.

use super::*;
use quiver_index::Hnsw;

impl Collection {
    /// Seal on live rows, on bytes, or on all rows when the same ids are rewritten over and over.
    pub(super) fn is_full(&self, m: &MutableSegment) -> bool {
        self.reaches(m, 2)
    }

    /// The mutable segment's hard bound, half as much again as the seal trigger: a writer that
    /// finds it reached waits for the seal in flight.
    fn is_over_bound(&self, m: &MutableSegment) -> bool {
        self.reaches(m, 3)
    }

    /// Whether `m` reaches `halves`/2 of the seal trigger (2: the trigger, 3: the hard bound):
    /// live rows, bytes, or all rows (twice the live-row bound, for ids rewritten over and over).
    fn reaches(&self, m: &MutableSegment, halves: usize) -> bool {
        let schema = self.schema();
        let max = schema.mutable_max_rows;
        let bytes = schema.mutable_max_bytes * halves / 2;
        m.live_rows() >= max * halves / 2 || m.rows() >= max * halves || m.bytes() >= bytes
    }

    /// Back-pressure before a write of `batch` documents; returns the time it held the write.
    ///
    /// While a seal is in flight, writes are *paced*: rows written since the freeze may grow at
    /// most at the sealer's measured rate, so that the mutable segment reaches its seal trigger
    /// about when the seal ends; a write ahead of that curve sleeps (at most the time the sealer
    /// takes for `batch` rows) or until the seal ends. A write that finds the mutable segment
    /// over its hard bound (1.5x the trigger) waits for the seal, at most [`MAX_BACKPRESSURE`].
    /// So a fast writer sees many short delays instead of one stall per seal.
    pub(super) fn make_room(&self, batch: usize) -> Duration {
        let sealing = || self.current.load().version.sealing.is_some();
        // The common case first, with no lock taken: no seal in flight, nothing to pace against.
        // Then: read-only, or no thread to wait on (the write then seals inline).
        if !sealing() || self.writer.is_none() || !self.sealer.running() {
            return Duration::ZERO;
        }
        let over = || {
            let cur = self.current.load();
            cur.version.sealing.is_some() && self.is_over_bound(&cur.version.mutable)
        };
        if over() {
            // The seal may have failed and be waiting for a retry: ask for one.
            self.sealer.notify();
            let until = Instant::now() + MAX_BACKPRESSURE;
            return self.sealer.wait_while(over, until);
        }
        let Some(pace) = self.sealer.pace().filter(|_| sealing()) else {
            return Duration::ZERO;
        };
        let rows = self.current.load().version.mutable.live_rows();
        let delay = pace_delay(rows, batch, pace.secs_per_row, pace.frozen_at.elapsed());
        if delay.is_zero() {
            return Duration::ZERO;
        }
        self.sealer.wait_while(sealing, Instant::now() + delay)
    }

    /// Freezes the full mutable segment and hands it to the sealer thread; when none runs (its
    /// threads were stopped), seals it here.
    pub(super) fn seal_in_background(&self, w: &mut Writer) -> Result<(), StorageError> {
        if self.current.load().version.sealing.is_some() {
            // The previous seal is still running (or failed): ask again, or, with no sealer
            // thread, retry it here.
            if self.sealer.running() {
                self.sealer.notify();
                return Ok(());
            }
            return self.seal_here(w);
        }
        self.freeze_locked(w)?;
        if self.sealer.running() {
            self.sealer.notify();
            Ok(())
        } else {
            self.seal_here(w)
        }
    }

    /// Writes `data` as segment `name` (no lock held: the slow part of a seal or merge).
    pub(super) fn write_segment(
        &self,
        name: &str,
        data: SegmentData,
    ) -> Result<Arc<Segment>, StorageError> {
        let progress = self.progress.read().clone();
        let dir = self.dir.join("segments");
        Segment::write(&self.schema(), &dir, name, data, progress.as_ref()).map(Arc::new)
    }

    /// Freezes the mutable segment for sealing (writer lock held; no-op when it is empty or one
    /// is already being sealed): its rows stay in the current log generation, which the seal
    /// retires; new writes go to a new mutable segment and a new generation.
    pub(super) fn freeze_locked(&self, w: &mut Writer) -> Result<(), StorageError> {
        self.check_live()?;
        let snap = self.snapshot();
        if snap.version.mutable.rows() == 0 || snap.version.sealing.is_some() {
            return Ok(());
        }
        w.log = LogWriter::create(&self.dir, w.log.gen + 1)?;
        w.sealing_upto = snap.seq;
        let version = Version {
            segments: snap.version.segments.clone(),
            sealing: Some(snap.version.mutable.clone()),
            mutable: Arc::new(MutableSegment::new()),
        };
        self.publish(Arc::new(version), snap.seq);
        self.sealer.frozen();
        Ok(())
    }

    /// Seals the segment being sealed, if any (sealer job lock held): writes it without the
    /// writer lock, then installs it under the lock.
    pub(super) fn seal_sealing(&self) -> Result<(), StorageError> {
        self.check_live()?;
        let snap = self.snapshot();
        let Some(m) = snap.version.sealing.clone() else {
            return Ok(());
        };
        test_event("seal-start");
        let (started, t) = (SystemTime::now(), Instant::now());
        let live = sealing_rows(&m, snap.seq);
        let sealed = (|| {
            let seg = self.write_rows(&snap, &live, || Ok(reserve_name(&mut *self.writer()?)))?;
            self.install_sealed(&mut *self.writer()?, &m, snap.seq, seg)
        })();
        test_event(if sealed.is_ok() {
            "seal-end"
        } else {
            "seal-failed"
        });
        self.sealer.record(MaintenanceRecord {
            kind: "seal",
            started,
            duration: t.elapsed(),
            rows: live.len(),
            inputs: 0,
            reused_graph_rows: 0,
            ok: sealed.is_ok(),
        });
        self.sealer.sealed(sealed.is_ok().then_some(live.len()));
        sealed
    }

    /// Writes the rows at `locs` of `snap` as a segment named by `name` (`None` for no rows).
    fn write_rows(
        &self,
        snap: &Snapshot,
        locs: &[Loc],
        name: impl FnOnce() -> Result<String, StorageError>,
    ) -> Result<Option<Arc<Segment>>, StorageError> {
        if locs.is_empty() {
            return Ok(None);
        }
        let name = name()?;
        self.sealer.writing(locs.len());
        let data = self.gather(snap, locs);
        let progress = self.progress.read().clone();
        let counted = crate::maintenance::SealProgress {
            inner: progress.as_ref(),
            mailbox: &self.sealer,
        };
        let dir = self.dir.join("segments");
        Segment::write(&self.schema(), &dir, &name, data, &counted).map(|s| Some(Arc::new(s)))
    }

    /// Seals the segment being sealed with the writer lock held throughout (when no sealer
    /// thread runs).
    pub(super) fn seal_here(&self, w: &mut Writer) -> Result<(), StorageError> {
        let snap = self.snapshot();
        let Some(m) = snap.version.sealing.clone() else {
            return Ok(());
        };
        let live = sealing_rows(&m, snap.seq);
        let seg = self.write_rows(&snap, &live, || Ok(reserve_name(w)))?;
        self.install_sealed(w, &m, snap.seq, seg)?;
        self.sealer.sealed(Some(live.len()));
        Ok(())
    }

    /// Installs the sealed form `seg` of sealing segment `m`, gathered at sequence number `seen`
    /// (writer lock held): carries over the deletes and replacements of its rows made since,
    /// lists it in the manifest with the current log generation, publishes the version without
    /// the sealing segment (one pointer swap), and removes the retired log.
    pub(super) fn install_sealed(
        &self,
        w: &mut Writer,
        m: &MutableSegment,
        seen: u64,
        seg: Option<Arc<Segment>>,
    ) -> Result<(), StorageError> {
        if let Some(seg) = &seg {
            // Installed, or (on an error below) garbage.
            w.writing.remove(&seg.name);
        }
        self.check_live()?;
        let cur = self.snapshot();
        if !cur
            .version
            .sealing
            .as_ref()
            .is_some_and(|s| std::ptr::eq(&**s, m))
        {
            // Another path sealed `m` first (`flush` beside a write that sealed it inline):
            // this copy stays unlisted and is collected.
            return Ok(());
        }
        if let Some(e) = seg.as_ref().and_then(|s| s.errors().into_iter().next()) {
            return Err(e);
        }
        let mut manifest = w.manifest.clone();
        let mut segments = cur.version.segments.clone();
        if let Some(seg) = seg {
            for r in 0..m.rows() as u32 {
                if m.visible(r, seen) && !m.is_live(r) {
                    if let Some(row) = seg.find_row(m.id(r)) {
                        seg.mark_deleted(row, m.superseded_at(r));
                    }
                }
            }
            manifest.segments.push(seg.name.clone());
            segments.push(seg);
        }
        manifest.flushed_seq = w.sealing_upto;
        manifest.wal_gen = w.log.gen;
        self.write_manifest(w, manifest, &segments)?;
        let version = Version {
            segments,
            sealing: None,
            mutable: cur.version.mutable.clone(),
        };
        self.publish(Arc::new(version), cur.seq);
        self.collect_garbage(w)?;
        self.merger.notify();
        Ok(())
    }

    /// Persists the deletes of `segments` that changed, then writes `manifest` (which lists
    /// them) and makes it the writer's.
    pub(super) fn write_manifest(
        &self,
        w: &mut Writer,
        mut manifest: Manifest,
        segments: &[Arc<Segment>],
    ) -> Result<(), StorageError> {
        let persisted = &w.persisted;
        crate::recovery::persist_deletes(&self.dir, &mut manifest, segments, w.log.gen, |s, n| {
            persisted.get(&s.name) != Some(&n)
        })?;
        manifest::write(&self.dir, &manifest)?;
        w.manifest = manifest;
        w.persisted = segments
            .iter()
            .map(|s| (s.name.clone(), s.deleted_rows().count()))
            .collect();
        Ok(())
    }

    /// Merges sealed segments `inputs` of `snap` (merger job lock held): writes the merged
    /// segment without the writer lock, then installs it in their place.
    /// Merges `inputs` of `snap` into one segment; `background`: its index builds run on the
    /// merge pool (half the cores, lower priority), while installing it stays on this thread.
    pub(super) fn merge(
        &self,
        snap: &Snapshot,
        inputs: &[usize],
        background: bool,
    ) -> Result<(), StorageError> {
        self.check_live()?;
        if inputs.is_empty() {
            return Ok(());
        }
        test_event("compact-start");
        let (started, t) = (SystemTime::now(), Instant::now());
        let merged = self.merge_inputs(snap, inputs, background);
        test_event(if merged.is_ok() {
            "compact-end"
        } else {
            "compact-failed"
        });
        self.merger.record(MaintenanceRecord {
            kind: "merge",
            started,
            duration: t.elapsed(),
            rows: merged.as_ref().map_or(0, |m| m.0),
            inputs: inputs.len(),
            reused_graph_rows: merged.as_ref().map_or(0, |m| m.1),
            ok: merged.is_ok(),
        });
        merged.map(|_| ())
    }

    /// The last seals and merges (up to 256 of each), by start time.
    pub fn maintenance_history(&self) -> Vec<MaintenanceRecord> {
        let mut all = self.sealer.history();
        all.extend(self.merger.history());
        all.sort_by_key(|r| r.started);
        all
    }

    /// Writes and installs the merge of `inputs`; returns the rows merged and how many of them
    /// kept their graph links from the largest input.
    pub(super) fn merge_inputs(
        &self,
        snap: &Snapshot,
        inputs: &[usize],
        background: bool,
    ) -> Result<(usize, usize), StorageError> {
        let old: Vec<Arc<Segment>> = inputs
            .iter()
            .map(|&s| snap.version.segments[s].clone())
            .collect();
        // The largest input with every row visible keeps its graph: its rows go first, and the
        // merged segment's graph is that graph with the other inputs' rows inserted.
        let hnsw = self
            .schema()
            .dense_fields()
            .into_iter()
            .find(|f| f.index.hnsw_params().is_some());
        let base = hnsw.as_ref().and_then(|f| {
            inputs
                .iter()
                .copied()
                .filter(|&s| {
                    let seg = &snap.version.segments[s];
                    seg.rows() > 0
                        && (0..seg.rows() as u32).all(|r| seg.visible(r, snap.seq))
                        && seg.graph(&f.name).is_some()
                })
                .max_by_key(|&s| snap.version.segments[s].rows())
        });
        let mut reused = 0;
        let mut order: Vec<usize> = base.into_iter().collect();
        order.extend(inputs.iter().copied().filter(|&s| Some(s) != base));
        let rows: Vec<Loc> = order
            .iter()
            .flat_map(|&s| {
                let seg = &snap.version.segments[s];
                (0..seg.rows() as u32)
                    .filter(move |&r| seg.visible(r, snap.seq))
                    .map(move |r| Loc::Sealed(s, r))
            })
            .collect();
        let merged = match rows.is_empty() {
            true => None,
            false => {
                let mut data = self.gather(snap, &rows);
                // A damaged input is never rewritten into a valid-looking segment.
                if let Some(e) = old.iter().flat_map(|o| o.errors()).next() {
                    return Err(e);
                }
                if let (Some(s), Some(f)) = (base, &hnsw) {
                    let g = snap.version.segments[s].graph(&f.name);
                    // A copy: the input stays readable by snapshots that hold it.
                    data.base_graph = g.and_then(|g| Hnsw::from_bytes(&g.to_bytes()).ok());
                    reused = data.base_graph.as_ref().map_or(0, |g| g.capacity());
                }
                let name = reserve_name(&mut *self.writer()?);
                let write = || self.write_segment(&name, data);
                Some(
                    match crate::maintenance::merge_pool().filter(|_| background) {
                        Some(pool) => pool.install(write),
                        None => write(),
                    }?,
                )
            }
        };
        let mut w = self.writer()?;
        if let Some(seg) = &merged {
            w.writing.remove(&seg.name);
        }
        self.check_live()?;
        let cur = self.snapshot();
        // Inputs are found by identity: only merges (one at a time) remove segments.
        let is_input = |c: &Arc<Segment>| old.iter().any(|o| Arc::ptr_eq(c, o));
        if cur.version.segments.iter().filter(|c| is_input(c)).count() != old.len() {
            return Err(StorageError::Corrupt {
                file: self.dir.display().to_string(),
                msg: "a merge's input segments changed while it ran".into(),
            });
        }
        if let Some(seg) = &merged {
            // Rows deleted or replaced since the merge read them.
            for &loc in &rows {
                if let Loc::Sealed(s, r) = loc {
                    let input = &snap.version.segments[s];
                    if !input.is_live(r) {
                        if let Some(row) = seg.find_row(&input.id(r)) {
                            seg.mark_deleted(row, input.deleted_at(r));
                        }
                    }
                }
            }
        }
        let first = cur.version.segments.iter().position(&is_input);
        let mut segments = Vec::with_capacity(cur.version.segments.len());
        for (i, c) in cur.version.segments.iter().enumerate() {
            if Some(i) == first {
                segments.extend(merged.clone());
            }
            if !is_input(c) {
                segments.push(c.clone());
            }
        }
        self.install_segments(&mut w, &cur, segments, &old)?;
        Ok((rows.len(), reused))
    }

    /// Makes `segments` the sealed segments (writer lock held, `cur` taken under it): the
    /// manifest lists them, `replaced` are retired, the version is published, garbage collected.
    /// Snapshots taken before may still read the replaced segments (sections load lazily, by
    /// path): their directories stay until the last reference is gone.
    pub(super) fn install_segments(
        &self,
        w: &mut Writer,
        cur: &Snapshot,
        segments: Vec<Arc<Segment>>,
        replaced: &[Arc<Segment>],
    ) -> Result<(), StorageError> {
        let mut manifest = w.manifest.clone();
        manifest.segments = segments.iter().map(|s| s.name.clone()).collect();
        self.write_manifest(w, manifest, &segments)?;
        w.retired.retain(|(_, seg)| seg.strong_count() > 0);
        w.retired
            .extend(replaced.iter().map(|o| (o.name.clone(), Arc::downgrade(o))));
        let version = Version {
            segments,
            sealing: cur.version.sealing.clone(),
            mutable: cur.version.mutable.clone(),
        };
        self.publish(Arc::new(version), cur.seq);
        self.collect_garbage(w)
    }

    /// Starts the background sealer and merger (writable collections; called once the
    /// collection is shared). Without them (a thread failed to start, or they were stopped),
    /// seals run inside the write that fills the mutable segment.
    pub(crate) fn start_maintenance(self: &Arc<Self>) {
        if self.writer.is_none() {
            return;
        }
        for (kind, m) in [("seal", &self.sealer), ("merge", &self.merger)] {
            let weak: Weak<Collection> = Arc::downgrade(self);
            let mailbox = m.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("quiver-{kind}"))
                .spawn(move || {
                    // A seal asked for before the stop still runs (its segment is frozen
                    // already); merges asked for are left to a later open.
                    while mailbox.wait_for_work(kind == "seal") {
                        let Some(c) = weak.upgrade() else {
                            return;
                        };
                        // A panic in a job is reported like an error, and the thread lives on.
                        let job = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                            if kind == "seal" {
                                c.run_seal();
                            } else {
                                c.run_merges(true);
                            }
                        }));
                        if job.is_err() {
                            mailbox.set_error(format!("background {kind} panicked"));
                            mailbox.sealed(None);
                        }
                    }
                });
            if let Ok(h) = spawned {
                m.start(h);
            }
        }
    }

    /// Stops the background threads after their current job and waits for them.
    pub(crate) fn stop_maintenance(&self) {
        self.sealer.shutdown();
        self.merger.shutdown();
    }

    pub(super) fn run_seal(&self) {
        let _job = self.sealer.job.lock();
        if let Err(e) = self.seal_sealing() {
            if self.check_live().is_ok() {
                self.sealer.set_error(format!("background seal: {e}"));
            }
        }
    }

    /// Runs the merges the policy finds; `background`: on the merge pool (half the cores).
    pub(super) fn run_merges(&self, background: bool) {
        let _job = self.merger.job.lock();
        while !self.merger.stopping() && self.check_live().is_ok() {
            let snap = self.snapshot();
            // Segments still lacking a field being backfilled wait for the backfill.
            let eligible: Vec<usize> = (0..snap.version.segments.len())
                .filter(|&i| {
                    let s = &snap.version.segments[i];
                    snap.schema.backfill.iter().all(|f| s.has_field(f))
                })
                .collect();
            let sizes: Vec<SegmentSize> = eligible
                .iter()
                .map(|&i| {
                    let s = &snap.version.segments[i];
                    SegmentSize {
                        rows: s.rows(),
                        live: s.rows() - s.deleted_rows().count(),
                    }
                })
                .collect();
            let Some(picked) = plan_merge(&sizes) else {
                break;
            };
            let inputs: Vec<usize> = picked.iter().map(|&i| eligible[i]).collect();
            let merged = self.merge(&snap, &inputs, background);
            if let Err(e) = merged {
                if self.check_live().is_ok() {
                    self.merger.set_error(format!("background merge: {e}"));
                }
                break;
            }
        }
        // The merges' own snapshots are gone now: collect the inputs nobody else holds.
        if let Ok(w) = self.writer() {
            let _ = self.collect_garbage(&w);
        }
    }

    /// Removes segment directories the manifest does not list and logs before its `wal_gen`, if
    /// no read-only handle (in any process) holds the database; otherwise they stay until a later
    /// seal, compaction or open finds it unread.
    pub(super) fn collect_garbage(&self, w: &Writer) -> Result<(), StorageError> {
        let manifest = &w.manifest;
        let seg_dir = self.dir.join("segments");
        // Segments being written by a seal or merge that has not been installed are kept too, and
        // merged-away ones a snapshot still holds.
        let held = w
            .retired
            .iter()
            .filter(|(_, seg)| seg.strong_count() > 0)
            .map(|(name, _)| name);
        let listed: HashSet<&str> = manifest
            .segments
            .iter()
            .chain(&w.writing)
            .chain(held)
            .map(|s| s.as_str())
            .collect();
        let dir = &self.dir;
        self.readers.when_unread(|| {
            for entry in std::fs::read_dir(&seg_dir).map_err(io_err(&seg_dir))? {
                let entry = entry.map_err(io_err(&seg_dir))?;
                let n = entry.file_name().to_string_lossy().to_string();
                if !listed.contains(n.strip_suffix(".tmp").unwrap_or(&n)) {
                    let p = entry.path();
                    let r = if p.is_dir() {
                        std::fs::remove_dir_all(&p)
                    } else {
                        std::fs::remove_file(&p)
                    };
                    r.map_err(io_err(&p))?;
                }
            }
            let dd = crate::deletes::deletes_dir(dir);
            if dd.is_dir() {
                let kept: HashSet<&str> = manifest.deletes.values().map(|s| s.as_str()).collect();
                for entry in std::fs::read_dir(&dd).map_err(io_err(&dd))? {
                    let entry = entry.map_err(io_err(&dd))?;
                    if !kept.contains(entry.file_name().to_string_lossy().as_ref()) {
                        std::fs::remove_file(entry.path()).map_err(io_err(&entry.path()))?;
                    }
                }
            }
            for gen in crate::wal::generations(dir)? {
                if gen < manifest.wal_gen {
                    let p = crate::wal::log_path(dir, gen);
                    std::fs::remove_file(&p).map_err(io_err(&p))?;
                }
            }
            let redb = dir.join("wal.redb");
            if manifest.format >= 2 && redb.exists() {
                std::fs::remove_file(&redb).map_err(io_err(&redb))?;
            }
            Ok(())
        })?;
        Ok(())
    }
}

/// The next segment name (never reused, even if its write fails).
pub(super) fn reserve_name(w: &mut Writer) -> String {
    let name = format!("seg-{:016x}", w.manifest.next_segment);
    w.manifest.next_segment += 1;
    w.writing.insert(name.clone());
    name
}

/// The rows of sealing segment `m` visible at `seq`.
fn sealing_rows(m: &MutableSegment, seq: u64) -> Vec<Loc> {
    (0..m.rows() as u32)
        .filter(|&r| m.visible(r, seq))
        .map(Loc::Sealing)
        .collect()
}

/// How long to hold a write of `batch` rows onto a mutable segment of `rows` live rows, frozen
/// `since` ago for a seal that takes `secs_per_row`: rows written since the freeze grow no
/// faster than the sealer seals them (so the mutable segment holds about as many rows as the
/// segment being sealed when that seal ends), and no write waits longer than the sealer takes
/// for its own rows.
pub(super) fn pace_delay(
    rows: usize,
    batch: usize,
    secs_per_row: f64,
    since: Duration,
) -> Duration {
    let allowed_at = (rows + batch) as f64 * secs_per_row;
    let ahead = allowed_at - since.as_secs_f64();
    let cap = batch as f64 * secs_per_row;
    if !ahead.is_finite() || !cap.is_finite() {
        return Duration::ZERO;
    }
    Duration::from_secs_f64(ahead.clamp(0.0, cap.max(0.0)))
}

#[cfg(test)]
mod tests {
    use super::pace_delay;
    use std::time::Duration;

    #[test]
    fn pacing_holds_writes_to_the_sealers_rate() {
        let ms = |d: Duration| d.as_millis();
        // 1 ms per row: 1,000 rows written 0.5 s after the freeze are 0.5 s ahead, but one
        // write of 100 rows waits at most 100 ms.
        assert_eq!(
            ms(pace_delay(900, 100, 1e-3, Duration::from_millis(500))),
            100
        );
        // 1,000 rows 0.95 s after the freeze: 50 ms ahead.
        assert_eq!(
            ms(pace_delay(900, 100, 1e-3, Duration::from_millis(950))),
            50
        );
        // Behind the curve: no wait.
        assert_eq!(ms(pace_delay(100, 100, 1e-3, Duration::from_secs(1))), 0);
        // A nonsense rate never blocks.
        assert_eq!(ms(pace_delay(100, 100, f64::NAN, Duration::ZERO)), 0);
        assert_eq!(ms(pace_delay(100, 100, f64::INFINITY, Duration::ZERO)), 0);
    }
}
