//! Compaction: a partition written by many batches (one file per batch that touched it) becomes one file, sorted
//! by (`nhs_number`, time, key) like every data file, with the rows of files that were never committed (a killed
//! or failed ingest's leftovers, invisible to every reader) left out.
//!
//! It is as crash-safe as ingest, and readers never see a partition half-compacted:
//! 1. the partition's committed rows are written, as one file, into a new folder under `_tmp/` and synced;
//! 2. that folder and the partition's folder are swapped in one atomic `renameat2(RENAME_EXCHANGE)`, so the
//!    partition's path holds either every old file or the one new file, never both and never neither;
//! 3. the old files, now under `_tmp/`, are deleted.
//!
//! A process killed before step 2 leaves only `_tmp/` debris (cleared by the next writer) and the old files in
//! place; killed after it, the compaction is done. Rows keep their `ingest_seq`, `source_file` and `source_line`,
//! so the latest-version views, de-duplication against the partition and provenance are unchanged. File names are
//! derived from the rows, as ingest's are, so compacting the same rows gives the same file.

use std::collections::BTreeSet;
use std::fs::{self, File};
use std::path::{Path, PathBuf};

use chrono::NaiveDate;
use polars::prelude::*;
use rayon::prelude::*;
use serde::Serialize;

use super::manifest::Manifest;
use super::{
    create_private_dir, fault_point, parquet_files, part_file_name, private_file, sync_dir,
    write_parquet_sorted, Result, Store, StoreError, TMP_DIR,
};
use crate::schema::{self, Kind};

/// What a compaction did.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct CompactReport {
    /// Partitions rewritten.
    pub partitions: u64,
    /// Files in those partitions before, and after.
    pub files_before: u64,
    pub files_after: u64,
    /// Rows in those partitions that every reader sees, kept.
    pub rows: u64,
    /// Rows of files that were never committed (invisible to every reader), removed.
    pub invisible_rows_removed: u64,
}

impl CompactReport {
    fn add(&mut self, o: &CompactReport) {
        self.partitions += o.partitions;
        self.files_before += o.files_before;
        self.files_after += o.files_after;
        self.rows += o.rows;
        self.invisible_rows_removed += o.invisible_rows_removed;
    }
}

/// Every partition folder of the store, with its kind and date, in a stable order.
fn partitions(root: &Path) -> Result<Vec<(Kind, NaiveDate, PathBuf)>> {
    let mut out = Vec::new();
    for kind in Kind::ALL {
        let dir = root.join(kind.name());
        let entries = match fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(source) => return Err(StoreError::Io { path: dir, source }),
        };
        for entry in entries {
            let entry = entry.map_err(|source| StoreError::Io {
                path: dir.clone(),
                source,
            })?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(date) = name
                .strip_prefix("date=")
                .and_then(|d| NaiveDate::parse_from_str(d, "%Y-%m-%d").ok())
            else {
                continue;
            };
            out.push((kind, date, entry.path()));
        }
    }
    out.sort();
    Ok(out)
}

/// Which partitions to compact.
#[derive(Debug, Clone, Copy)]
pub struct Which {
    /// Those holding at least this many data files (at least 2).
    pub min_files: usize,
    /// Also those holding rows of files that were never committed, whatever their number of files (this reads
    /// every file's `ingest_seq` column).
    pub invisible: bool,
}

