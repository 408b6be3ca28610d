//! Bulk load: *a first load of many documents, without the mutable segment's round trip.*
//!
//! ```text
//!   seal what is pending ─► validate the whole input ─► sealed segments of `segment_rows` rows,
//!   each built on every core, never logged ─► one manifest lists them (deletes of the rows they
//!   replace written first) ─► publish
//! ```
//!
//! A crash before the manifest names the new segments leaves the collection as it was; they are
//! unlisted and collected on the next open.

use super::jobs::reserve_name;
use super::*;

impl Collection {
    /// Loads `docs` straight into new sealed segments of up to `segment_rows` rows each,
    /// bypassing the write-ahead log and the mutable segment, and lists them all in one
    /// manifest write. Validation is the same as [`Collection::upsert`]'s (the whole input is
    /// checked before anything is written; an id may appear once). Ids already in the
    /// collection are replaced. Other writes, seals and merges wait for the whole load. Durable
    /// when this returns.
    pub fn bulk_load(
        &self,
        docs: Vec<Document>,
        segment_rows: usize,
    ) -> Result<WriteReport, StorageError> {
        // Lock order: seal job, merge job, writer.
        let _seal = self.sealer.job.lock();
        let _merge = self.merger.job.lock();
        let mut w = self.writer()?;
        // Everything written before is sealed first, so `flushed_seq` can cover the load.
        self.seal_here(&mut w)?;
        self.freeze_locked(&mut w)?;
        self.seal_here(&mut w)?;
        let prepared = self.prepare(docs)?;
        let n = prepared.len() as u64;
        if n == 0 {
            return Ok(WriteReport::plain(0, w.next_seq - 1));
        }
        let seq0 = w.next_seq;
        let last = seq0 + n - 1;
        let snap = self.snapshot();
        // The rows these documents replace (everything is sealed now).
        let replaced: Vec<(Loc, u64)> = prepared
            .iter()
            .enumerate()
            .filter_map(|(i, (id, _))| snap.find(id).map(|loc| (loc, seq0 + i as u64)))
            .collect();
        let mut written: Vec<Arc<Segment>> = Vec::new();
        let mut rows = prepared.into_iter().enumerate().peekable();
        while rows.peek().is_some() {
            let mut data = self.empty_data();
            for (i, (id, doc)) in rows.by_ref().take(segment_rows.max(1)) {
                data.ids.push(id);
                data.seqs.push(seq0 + i as u64);
                data.payloads.push(doc.payload);
                for (name, store) in data.vectors.iter_mut() {
                    if let Some(v) = doc.vectors.get(name) {
                        store.extend_from_slice(v);
                    }
                }
                crate::multi::push_row(&mut data.multi, &doc.multi, &doc.multi_raw);
            }
            let name = reserve_name(&mut w);
            written.push(self.write_segment(&name, data)?);
            test_event("bulk-segment");
        }
        for seg in &written {
            w.writing.remove(&seg.name);
        }
        // Deletes files of the segments whose rows are replaced, written before the manifest
        // names the new segments; nothing in memory changes until that manifest is durable.
        let mut manifest = w.manifest.clone();
        let mut marks: HashMap<usize, Vec<u32>> = HashMap::new();
        for (loc, _) in &replaced {
            if let Loc::Sealed(s, r) = *loc {
                marks.entry(s).or_default().push(r);
            }
        }
        for (&s, new) in &marks {
            let seg = &snap.version.segments[s];
            let mut all: Vec<u32> = seg.deleted_rows().chain(new.iter().copied()).collect();
            all.sort_unstable();
            all.dedup();
            let file = crate::deletes::write(
                &self.dir,
                &seg.name,
                w.log.gen,
                seg.rows(),
                all.into_iter(),
            )?;
            manifest.deletes.insert(seg.name.clone(), file);
        }
        let mut segments = snap.version.segments.clone();
        segments.extend(written.iter().cloned());
        manifest.segments = segments.iter().map(|s| s.name.clone()).collect();
        manifest.flushed_seq = last;
        manifest::write(&self.dir, &manifest)?;
        // Durable: now the replaced rows stop being visible from `last` on, with the new ones.
        w.manifest = manifest;
        w.next_seq = last + 1;
        for (loc, seq) in replaced {
            Self::supersede(&snap.version, loc, seq);
        }
        w.persisted = segments
            .iter()
            .map(|s| (s.name.clone(), s.deleted_rows().count()))
            .collect();
        let version = Version::new(segments, snap.version.mutable.clone());
        self.publish(Arc::new(version), last);
        self.collect_garbage(&w)?;
        self.merger.notify();
        Ok(WriteReport::plain(n as usize, last))
    }
}
