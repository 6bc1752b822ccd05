//! Ingest: input files in, validated canonical rows into the store, bad rows into the quarantine, and an account
//! of every row: `read = stored + duplicates + quarantined` for every file.
//!
//! Memory is bounded by `ingest.batch_rows` and by the rows of one partition day, not by the file: rows are
//! validated into columns a batch at a time, a file larger than one batch is spilled to disk by day, and each day is
//! then de-duplicated against what its partition already holds, sorted, and written in slices of `batch_rows` (see
//! [`Batcher`]). The files written depend only on the rows, so a re-run after a crash rewrites exactly the same
//! files.

mod columns;
pub mod csv;
pub mod fhir;
mod fhir_map;
pub mod rows;
mod spill;
pub mod validate;

use std::fs::File;
use std::io::{self, Read, Seek};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use ::csv::ByteRecord;
use chrono::{DateTime, NaiveDate, SecondsFormat, Utc};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use polars::prelude::*;
use serde::Serialize;
use sha2::{Digest, Sha256};

use self::columns::{AuditColumns, Chunk};
use self::csv::{detect_kind, ColumnIndex, CsvSource, Next};
use self::rows::{Fields, RowError};
use crate::config::Config;
use crate::records::{AuditEvent, Provenance, StoredRecord};
use crate::schema::{self, Kind};
use crate::store::manifest::{Manifest, ManifestEntry};
use crate::store::{Store, StoreError};

/// The longest raw line the quarantine keeps; the rest is cut and marked, so a hostile line cannot bloat the store.
pub const MAX_RAW_BYTES: usize = 64 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot build a batch for the store: {0}")]
    Frame(#[from] PolarsError),
    #[error("cannot build a batch for the store: {0}")]
    Columns(String),
}

/// What the caller asks of an ingest.
#[derive(Debug, Clone, Default)]
pub struct IngestOptions {
    /// The kind of every file, or `None` to recognise each file by its header.
    pub kind: Option<Kind>,
    /// Process files the manifest says are already ingested (their rows then count as duplicates).
    pub reingest: bool,
    /// Show a progress bar on stderr when it is a terminal.
    pub progress: bool,
}

#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
pub struct Counts {
    pub read: u64,
    pub stored: u64,
    pub duplicates: u64,
    pub quarantined: u64,
}

impl Counts {
    /// The promise of every ingest: each row read is stored, a duplicate, or quarantined.
    pub fn balanced(&self) -> bool {
        self.read == self.stored + self.duplicates + self.quarantined
    }

    fn add(&mut self, o: &Counts) {
        self.read += o.read;
        self.stored += o.stored;
        self.duplicates += o.duplicates;
        self.quarantined += o.quarantined;
    }
}

#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum FileStatus {
    /// Read to the end; every row accounted for.
    Ingested,
    /// The manifest already holds a file with the same content and kind; not read again.
    AlreadyIngested,
    /// Not read: the whole file breaks the contract (no header, a required column missing, kind unknown).
    Refused,
    /// Not an input: a file the folder search found that is known not to be one (a lone FHIR resource that is not
    /// an AuditEvent).
    Skipped,
    /// Reading stopped part way (an I/O or decompression error). Rows stored before the failure stay; a re-run
    /// completes the file without duplicates.
    Failed,
}