/// Whether any file holds a row whose `ingest_seq` is not committed.
fn has_invisible_rows(files: &[PathBuf], committed: &BTreeSet<i64>) -> Result<bool> {
    for path in files {
        let df = super::read_part_columns(path, &[schema::INGEST_SEQ])?;
        let seqs = df
            .column(schema::INGEST_SEQ)
            .and_then(|c| c.i64().cloned())
            .map_err(|source| StoreError::Read {
                path: path.clone(),
                source,
            })?;
        if seqs
            .iter()
            .any(|s| !s.is_some_and(|s| committed.contains(&s)))
        {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Compacts the partitions `which` names, both cores at work on different partitions. The store must be open for
/// writing (its lock held).
pub fn compact(store: &Store, which: Which) -> Result<CompactReport> {
    let committed = Manifest::load(store.root())?.committed();
    let min_files = which.min_files.max(2);
    let mut todo = Vec::new();
    for (kind, date, dir) in partitions(store.root())? {
        let files = parquet_files(&dir)?;
        if files.len() >= min_files
            || (which.invisible && !files.is_empty() && has_invisible_rows(&files, &committed)?)
        {
            todo.push((kind, date, dir, files));
        }
    }
    let results: Vec<Result<CompactReport>> = todo
        .par_iter()
        .map(|(kind, date, dir, files)| {
            compact_partition(store, &committed, *kind, *date, dir, files)
        })
        .collect();
    let mut report = CompactReport::default();
    for r in results {
        report.add(&r?);
    }
    Ok(report)
}

fn compact_partition(
    store: &Store,
    committed: &BTreeSet<i64>,
    kind: Kind,
    date: NaiveDate,
    dir: &Path,
    files: &[PathBuf],
) -> Result<CompactReport> {
    let read_err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| StoreError::Read { path, source }
    };
    // The stored column order, whatever order a file has.
    let order: Vec<String> = kind
        .stored_schema()
        .iter_names()
        .map(|n| n.to_string())
        .collect();
    let mut all: Option<DataFrame> = None;
    for path in files {
        let file = File::open(path).map_err(|source| StoreError::Io {
            path: path.clone(),
            source,
        })?;
        let df = ParquetReader::new(file)
            .finish()
            .and_then(|df| df.select(order.iter().cloned()))
            .map_err(read_err(path))?;
        match &mut all {
            None => all = Some(df),
            Some(a) => {
                a.vstack_mut_owned(df).map_err(read_err(path))?;
            }
        }
    }
    let Some(all) = all else {
        return Ok(CompactReport::default());
    };
    let before = all.height() as u64;
    let visible: BooleanChunked = all
        .column(schema::INGEST_SEQ)
        .and_then(|c| c.i64().cloned())
        .map_err(read_err(dir))?
        .iter()
        .map(|s| Some(s.is_some_and(|s| committed.contains(&s))))
        .collect();
    let kept = all.filter(&visible).map_err(read_err(dir))?;
    let kept = kept
        .sort(
            kind.sort_columns(),
            SortMultipleOptions::default().with_maintain_order(true),
        )
        .map_err(read_err(dir))?;
    let rows = kept.height() as u64;

    // 1. The new partition folder, under _tmp/, with one file (none if no row is visible).
    let staging = store
        .root()
        .join(TMP_DIR)
        .join(format!("compact-{}-{date}", kind.name()));
    if staging.exists() {
        fs::remove_dir_all(&staging).map_err(|source| StoreError::Write {
            path: staging.clone(),
            source,
        })?;
    }
    create_private_dir(&staging)?;
    if rows > 0 {
        let keys = kept
            .column(kind.key_column())
            .and_then(|c| c.str().cloned())
            .map_err(read_err(dir))?;
        let name = part_file_name(kind, date, keys.iter().map(|k| k.unwrap_or_default()));
        let path = staging.join(name);
        let write_err = |source| StoreError::Write {
            path: path.clone(),
            source,
        };
        let mut f = private_file(&path, true).map_err(write_err)?;
        write_parquet_sorted(&mut f, &kept, &path, &kind.sort_columns())?;
        f.sync_all().map_err(write_err)?;
    }
    sync_dir(&staging);
    fault_point();
    // 2. The swap: the partition's path now holds the new folder; the old one is at `staging`.
    exchange(&staging, dir)?;
    if let Some(parent) = dir.parent() {
        sync_dir(parent);
    }
    sync_dir(&store.root().join(TMP_DIR));
    fault_point();
    // 3. The old files go.
    fs::remove_dir_all(&staging).map_err(|source| StoreError::Write {
        path: staging.clone(),
        source,
    })?;
    Ok(CompactReport {
        partitions: 1,
        files_before: files.len() as u64,
        files_after: u64::from(rows > 0),
        rows,
        invisible_rows_removed: before - rows,
    })
}

/// Swaps two folders atomically.
#[cfg(target_os = "linux")]
fn exchange(a: &Path, b: &Path) -> Result<()> {
    use rustix::fs::{renameat_with, RenameFlags, CWD};
    renameat_with(CWD, a, CWD, b, RenameFlags::EXCHANGE).map_err(|e| StoreError::Write {
        path: b.to_path_buf(),
        source: std::io::Error::other(format!(
            "cannot swap in the compacted partition (this file system may not support an atomic exchange of \
             folders): {e}"
        )),
    })
}

#[cfg(not(target_os = "linux"))]
fn exchange(_a: &Path, b: &Path) -> Result<()> {
    Err(StoreError::Write {
        path: b.to_path_buf(),
        source: std::io::Error::other("compaction needs Linux (an atomic exchange of folders)"),
    })
}
