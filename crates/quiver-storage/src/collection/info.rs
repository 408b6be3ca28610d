//! What a collection reports about itself: `collection info` (sizes, tiers, disk bytes) and
//! `collection verify` (every file checked).

use super::*;

impl Collection {
    /// Checks everything on disk: every file of every sealed segment against its checksum
    /// (memory-mapped vectors included), every section parsed, the manifest, the deletes files
    /// and the log. Returns every problem found, each naming its file (empty: all good).
    pub fn verify(&self) -> Vec<StorageError> {
        let snap = self.snapshot();
        let mut out: Vec<StorageError> = snap
            .version
            .segments
            .iter()
            .flat_map(|s| s.verify())
            .collect();
        match manifest::read(&self.dir) {
            Ok(m) => {
                for seg in &snap.version.segments {
                    if let Some(f) = m.deletes.get(&seg.name) {
                        if let Err(e) = crate::deletes::read(&self.dir, f, seg.rows()) {
                            out.push(e);
                        }
                    }
                }
                match crate::wal::generations(&self.dir) {
                    Ok(gens) => {
                        for g in gens.into_iter().filter(|&g| g >= m.wal_gen) {
                            if let Err(e) = crate::wal::read_log(&self.dir, g) {
                                out.push(e);
                            }
                        }
                    }
                    Err(e) => out.push(e),
                }
            }
            Err(e) => out.push(e),
        }
        out
    }

    /// Sizes and counts.
    pub fn info(&self) -> CollectionInfo {
        let snap = self.snapshot();
        let segments = snap
            .version
            .segments
            .iter()
            .map(|s| (s.name.clone(), s.rows(), s.visible_rows(snap.seq)))
            .collect::<Vec<_>>();
        let mutable_rows = snap
            .version
            .sealing
            .iter()
            .chain(std::iter::once(&snap.version.mutable))
            .map(|m| {
                (0..m.rows() as u32)
                    .filter(|&r| m.visible(r, snap.seq))
                    .count()
            })
            .sum();
        let sealed_live: usize = segments.iter().map(|s| s.2).sum();
        let documents = sealed_live + mutable_rows;
        let disk_bytes = dir_bytes(&self.dir);
        CollectionInfo {
            name: self.name.clone(),
            documents,
            mutable_rows,
            segments,
            graph_bytes: snap.version.segments.iter().map(|s| s.graph_bytes()).sum(),
            seq: snap.seq,
            wal_bytes: wal_disk_bytes(&self.dir),
            segment_bytes: snap.version.segments.iter().map(|s| s.disk_bytes()).sum(),
            backfill: self.backfill_info(),
            disk_bytes,
            disk_bytes_per_document: match documents {
                0 => 0.0,
                n => disk_bytes as f64 / n as f64,
            },
            multi: snap.multi_info(),
            dense: crate::tiers::dense_info(&snap),
        }
    }
}

/// Bytes of every file below `dir` (unreadable entries count 0).
fn dir_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => dir_bytes(&e.path()),
            Ok(_) => e.metadata().map_or(0, |m| m.len()),
            Err(_) => 0,
        })
        .sum()
}

/// Bytes of every log file of the collection in `dir`.
fn wal_disk_bytes(dir: &Path) -> u64 {
    crate::wal::generations(dir)
        .unwrap_or_default()
        .into_iter()
        .filter_map(|g| std::fs::metadata(crate::wal::log_path(dir, g)).ok())
        .map(|m| m.len())
        .sum()
}