#[derive(Debug, Clone, Serialize)]
pub struct FileReport {
    pub path: String,
    pub kind: Option<Kind>,
    pub sha256: Option<String>,
    pub status: FileStatus,
    #[serde(flatten)]
    pub counts: Counts,
    /// Header columns that no contract column uses (ignored).
    pub unknown_columns: Vec<String>,
    /// Why a file was refused or failed, or which earlier ingest already holds it.
    pub message: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct IngestReport {
    pub store: String,
    pub files: Vec<FileReport>,
    pub totals: Counts,
    /// `read = stored + duplicates + quarantined` over every file that was read to the end.
    pub balanced: bool,
    /// Set when the store itself could not be written (a full disk, a lost mount): ingest stopped at that file, and
    /// a nightly run must stop too rather than report on a store it could not finish.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub store_error: Option<String>,
    /// Partitions compacted after the files were ingested (see `ingest.compact_at_files`), when any were.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub compacted: Option<crate::store::compact::CompactReport>,
}

impl IngestReport {
    pub fn has_problem_files(&self) -> bool {
        self.files
            .iter()
            .any(|f| matches!(f.status, FileStatus::Refused | FileStatus::Failed))
    }
}

/// One file to ingest: where it is, and the name its rows carry as `source_file` (its path inside the folder it
/// was found in, or its file name), so the store's content does not depend on where the inbox lives.
#[derive(Debug, Clone)]
pub struct InputFile {
    pub path: PathBuf,
    pub name: String,
}

/// Ingests files and folders (folders are searched for `.csv` and `.csv.gz` files, in name order).
pub fn ingest(
    config: &Config,
    paths: &[PathBuf],
    opts: &IngestOptions,
) -> Result<IngestReport, IngestError> {
    let store = Store::open_for_write(&config.store)?;
    let mut manifest = Manifest::load(store.root())?;
    let mut files = Vec::new();
    let mut store_error = None;
    for input in expand_inputs(paths) {
        let report = match input {
            Ok(input) => match ingest_file(&store, &mut manifest, config, &input, opts) {
                Ok(report) => report,
                // The store cannot be written (a full disk, a lost mount): this file fails, naming what could not
                // be written, and no further file is tried; the report of the files before it still stands.
                Err(e) => {
                    let mut failed = refused(&input.path, None, None, format!("{e}"));
                    failed.status = FileStatus::Failed;
                    failed.message = Some(format!(
                        "the store could not be written, so this and any later files were not ingested: {e}"
                    ));
                    files.push(failed);
                    store_error = Some(e.to_string());
                    break;
                }
            },
            Err((path, message)) => refused(&path, None, None, message),
        };
        tracing::info!(
            file = %report.path,
            kind = report.kind.map(Kind::name).unwrap_or("-"),
            status = ?report.status,
            read = report.counts.read,
            stored = report.counts.stored,
            duplicates = report.counts.duplicates,
            quarantined = report.counts.quarantined,
            "file done"
        );
        files.push(report);
    }
    // Partitions that many batches wrote to become one file each. The files above are committed whatever happens
    // here; a failure is the store's, like a failed write.
    let mut compacted = None;
    if store_error.is_none() && config.compact_at_files > 0 {
        match crate::store::compact::compact(
            &store,
            crate::store::compact::Which {
                min_files: config.compact_at_files,
                invisible: false,
            },
        ) {
            Ok(r) if r.partitions > 0 => {
                tracing::info!(
                    partitions = r.partitions,
                    files_before = r.files_before,
                    files_after = r.files_after,
                    "compacted"
                );
                compacted = Some(r);
            }
            Ok(_) => {}
            Err(e) => store_error = Some(format!("compacting the store after ingest: {e}")),
        }
    }
    let mut totals = Counts::default();
    for f in &files {
        totals.add(&f.counts);
    }
    let balanced = files
        .iter()
        .filter(|f| f.status == FileStatus::Ingested)
        .all(|f| f.counts.balanced());
    Ok(IngestReport {
        store: config.store.display().to_string(),
        files,
        totals,
        balanced,
        store_error,
        compacted,
    })
}

/// The input files named by the arguments, in a stable order; an argument that names nothing is an error entry.
pub fn expand_inputs(paths: &[PathBuf]) -> Vec<Result<InputFile, (PathBuf, String)>> {
    let mut out = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for p in paths {
        if p.is_dir() {
            let mut found = Vec::new();
            let mut links = Vec::new();
            if let Err(e) = walk(p, &mut found, &mut links) {
                out.push(Err((p.clone(), format!("cannot list folder: {e}"))));
            }
            found.sort();
            links.sort();
            for link in links {
                out.push(Err((
                    link,
                    "a symbolic link: links inside a folder are not followed (one could lead to a file outside it); \
                     name the file itself, or move it into the folder"
                        .into(),
                )));
            }
            for f in found {
                if seen.insert(f.clone()) {
                    let name = f.strip_prefix(p).unwrap_or(&f).display().to_string();
                    out.push(Ok(InputFile { path: f, name }));
                }
            }
        } else if p.is_file() {
            if seen.insert(p.clone()) {
                let name = p
                    .file_name()
                    .map(|n| n.to_string_lossy().to_string())
                    .unwrap_or_default();
                out.push(Ok(InputFile {
                    path: p.clone(),
                    name,
                }));
            }
        } else {
            out.push(Err((p.clone(), "no such file or folder".into())));
        }
    }
    out
}

/// Lists a folder's input files, depth first. Symbolic links are not followed (a link loop cannot recur, a link
/// cannot reach outside the folder); those that look like inputs or lead to folders are returned in `links`.
fn walk(dir: &Path, found: &mut Vec<PathBuf>, links: &mut Vec<PathBuf>) -> io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().to_lowercase())
            .unwrap_or_default();
        if name.starts_with('.') {
            continue;
        }
        let kind = entry.file_type()?;
        if kind.is_symlink() {
            if path.is_dir() || is_input_file_name(&name) {
                links.push(path);
            }
        } else if kind.is_dir() {
            walk(&path, found, links)?;
        } else if kind.is_file() && is_input_file_name(&name) {
            found.push(path);
        }
    }
    Ok(())
}

/// A path as shown in summaries and logs: control characters (a newline in a file name could forge an output
/// line) are written as escapes.
pub fn shown(path: &Path) -> String {
    escape_controls(&path.display().to_string())
}

/// Text from a file (a file name, a header cell) made safe to print: control characters, which could forge an
/// output line or drive the terminal (an escape sequence), are written as escapes.
pub fn escape_controls(text: &str) -> String {
    text.chars()
        .flat_map(|c| {
            if c.is_control() {
                c.escape_default().collect::<Vec<_>>()
            } else {
                vec![c]
            }
        })
        .collect()
}

/// Which file names a folder search picks up.
pub fn is_input_file_name(lower_name: &str) -> bool {
    let name = lower_name.strip_suffix(".gz").unwrap_or(lower_name);
    [".csv", ".json", ".ndjson", ".xml"]
        .iter()
        .any(|ext| name.ends_with(ext))
}

fn skipped(path: &Path, kind: Option<Kind>, sha: String, message: String) -> FileReport {
    FileReport {
        status: FileStatus::Skipped,
        ..refused(path, kind, Some(sha), message)
    }
}

fn refused(path: &Path, kind: Option<Kind>, sha: Option<String>, message: String) -> FileReport {
    FileReport {
        path: shown(path),
        kind,
        sha256: sha,
        status: FileStatus::Refused,
        counts: Counts::default(),
        unknown_columns: Vec::new(),
        message: Some(message),
    }
}

fn ingest_file(
    store: &Store,
    manifest: &mut Manifest,
    config: &Config,
    input: &InputFile,
    opts: &IngestOptions,
) -> Result<FileReport, IngestError> {
    let path = input.path.as_path();
    let sha = match sha256_file(path) {
        Ok(s) => s,
        Err(e) => return Ok(refused(path, None, None, format!("cannot read file: {e}"))),
    };
    let fail = |kind, message| Ok(refused(path, kind, Some(sha.clone()), message));
    let progress = progress_bar(path, opts.progress);
    let counter = progress.clone();
    // Every byte the readers take from the file is hashed as it goes by, so what is recorded under `sha` is what
    // was read (a file rewritten or cut short while it is read is caught before the manifest commits it).
    let digest = Arc::new(Mutex::new(ReadDigest::default()));
    let on_read = {
        let digest = digest.clone();
        move |bytes: &[u8]| {
            counter.inc(bytes.len() as u64);
            if let Ok(mut d) = digest.lock() {
                d.hasher.update(bytes);
                d.bytes += bytes.len() as u64;
            }
        }
    };

    // FHIR or CSV, by content.
    let head = match read_head(path) {
        Ok(h) => h,
        Err(e) => return fail(None, format!("cannot read file: {e}")),
    };
    let layout = fhir::sniff(&head);
    let (kind, plan) = match layout {
        Some(layout) => {
            if opts.kind.is_some_and(|k| k != Kind::Audit) {
                return fail(
                    opts.kind,
                    "this is FHIR, which carries audit events only; use --kind audit or auto"
                        .into(),
                );
            }
            (Kind::Audit, Plan::Fhir(layout))
        }
        None => {
            if let Some(encoding) = wide_encoding(&head) {
                return fail(
                    None,
                    format!(
                        "the file is {encoding} text, not UTF-8: export or save it as UTF-8 (CSV UTF-8) and send it again"
                    ),
                );
            }
            let source = match CsvSource::open(path, on_read.clone()) {
                Ok(s) => s,
                Err(e) => return fail(None, format!("cannot read file: {e}")),
            };
            if source.headers.is_empty() {
                return fail(None, "the file is empty: there is no header row".into());
            }
            let Some(kind) = opts.kind.or_else(|| detect_kind(&source.headers, config)) else {
                return fail(
                    None,
                    "the header matches no input kind (audit, entries, appointments, proxies): name the kind with --kind, \
                     or map the export's column names in the config's [columns.<kind>] section"
                        .into(),
                );
            };
            let index = match ColumnIndex::new(kind, &source.headers, config) {
                Ok(ix) => ix,
                Err(e) => return fail(Some(kind), e),
            };
            (kind, Plan::Csv(Box::new((source, index))))
        }
    };
    if !opts.reingest {
        if let Some(previous) = manifest.find(&sha, kind) {
            progress.finish_and_clear();
            return Ok(FileReport {
                path: shown(path),
                kind: Some(kind),
                sha256: Some(sha.clone()),
                status: FileStatus::AlreadyIngested,
                counts: Counts::default(),
                unknown_columns: Vec::new(),
                message: Some(format!(
                    "the same content was ingested at {} (manifest entry {})",
                    previous.ingested_at, previous.seq
                )),
            });
        }
    }
    // The sequence is recorded before any row is written, so a kill or a failure never lets other content reuse it.
    let seq = manifest.begin(&sha, kind);
    manifest.save(store)?;
    let mut visible = manifest.committed();
    visible.insert(seq);
    let ctx = FileContext {
        store,
        config,
        kind,
        sha: &sha,
        visible: &visible,
        provenance: Provenance {
            ingest_seq: seq,
            source_file: input.name.clone(),
        },
    };
    let mut unknown_columns = Vec::new();
    let (counts, failure) = match plan {
        Plan::Csv(csv_plan) => {
            let (mut source, index) = *csv_plan;
            unknown_columns = index.unknown.iter().map(|c| escape_controls(c)).collect();
            match kind {
                Kind::Audit => load_audit(&ctx, &index, &mut source)?,
                Kind::Entries => load_rows(&ctx, &index, &mut source, rows::record_entry)?,
                Kind::Appointments => load_rows(&ctx, &index, &mut source, rows::appointment)?,
                Kind::Proxies => load_rows(&ctx, &index, &mut source, rows::proxy_link)?,
            }
        }
        Plan::Fhir(layout) => {
            let reader = match csv::open_maybe_gzip(path, on_read) {
                Ok(r) => r,
                Err(e) => return fail(Some(kind), format!("cannot read file: {e}")),
            };
            let (counts, failure) = load_fhir(&ctx, reader, layout)?;
            if let Some(what) = failure
                .as_deref()
                .and_then(|f| f.strip_prefix(fhir::NOT_AN_EVENT))
            {
                progress.finish_and_clear();
                return Ok(skipped(
                    path,
                    Some(kind),
                    sha.clone(),
                    format!("a lone FHIR {what} resource, not an AuditEvent: passed over"),
                ));
            }
            (counts, failure)
        }
    };
    progress.finish_and_clear();
    let failure = match failure {
        Some(f) => Some(f),
        None => read_matches(path, &sha, &digest).err(),
    };
    let status = if failure.is_some() {
        FileStatus::Failed
    } else {
        FileStatus::Ingested
    };
    if status == FileStatus::Ingested {
        manifest.commit(ManifestEntry {
            seq,
            path: shown(path),
            sha256: sha.clone(),
            kind,
            read: counts.read,
            stored: counts.stored,
            duplicates: counts.duplicates,
            quarantined: counts.quarantined,
            ingested_at: Utc::now().to_rfc3339_opts(SecondsFormat::Secs, true),
        });
        manifest.save(store)?;
    }
    Ok(FileReport {
        path: shown(path),
        kind: Some(kind),
        sha256: Some(sha),
        status,
        counts,
        unknown_columns,
        message: failure,
    })
}

/// How a file will be read.
enum Plan {
    Csv(Box<(CsvSource, ColumnIndex)>),
    Fhir(fhir::Layout),
}

/// The file's first 64 KiB after any gzip: enough to recognise FHIR content (JSON, NDJSON, XML) or a wide text
/// encoding; anything else is read as CSV.
fn read_head(path: &Path) -> io::Result<Vec<u8>> {
    let mut head = vec![0u8; 64 * 1024];
    let mut reader = csv::open_maybe_gzip(path, |_| {})?;
    let mut filled = 0;
    while filled < head.len() {
        let n = reader.read(&mut head[filled..])?;
        if n == 0 {
            break;
        }
        filled += n;
    }
    head.truncate(filled);
    Ok(head)
}

/// A wide text encoding, by its byte-order mark or by NUL bytes among the first characters (UTF-16 without a mark):
/// text every reader here would misread, so it is named rather than mistaken for a header that matches nothing.
fn wide_encoding(head: &[u8]) -> Option<&'static str> {
    let start = &head[..head.len().min(64)];
    if start.starts_with(&[0xff, 0xfe, 0, 0]) || start.starts_with(&[0, 0, 0xfe, 0xff]) {
        Some("UTF-32")
    } else if start.starts_with(&[0xff, 0xfe]) || start.starts_with(&[0xfe, 0xff]) {
        Some("UTF-16")
    } else if start.len() >= 4 && start.contains(&0) {
        Some("UTF-16 (no byte-order mark)")
    } else {
        None
    }
}

struct FileContext<'a> {
    store: &'a Store,
    config: &'a Config,
    kind: Kind,
    sha: &'a str,
    /// The sequences whose rows count for de-duplication: the committed ones and this file's own.
    visible: &'a std::collections::BTreeSet<i64>,
    provenance: Provenance,
}

impl FileContext<'_> {
    fn encode_error(&self, message: String) -> IngestError {
        IngestError::Columns(message)
    }
}

/// A quarantined row on its way to the store.
struct QuarantinedRow {
    line: i64,
    column: Option<&'static str>,
    reason: String,
    raw: String,
}

/// Validated rows on their way to the store, with the quarantine alongside; counts every row read.
///
/// Chunks of columns are buffered until a batch of `ingest.batch_rows` valid rows is full. A file of one batch (the
/// common nightly case) goes straight to the store when it ends; a larger one is spilled by day a batch at a time
/// (see [`spill`]) and written day by day when it ends. Either way each day's rows, in file order, are
/// de-duplicated against what its partition already holds (the first copy of a key wins), sorted and written in
/// slices of `ingest.batch_rows`, so the files written depend on the rows, not on how they arrived; and the key
/// digests held are those of the days being written, not of every day the file touches.
struct Batcher<'c> {
    ctx: &'c FileContext<'c>,
    counts: Counts,
    chunks: Vec<Chunk>,
    n_buffered: usize,
    quarantine: Vec<QuarantinedRow>,
    quarantine_batches: usize,
    /// The file's rows by day, once it has had a full batch.
    spill: Option<spill::SpillWriter>,
}

impl<'c> Batcher<'c> {
    fn new(ctx: &'c FileContext<'c>) -> Self {
        Batcher {
            ctx,
            counts: Counts::default(),
            chunks: Vec::new(),
            n_buffered: 0,
            quarantine: Vec::new(),
            quarantine_batches: 0,
            spill: None,
        }
    }

    /// How many more valid rows the batch takes before it is spilled: a batch is exactly `ingest.batch_rows`
    /// valid rows (the last one of a file fewer), however the rows arrive.
    fn room(&self) -> usize {
        self.ctx
            .config
            .batch_rows
            .saturating_sub(self.n_buffered)
            .max(1)
    }

    /// Valid rows read: spilled by day when the batch is full.
    fn stored(&mut self, chunk: Chunk) -> Result<(), IngestError> {
        self.counts.read += chunk.len() as u64;
        self.n_buffered += chunk.len();
        if chunk.len() > 0 {
            self.chunks.push(chunk);
        }
        if self.n_buffered >= self.ctx.config.batch_rows {
            self.spill_batch()?;
        }
        Ok(())
    }

    fn spill_batch(&mut self) -> Result<(), IngestError> {
        let chunks = std::mem::take(&mut self.chunks);
        self.n_buffered = 0;
        if chunks.is_empty() {
            return Ok(());
        }
        let spill = match &mut self.spill {
            Some(spill) => spill,
            None => self
                .spill
                .insert(spill::SpillWriter::start(spill::DaySpill::create(
                    self.ctx.store,
                    self.ctx.provenance.ingest_seq,
                )?)?),
        };
        spill.append(chunks)?;
        Ok(())
    }

    /// A row read and quarantined, with its raw text.
    fn quarantined(&mut self, row: QuarantinedRow) -> Result<(), IngestError> {
        self.counts.read += 1;
        self.counts.quarantined += 1;
        self.quarantine.push(row);
        if self.quarantine.len() >= self.ctx.config.batch_rows {
            flush_quarantine(self.ctx, &mut self.quarantine, &mut self.quarantine_batches)?;
        }
        Ok(())
    }

    /// Writes every day's rows to the store, a day per core.
    fn finish(mut self) -> Result<Counts, IngestError> {
        use rayon::prelude::*;
        let ctx = self.ctx;
        let slice_rows = ctx.config.batch_rows;
        let done: Vec<Result<(u64, u64), IngestError>> = match self.spill.take() {
            None => {
                let chunks = std::mem::take(&mut self.chunks);
                spill::picks_by_day(&chunks)
                    .into_par_iter()
                    .map(|(day, picks)| {
                        let mut seen = existing_keys(ctx, day)?;
                        write_slice(ctx, day, &chunks, picks, &mut seen)
                    })
                    .collect()
            }
            Some(mut writer) => {
                let mut spilled = writer.finish()?;
                spilled.append(&std::mem::take(&mut self.chunks))?;
                let spilled = &spilled;
                spilled
                    .days()
                    .into_par_iter()
                    .map(|day| {
                        let mut seen = existing_keys(ctx, day)?;
                        let mut counts = (0, 0);
                        spilled.read_day(day, slice_rows, &mut |chunks| {
                            let picks = chunks
                                .iter()
                                .enumerate()
                                .flat_map(|(c, chunk)| (0..chunk.len()).map(move |r| (c, r)))
                                .collect();
                            let (stored, duplicates) =
                                write_slice(ctx, day, &chunks, picks, &mut seen)?;
                            counts.0 += stored;
                            counts.1 += duplicates;
                            Ok(())
                        })?;
                        Ok(counts)
                    })
                    .collect()
            }
        };
        for r in done {
            let (stored, duplicates) = r?;
            self.counts.stored += stored;
            self.counts.duplicates += duplicates;
        }
        flush_quarantine(ctx, &mut self.quarantine, &mut self.quarantine_batches)?;
        Ok(self.counts)
    }
}

fn partition_date(day: i32) -> NaiveDate {
    NaiveDate::from_num_days_from_ce_opt(day).unwrap_or_default()
}

/// The key digests a day's partition already holds (rows of committed files and of this one).
fn existing_keys(ctx: &FileContext, day: i32) -> Result<crate::store::KeySet, IngestError> {
    Ok(ctx
        .store
        .existing_keys(ctx.kind, partition_date(day), ctx.visible)?)
}

/// One slice of a day's rows, picked from `chunks` in file order: de-duplicated against `seen`, sorted and written
/// as one file. Gives the rows stored and the duplicates.
fn write_slice(
    ctx: &FileContext,
    day: i32,
    chunks: &[Chunk],
    picks: Vec<(usize, usize)>,
    seen: &mut crate::store::KeySet,
) -> Result<(u64, u64), IngestError> {
    let (rows, duplicates) = columns::partition(ctx.kind, chunks, picks, seen, &ctx.provenance)
        .map_err(|message| ctx.encode_error(message))?;
    let Some(rows) = rows else {
        return Ok((0, duplicates));
    };
    ctx.store.write_part(ctx.kind, partition_date(day), &rows)?;
    Ok((rows.num_rows() as u64, duplicates))
}

/// Rows that arrive one at a time (FHIR events, the small kinds' CSV rows), gathered into chunks for a [`Batcher`].
trait Gather {
    type Row;
    fn push(&mut self, row: Self::Row);
    fn len(&self) -> usize;
    /// The rows gathered so far as a chunk; the gatherer starts empty again.
    fn take(&mut self, provenance: &Provenance) -> Result<Chunk, String>;
}

impl Gather for AuditColumns {
    type Row = AuditEvent;
    fn push(&mut self, row: AuditEvent) {
        AuditColumns::push(self, &row.row());
    }
    fn len(&self) -> usize {
        AuditColumns::len(self)
    }
    fn take(&mut self, _: &Provenance) -> Result<Chunk, String> {
        std::mem::replace(self, AuditColumns::with_capacity(CHUNK_ROWS)).finish()
    }
}

impl<R: StoredRecord> Gather for Vec<R> {
    type Row = R;
    fn push(&mut self, row: R) {
        Vec::push(self, row);
    }
    fn len(&self) -> usize {
        Vec::len(self)
    }
    fn take(&mut self, provenance: &Provenance) -> Result<Chunk, String> {
        columns::rows_chunk(&std::mem::take(self), provenance)
    }
}

/// Rows per chunk of columns: validated together (in parallel, for CSV audit events) and appended to a batch.
const CHUNK_ROWS: usize = 8192;

/// Feeds rows one by one to a batch through a gatherer.
struct OneByOne<'c, G> {
    batch: Batcher<'c>,
    gather: G,
}

impl<G: Gather> OneByOne<'_, G> {
    fn row(
        &mut self,
        result: Result<G::Row, RowError>,
        line: i64,
        raw: impl FnOnce() -> String,
    ) -> Result<(), IngestError> {
        match result {
            Ok(row) => {
                self.gather.push(row);
                if self.gather.len() >= CHUNK_ROWS.min(self.batch.room()) {
                    self.hand_over()?;
                }
                Ok(())
            }
            Err(err) => self.batch.quarantined(QuarantinedRow {
                line,
                column: err.column,
                reason: err.reason,
                raw: cut(raw()),
            }),
        }
    }

    fn hand_over(&mut self) -> Result<(), IngestError> {
        let chunk = self
            .gather
            .take(&self.batch.ctx.provenance)
            .map_err(|message| self.batch.ctx.encode_error(message))?;
        self.batch.stored(chunk)
    }

    fn finish(mut self) -> Result<Counts, IngestError> {
        if self.gather.len() > 0 {
            self.hand_over()?;
        }
        self.batch.finish()
    }
}

fn too_long() -> RowError {
    RowError {
        column: None,
        reason: format!(
            "the record is longer than {} bytes (an unclosed quote?); reading went on at the next line",
            csv::MAX_RECORD_BYTES
        ),
    }
}

/// Reads every record of a CSV file of one of the small kinds, row by row. Returns the counts and, if reading
/// stopped early, why.
fn load_rows<R: StoredRecord>(
    ctx: &FileContext,
    index: &ColumnIndex,
    source: &mut CsvSource,
    validate: fn(&Fields) -> Result<R, RowError>,
) -> Result<(Counts, Option<String>), IngestError> {
    let mut rows = OneByOne {
        batch: Batcher::new(ctx),
        gather: Vec::<R>::new(),
    };
    let mut record = ByteRecord::new();
    let mut failure = None;
    let mut read = 0u64;
    loop {
        let line = match source.next(&mut record) {
            Ok(Next::Record(line)) => line,
            Ok(Next::End) => break,
            Ok(Next::TooLong(line)) => {
                read += 1;
                rows.row(Err(too_long()), line, String::new)?;
                continue;
            }
            Err(e) => {
                failure = Some(format!("reading stopped after {read} rows: {e}"));
                break;
            }
        };
        read += 1;
        let fields = Fields {
            index,
            record: &record,
            tz: ctx.config.timezone,
            line,
        };
        rows.row(validate(&fields), line, || raw_line(&record))?;
    }
    Ok((rows.finish()?, failure))
}

/// One record of a chunk read from a CSV file: where it starts, and its place in the chunk's records (none for a
/// record that was too long to keep).
type Item = (i64, Option<usize>);

/// Reads every record of a CSV audit file: records are read a chunk at a time and validated on both cores,
/// straight into columns. Returns the counts and, if reading stopped early, why.
/// Reads up to `wanted` records into `records` (reusing their buffers), listed in `items` with their lines (no record
/// for a line over the length limit). Gives the reason reading stopped, if it failed; `read` is how many rows came
/// before these.
fn read_items(
    source: &mut CsvSource,
    records: &mut Vec<ByteRecord>,
    items: &mut Vec<Item>,
    wanted: usize,
    read: u64,
) -> Option<String> {
    items.clear();
    let mut used = 0;
    while items.len() < wanted {
        if used == records.len() {
            records.push(ByteRecord::new());
        }
        match source.next(&mut records[used]) {
            Ok(Next::Record(line)) => {
                items.push((line, Some(used)));
                used += 1;
            }
            Ok(Next::TooLong(line)) => items.push((line, None)),
            Ok(Next::End) => break,
            Err(e) => {
                return Some(format!(
                    "reading stopped after {} rows: {e}",
                    read + items.len() as u64
                ))
            }
        }
    }
    None
}

/// Records read from the file and not yet validated.
#[derive(Default)]
struct ReadAhead {
    records: Vec<ByteRecord>,
    items: Vec<Item>,
}

fn load_audit(
    ctx: &FileContext,
    index: &ColumnIndex,
    source: &mut CsvSource,
) -> Result<(Counts, Option<String>), IngestError> {
    use rayon::prelude::*;
    let mut batch = Batcher::new(ctx);
    let threads = rayon::current_num_threads().max(1);
    let most = CHUNK_ROWS * threads;
    let (mut current, mut next) = (ReadAhead::default(), ReadAhead::default());
    let mut read = 0u64;
    // Never more records than the batch has room for, so batches end where they would row by row.
    let wanted = most.min(batch.room());
    let mut failure = read_items(
        source,
        &mut current.records,
        &mut current.items,
        wanted,
        read,
    );
    let mut ended = failure.is_some() || current.items.len() < wanted;
    let validate = |piece: &[Item], records: &[ByteRecord]| {
        let mut columns = AuditColumns::with_capacity(piece.len());
        let mut bad = Vec::new();
        for &(line, at) in piece {
            let quarantined = |err: RowError, raw: String| QuarantinedRow {
                line,
                column: err.column,
                reason: err.reason,
                raw: cut(raw),
            };
            let Some(at) = at else {
                bad.push(quarantined(too_long(), String::new()));
                continue;
            };
            let fields = Fields {
                index,
                record: &records[at],
                tz: ctx.config.timezone,
                line,
            };
            match rows::audit_row(&fields) {
                Ok(row) => columns.push(&row),
                Err(err) => bad.push(quarantined(err, raw_line(&records[at]))),
            }
        }
        Ok::<_, String>((columns.finish()?, bad))
    };
    while !current.items.is_empty() {
        read += current.items.len() as u64;
        // The next records are read while these are validated (the reader is one thread; validation takes both
        // cores and the reader's when it is done): as many as the batch is sure to have room for once these are
        // stored, every one of them valid. With no such room, or at the end, the next read waits.
        let ahead = if ended {
            0
        } else {
            most.min(batch.room().saturating_sub(current.items.len()))
        };
        let piece = current.items.len().div_ceil(threads * 2).max(1);
        let (validated, ahead_failure) = rayon::join(
            || {
                current
                    .items
                    .par_chunks(piece)
                    .map(|piece| validate(piece, &current.records))
                    .collect::<Vec<_>>()
            },
            || {
                if ahead == 0 {
                    next.items.clear();
                    return None;
                }
                read_items(source, &mut next.records, &mut next.items, ahead, read)
            },
        );
        for piece in validated {
            let (chunk, bad) = piece.map_err(|message| ctx.encode_error(message))?;
            for row in bad {
                batch.quarantined(row)?;
            }
            batch.stored(chunk)?;
        }
        if ahead > 0 {
            failure = ahead_failure;
            ended = failure.is_some() || next.items.len() < ahead;
        } else if !ended {
            let wanted = most.min(batch.room());
            failure = read_items(source, &mut next.records, &mut next.items, wanted, read);
            ended = failure.is_some() || next.items.len() < wanted;
        }
        std::mem::swap(&mut current, &mut next);
    }
    Ok((batch.finish()?, failure))
}

/// Reads every resource of a FHIR file (streaming NDJSON line by line).
fn load_fhir(
    ctx: &FileContext,
    reader: Box<dyn Read + Send>,
    layout: fhir::Layout,
) -> Result<(Counts, Option<String>), IngestError> {
    let settings = fhir::FhirSettings {
        timezone: ctx.config.timezone,
        session_extension: ctx.config.fhir_session_extension.clone(),
    };
    let mut events = OneByOne {
        batch: Batcher::new(ctx),
        gather: AuditColumns::with_capacity(CHUNK_ROWS),
    };
    let mut store_error = None;
    // Parsing and mapping run on both cores (see `fhir::for_each_mapped`); the quarantine's copy of a resource is
    // made only for a row that is quarantined. Rows reach the batch in file order.
    let map = |position: i64, parsed: Result<fhir::Parsed, String>| {
        fhir::map_parsed(position, parsed, &settings)
    };
    let outcome = fhir::for_each_mapped(reader, layout, &map, &mut |position, (result, raw)| {
        events.row(result, position, || raw).map_err(|e| {
            let message = e.to_string();
            store_error = Some(e);
            message
        })
    });
    if let Some(e) = store_error {
        return Err(e);
    }
    let failure = outcome.err();
    Ok((events.finish()?, failure))
}

fn flush_quarantine(
    ctx: &FileContext,
    rows: &mut Vec<QuarantinedRow>,
    batches: &mut usize,
) -> Result<(), IngestError> {
    if rows.is_empty() {
        return Ok(());
    }
    let n = rows.len();
    let p = &ctx.provenance;
    let df = DataFrame::new(
        n,
        vec![
            StringChunked::full(schema::Q_KIND.into(), ctx.kind.name(), n).into_column(),
            StringChunked::full(schema::SOURCE_FILE.into(), &p.source_file, n).into_column(),
            StringChunked::full(schema::Q_SOURCE_SHA256.into(), ctx.sha, n).into_column(),
            Int64Chunked::from_iter_values(schema::Q_LINE.into(), rows.iter().map(|r| r.line))
                .into_column(),
            StringChunked::from_iter_options(
                schema::Q_COLUMN.into(),
                rows.iter().map(|r| r.column),
            )
            .into_column(),
            StringChunked::from_iter_values(
                schema::Q_REASON.into(),
                rows.iter().map(|r| r.reason.as_str()),
            )
            .into_column(),
            StringChunked::from_iter_values(
                schema::RAW.into(),
                rows.iter().map(|r| r.raw.as_str()),
            )
            .into_column(),
        ],
    )?;
    let name = format!(
        "part-{}-{}-{:05}.parquet",
        ctx.kind.name(),
        &ctx.sha[..16],
        *batches
    );
    ctx.store.write_quarantine(&name, &df)?;
    *batches += 1;
    rows.clear();
    Ok(())
}

/// Cuts raw text at [`MAX_RAW_BYTES`] (on a character boundary) and marks the cut.
fn cut(mut text: String) -> String {
    if text.len() > MAX_RAW_BYTES {
        let mut at = MAX_RAW_BYTES;
        while !text.is_char_boundary(at) {
            at -= 1;
        }
        text.truncate(at);
        text.push_str("…[cut]");
    }
    text
}

/// The record as a CSV line again (quoting restored).
fn raw_line(record: &ByteRecord) -> String {
    let mut w = ::csv::WriterBuilder::new()
        .terminator(::csv::Terminator::Any(b'\n'))
        .from_writer(Vec::new());
    let bytes = match w
        .write_byte_record(record)
        .and_then(|_| w.flush().map_err(Into::into))
    {
        Ok(()) => w.into_inner().unwrap_or_default(),
        Err(_) => Vec::new(),
    };
    String::from_utf8_lossy(&bytes)
        .trim_end_matches('\n')
        .to_string()
}

pub fn utc_date(micros: i64) -> NaiveDate {
    DateTime::from_timestamp_micros(micros)
        .map(|t| t.date_naive())
        .unwrap_or_default()
}

/// The SHA-256 of the bytes the readers took from a file, and how many.
#[derive(Default)]
struct ReadDigest {
    hasher: Sha256,
    bytes: u64,
}

/// Whether the bytes read are the file whose hash was taken before reading. A reader that stopped short of the end
/// (a parser that had what it needed) has the rest hashed from where it stopped.
fn read_matches(path: &Path, sha: &str, digest: &Mutex<ReadDigest>) -> Result<(), String> {
    let changed = |why: String| {
        format!(
            "the file changed while it was being read ({why}): nothing from it is recorded; send it again once it is \
             complete"
        )
    };
    let Ok(mut d) = digest.lock() else {
        return Err(changed("its reading was interrupted".into()));
    };
    let mut rest =
        File::open(path).map_err(|e| changed(format!("it can no longer be opened: {e}")))?;
    rest.seek(io::SeekFrom::Start(d.bytes))
        .map_err(|e| changed(e.to_string()))?;
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = rest.read(&mut buf).map_err(|e| changed(e.to_string()))?;
        if n == 0 {
            break;
        }
        d.hasher.update(&buf[..n]);
        d.bytes += n as u64;
    }
    let read = hex::encode(std::mem::take(&mut d.hasher).finalize());
    if read == sha {
        Ok(())
    } else {
        Err(changed(format!(
            "{} bytes were read, and they do not match the SHA-256 taken when it was opened",
            d.bytes
        )))
    }
}

pub fn sha256_file(path: &Path) -> io::Result<String> {
    let mut f = File::open(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex::encode(h.finalize()))
}

fn progress_bar(path: &Path, wanted: bool) -> ProgressBar {
    let len = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    let bar = ProgressBar::with_draw_target(
        Some(len),
        if wanted {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        },
    );
    if let Ok(style) =
        ProgressStyle::with_template("{msg} [{bar:30}] {bytes}/{total_bytes} ({eta})")
    {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(
        path.file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default(),
    );
    bar
}
