//! The Parquet store: its layout, atomic writes, the manifest of ingested files, and reading keys back.
//!
//! Layout (every kind hive-partitioned by the UTC date of its time column):
//! ```text
//! <store>/audit/date=YYYY-MM-DD/part-<hash>.parquet
//! <store>/entries/date=.../     <store>/appointments/date=.../     <store>/proxies/date=.../
//! <store>/quarantine/part-<source hash>-<batch>.parquet
//! <store>/_manifest.json        every ingested file: path, sha256, counts, when
//! <store>/_tmp/                 files being written; never read; cleared by the next writer
//! <store>/.lock                 held (flock) by the one process writing the store
//! ```
//! A data file appears in its partition only by `rename` after it is complete and synced, so a reader never sees
//! half a file, and a writer killed at any moment leaves only whole files plus debris in `_tmp/`. File names are
//! derived from content, so a re-run after a crash writes the very files an uninterrupted run would have.

pub mod arrow_out;
pub mod compact;
pub mod manifest;
pub mod scan;

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use chrono::NaiveDate;
use polars::prelude::*;
use sha2::{Digest, Sha256};
use xxhash_rust::xxh3::xxh3_128_with_seed;

use crate::schema::Kind;

pub const QUARANTINE_DIR: &str = "quarantine";
pub const MANIFEST_FILE: &str = "_manifest.json";
pub(crate) const TMP_DIR: &str = "_tmp";
const LOCK_FILE: &str = ".lock";

/// Fault injection for the crash tests: when set to N, the process aborts right after its N-th durable write (a
/// data file renamed into place, a run folder file written), as a `kill -9` would leave it. Documented in the
/// README; has no other effect.
pub const CRASH_AFTER_WRITES_ENV: &str = "ACCESSWATCH_TEST_CRASH_AFTER_WRITES";
/// Fault injection for the kill tests: when set to `N:FILE`, the process creates FILE right after its N-th durable
/// write and then waits there until FILE is removed, so a test can send a real SIGKILL knowing the run is part way
/// through, or change an input under it and let it go on.
pub const PAUSE_AFTER_WRITES_ENV: &str = "ACCESSWATCH_TEST_PAUSE_AFTER_WRITES";

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot create store folder {path}: {source}")]
    Create { path: PathBuf, source: io::Error },
    #[error("another accesswatch process is writing the store {0} (its lock is held); try again when it finishes")]
    Locked(PathBuf),
    #[error("cannot write {path}: {source}")]
    Write { path: PathBuf, source: io::Error },
    #[error("cannot write Parquet {path}: {source}")]
    Parquet { path: PathBuf, source: PolarsError },
    #[error("cannot write Parquet {path}: {message}")]
    Encode { path: PathBuf, message: String },
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: PolarsError },
    #[error("cannot read {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("cannot spill rows to {path} on their way to the store: {message}")]
    Spill { path: PathBuf, message: String },
    #[error("the store manifest {path} is damaged: {reason}")]
    Manifest { path: PathBuf, reason: String },
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// A store opened for writing: holds the store's lock until dropped (the OS releases it if the process dies, so a
/// killed writer never leaves a stale lock).
pub struct Store {
    root: PathBuf,
    _lock: File,
}

impl Store {
    pub fn open_for_write(root: &Path) -> Result<Store> {
        create_private_dir(root)?;
        let lock_path = root.join(LOCK_FILE);
        let lock = private_file(&lock_path, false).map_err(|source| StoreError::Write {
            path: lock_path,
            source,
        })?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => {
                return Err(StoreError::Locked(root.to_path_buf()))
            }
            Err(fs::TryLockError::Error(source)) => {
                return Err(StoreError::Write {
                    path: root.join(LOCK_FILE),
                    source,
                })
            }
        }
        // Files and folders inside the store that someone else made group- or world-readable (a copy, a restore, an
        // old version) are made owner-only again, and the writer is told how many.
        let opened = owner_only_tree(root);
        if opened > 0 {
            crate::cli::warn_user(&format!(
                "{opened} file(s) or folder(s) inside the store {} could be read by other users: made owner-only",
                root.display()
            ));
        }
        // Whatever is in _tmp was left by a writer that died: it was never renamed into place, so nothing refers to it.
        let tmp = root.join(TMP_DIR);
        if tmp.exists() {
            fs::remove_dir_all(&tmp).map_err(|source| StoreError::Write {
                path: tmp.clone(),
                source,
            })?;
        }
        create_private_dir(&tmp)?;
        Ok(Store {
            root: root.to_path_buf(),
            _lock: lock,
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn partition_dir(&self, kind: Kind, date: NaiveDate) -> PathBuf {
        partition_dir(&self.root, kind, date)
    }

    /// Digests of the de-duplication keys already stored in one partition (see [`key_digest`]).
    pub fn existing_keys(
        &self,
        kind: Kind,
        date: NaiveDate,
        visible: &std::collections::BTreeSet<i64>,
    ) -> Result<KeySet> {
        let dir = self.partition_dir(kind, date);
        let mut keys = KeySet::default();
        if kind == Kind::Audit {
            for path in parquet_files(&dir)? {
                access_identities(&path, visible, &mut keys)?;
            }
            return Ok(keys);
        }
        for path in parquet_files(&dir)? {
            let read = |source| StoreError::Read {
                path: path.clone(),
                source,
            };
            let df = read_part_columns(&path, &[kind.key_column(), crate::schema::INGEST_SEQ])?;
            let col = df
                .column(kind.key_column())
                .and_then(|c| c.str().cloned())
                .map_err(read)?;
            let seqs = df
                .column(crate::schema::INGEST_SEQ)
                .and_then(|c| c.i64().cloned())
                .map_err(read)?;
            // Rows of a file that was never committed (killed or failed) do not count: they are invisible.
            keys.extend(
                col.iter()
                    .zip(seqs.iter())
                    .filter(|(_, s)| s.is_some_and(|s| visible.contains(&s)))
                    .filter_map(|(k, _)| k)
                    .map(key_digest),
            );
        }
        Ok(keys)
    }

    /// Writes one sorted batch of a partition as a new file, atomically. The name comes from the rows' keys.
    pub fn write_part(
        &self,
        kind: Kind,
        date: NaiveDate,
        batch: &arrow_array::RecordBatch,
    ) -> Result<PathBuf> {
        use arrow_array::cast::AsArray;
        let dir = self.partition_dir(kind, date);
        let keys = batch
            .column_by_name(kind.key_column())
            .and_then(|c| c.as_string_opt::<i64>())
            .ok_or_else(|| StoreError::Encode {
                path: dir.clone(),
                message: format!("the rows have no text column {}", kind.key_column()),
            })?;
        let name = part_file_name(kind, date, keys.iter().map(|k| k.unwrap_or_default()));
        self.write_parquet_atomically(&dir, &name, batch, &kind.sort_columns())
    }

    /// Writes a quarantine file under a name the caller derived from the source file and batch.
    pub fn write_quarantine(&self, name: &str, df: &DataFrame) -> Result<PathBuf> {
        let dir = self.root.join(QUARANTINE_DIR);
        let batch = arrow_out::record_batch(df).map_err(|message| StoreError::Encode {
            path: dir.join(name),
            message,
        })?;
        self.write_parquet_atomically(&dir, name, &batch, &[])
    }

    fn write_parquet_atomically(
        &self,
        dir: &Path,
        name: &str,
        batch: &arrow_array::RecordBatch,
        sorted_by: &[&str],
    ) -> Result<PathBuf> {
        create_private_dir(dir)?;
        let tmp_path = self
            .root
            .join(TMP_DIR)
            .join(format!("{name}.{}.tmp", std::process::id()));
        let final_path = dir.join(name);
        let write_err = |source| StoreError::Write {
            path: tmp_path.clone(),
            source,
        };
        let mut file = private_file(&tmp_path, true).map_err(write_err)?;
        write_batch_sorted(&mut file, batch, &tmp_path, sorted_by)?;
        file.sync_all().map_err(write_err)?;
        drop(file);
        fs::rename(&tmp_path, &final_path).map_err(|source| StoreError::Write {
            path: final_path.clone(),
            source,
        })?;
        sync_dir(dir);
        fault_point();
        Ok(final_path)
    }

    /// Replaces a small file (the manifest) atomically: write beside, sync, rename.
    pub fn replace_file(&self, name: &str, bytes: &[u8]) -> Result<()> {
        let tmp_path = self
            .root
            .join(TMP_DIR)
            .join(format!("{name}.{}.tmp", std::process::id()));
        let final_path = self.root.join(name);
        let err = |source| StoreError::Write {
            path: final_path.clone(),
            source,
        };
        let mut f = private_file(&tmp_path, true).map_err(err)?;
        f.write_all(bytes).map_err(err)?;
        f.sync_all().map_err(err)?;
        drop(f);
        fs::rename(&tmp_path, &final_path).map_err(err)?;
        sync_dir(&self.root);
        Ok(())
    }
}

static WRITES: AtomicUsize = AtomicUsize::new(0);

/// Called after every durable write (a data file renamed into place, a run folder's file): counts writes and, in
/// the crash tests, aborts the process at the N-th one (see [`CRASH_AFTER_WRITES_ENV`]).
pub fn fault_point() {
    let n = WRITES.fetch_add(1, Ordering::SeqCst) + 1;
    if let Ok(limit) = std::env::var(CRASH_AFTER_WRITES_ENV) {
        if limit.trim().parse::<usize>().ok() == Some(n) {
            std::process::abort();
        }
    }
    if let Ok(spec) = std::env::var(PAUSE_AFTER_WRITES_ENV) {
        if let Some((at, marker)) = spec.split_once(':') {
            if at.trim().parse::<usize>().ok() == Some(n) && fs::write(marker, b"paused").is_ok() {
                while Path::new(marker).exists() {
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
            }
        }
    }
}

/// Writes a frame as Parquet to `w` (with arrow-rs: see [`arrow_out`]). When the writer itself failed (a full
/// disk), the error is that I/O error with the path, not the encoder's own account of it.
pub fn write_parquet<W: io::Write + Send>(w: W, df: &DataFrame, path: &Path) -> Result<()> {
    write_parquet_sorted(w, df, path, &[])
}

/// [`write_parquet`] for rows sorted by `sorted_by` (ascending, in that order), which the file records.
pub fn write_parquet_sorted<W: io::Write + Send>(
    w: W,
    df: &DataFrame,
    path: &Path,
    sorted_by: &[&str],
) -> Result<()> {
    let batch = arrow_out::record_batch(df).map_err(|message| StoreError::Encode {
        path: path.to_path_buf(),
        message,
    })?;
    write_batch_sorted(w, &batch, path, sorted_by)
}

/// [`write_parquet_sorted`] for rows already in arrow-rs arrays.
pub fn write_batch_sorted<W: io::Write + Send>(
    w: W,
    batch: &arrow_array::RecordBatch,
    path: &Path,
    sorted_by: &[&str],
) -> Result<()> {
    struct Remembering<W> {
        inner: W,
        failed: Option<(io::ErrorKind, String)>,
    }
    impl<W: io::Write> io::Write for Remembering<W> {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.inner.write(buf).inspect_err(|e| {
                self.failed = Some((e.kind(), e.to_string()));
            })
        }
        fn flush(&mut self) -> io::Result<()> {
            self.inner.flush().inspect_err(|e| {
                self.failed = Some((e.kind(), e.to_string()));
            })
        }
    }
    let mut w = Remembering {
        inner: w,
        failed: None,
    };
    match arrow_out::write(&mut w, batch, sorted_by) {
        Ok(()) => Ok(()),
        Err(message) => Err(match w.failed.take() {
            Some((kind, message)) => StoreError::Write {
                path: path.to_path_buf(),
                source: io::Error::new(kind, message),
            },
            None => StoreError::Encode {
                path: path.to_path_buf(),
                message,
            },
        }),
    }
}

/// Removes group and other permissions from everything under `root` (symbolic links are not followed); gives how
/// many entries had any.
fn owner_only_tree(root: &Path) -> usize {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mut changed = 0;
        let mut pending = vec![root.to_path_buf()];
        while let Some(dir) = pending.pop() {
            let Ok(entries) = fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries.flatten() {
                let Ok(meta) = entry.path().symlink_metadata() else {
                    continue;
                };
                if meta.file_type().is_symlink() {
                    continue;
                }
                let mode = meta.permissions().mode();
                if mode & 0o077 != 0
                    && fs::set_permissions(entry.path(), fs::Permissions::from_mode(mode & 0o7700))
                        .is_ok()
                {
                    changed += 1;
                }
                if meta.is_dir() {
                    pending.push(entry.path());
                }
            }
        }
        changed
    }
    #[cfg(not(unix))]
    {
        let _ = root;
        0
    }
}

/// Some columns of one stored Parquet file.
fn read_part_columns(path: &Path, columns: &[&str]) -> Result<DataFrame> {
    let file = File::open(path).map_err(|source| StoreError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    ParquetReader::new(file)
        .with_columns(Some(columns.iter().map(|c| c.to_string()).collect()))
        .finish()
        .map_err(|source| StoreError::Read {
            path: path.to_path_buf(),
            source,
        })
}

/// Adds the digests of the audit events stored in one file: their `event_id`s, and their identities as twins
/// ([`crate::records::Twin`]).
fn access_identities(
    path: &Path,
    visible: &std::collections::BTreeSet<i64>,
    keys: &mut KeySet,
) -> Result<()> {
    use crate::schema::{
        ACCOUNT_ID, ACTION, DEVICE_ID, EVENT_ID, INGEST_SEQ, NHS_NUMBER, OCCURRED_AT, SECTION,
    };
    let read = |source| StoreError::Read {
        path: path.to_path_buf(),
        source,
    };
    let df = read_part_columns(
        path,
        &[
            EVENT_ID,
            OCCURRED_AT,
            NHS_NUMBER,
            ACCOUNT_ID,
            DEVICE_ID,
            ACTION,
            SECTION,
            INGEST_SEQ,
        ],
    )?;
    let text = |name: &str| df.column(name).and_then(|c| c.str().cloned()).map_err(read);
    let at = df
        .column(OCCURRED_AT)
        .and_then(|c| c.datetime().map(|d| d.phys.clone()))
        .map_err(read)?;
    let seqs = df
        .column(INGEST_SEQ)
        .and_then(|c| c.i64().cloned())
        .map_err(read)?;
    let (ids, nhs, account, device, action, section) = (
        text(EVENT_ID)?,
        text(NHS_NUMBER)?,
        text(ACCOUNT_ID)?,
        text(DEVICE_ID)?,
        text(ACTION)?,
        text(SECTION)?,
    );
    for i in 0..df.height() {
        // Rows of a file that was never committed (killed or failed) do not count: they are invisible.
        if !seqs.get(i).is_some_and(|s| visible.contains(&s)) {
            continue;
        }
        let Some(id) = ids.get(i) else {
            continue;
        };
        let (Some(at), Some(nhs), Some(action)) = (at.get(i), nhs.get(i), action.get(i)) else {
            keys.insert(key_digest(id));
            continue;
        };
        RowKeys::audit(
            id,
            at,
            nhs,
            account.get(i),
            device.get(i),
            action,
            section.get(i),
        )
        .admit(keys);
    }
    Ok(())
}

/// A 128-bit digest of a de-duplication key: XXH3-128, one pass. Held in memory for one ingest only (never stored),
/// so 16 bytes a key instead of the key's text, with a chance of two keys colliding far below one in 10^20 for a
/// partition of a million rows. (Two SipHash passes until 2026-12-06: the same property at several times the cost,
/// and `DefaultHasher`'s algorithm may change between Rust releases; XXH3's output is specified.)
pub fn key_digest(key: &str) -> u128 {
    xxh3_128_with_seed(key.as_bytes(), KEY_SEED)
}

/// Seeds that keep the three digests of a row apart: a key's, and an identity's two (see [`RowKeys::audit`]).
const KEY_SEED: u64 = 0;
const ANY_SEED: u64 = 1;
const DERIVED_SEED: u64 = 2;

/// An access's identity as bytes for its digests: the instant, then each text length-delimited and each absence
/// marked, so no two different identities run together.
fn identity_bytes(buf: &mut Vec<u8>, occurred_at: i64, texts: [Option<&str>; 5]) {
    buf.clear();
    buf.extend_from_slice(&occurred_at.to_le_bytes());
    for text in texts {
        match text {
            None => buf.push(0),
            Some(t) => {
                buf.push(1);
                buf.extend_from_slice(&(t.len() as u64).to_le_bytes());
                buf.extend_from_slice(t.as_bytes());
            }
        }
    }
}

/// The de-duplication keys of one row, as digests: its own key and, for an audit event, its twin keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RowKeys {
    pub own: u128,
    pub twin: Option<TwinKeys>,
}

/// How an audit event meets its twins: rows that report the same access in another form.
///
/// One access, whatever format reported it, is the instant, the patient, the account, the device, the action and
/// the section: a CSV row and its FHIR twin (whose `event_id` is derived from content, and which may lack the
/// session, address or user agent the CSV carries) are one event. A row with the source's own `event_id` is one
/// event per id, as the source says (two CSV rows with different ids are two events, however alike), but it is the
/// twin of any row whose id was derived from content: FHIR, or a CSV row that carried no id. A derived row is the
/// twin of any row of the same identity: its CSV form, or the other half of a client/server (IHE BALP) pair whose
/// addresses differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TwinKeys {
    /// The identity, set by every row.
    pub any: u128,
    /// The identity, set by rows whose id was derived.
    pub derived: u128,
    pub is_derived: bool,
}

impl RowKeys {
    /// A row de-duplicated on its key alone.
    pub fn plain(key: &str) -> RowKeys {
        RowKeys {
            own: key_digest(key),
            twin: None,
        }
    }

    /// An audit event: its id, and its twin keys from the access's identity. The identity's fields are hashed as
    /// a tuple (each text length-delimited, each absence marked), so no two different identities run together.
    pub fn audit(
        event_id: &str,
        occurred_at: i64,
        nhs_number: &str,
        account_id: Option<&str>,
        device_id: Option<&str>,
        action: &str,
        section: Option<&str>,
    ) -> RowKeys {
        thread_local! {
            static IDENTITY: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
        }
        let (any, derived) = IDENTITY.with_borrow_mut(|buf| {
            identity_bytes(
                buf,
                occurred_at,
                [
                    Some(nhs_number),
                    account_id,
                    device_id,
                    Some(action),
                    section,
                ],
            );
            (
                xxh3_128_with_seed(buf, ANY_SEED),
                xxh3_128_with_seed(buf, DERIVED_SEED),
            )
        });
        RowKeys {
            own: key_digest(event_id),
            twin: Some(TwinKeys {
                any,
                derived,
                is_derived: event_id.starts_with(crate::records::DERIVED_ID_PREFIX),
            }),
        }
    }

    /// Records the row's keys in a partition's set. True when the row is new there: neither its key nor (for an
    /// audit event) a twin was seen before. The first copy in file order wins.
    pub fn admit(&self, seen: &mut KeySet) -> bool {
        match self.twin {
            None => seen.insert(self.own),
            Some(twin) => {
                let twin_seen = if twin.is_derived {
                    seen.contains(&twin.any)
                } else {
                    seen.contains(&twin.derived)
                };
                let fresh = seen.insert(self.own) && !twin_seen;
                seen.insert(twin.any);
                if twin.is_derived {
                    seen.insert(twin.derived);
                }
                fresh
            }
        }
    }
}

/// A set of key digests. The digests are already uniform hashes, so the set uses their low 64 bits as its hash
/// instead of hashing them again (a profile showed SipHash on every row).
pub type KeySet = std::collections::HashSet<u128, std::hash::BuildHasherDefault<DigestHasher>>;

/// The hasher of [`KeySet`]: passes a digest's low 64 bits through.
#[derive(Default)]
pub struct DigestHasher(u64);

impl std::hash::Hasher for DigestHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        // Only u128 digests are hashed; any other input still hashes, just less well.
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }
    fn write_u128(&mut self, v: u128) {
        self.0 = v as u64;
    }
}

/// The polars writer, for detection's own spill files (temporary, read back only by polars): zstd, min/max and
/// null-count statistics. Everything others read (the store, run folders, cases) goes through [`write_parquet`].
pub fn parquet_writer<W: std::io::Write>(w: W) -> ParquetWriter<W> {
    ParquetWriter::new(w)
        .with_compression(ParquetCompression::Zstd(None))
        .with_statistics(StatisticsOptions {
            distinct_count: false,
            ..StatisticsOptions::full()
        })
}

pub fn partition_dir(root: &Path, kind: Kind, date: NaiveDate) -> PathBuf {
    root.join(kind.name())
        .join(format!("date={}", date.format("%Y-%m-%d")))
}

/// The deterministic name of a data file: a hash of its kind, partition and keys in order. The same rows always
/// get the same name, and no two different files in a partition share one.
pub fn part_file_name<'a>(
    kind: Kind,
    date: NaiveDate,
    keys: impl Iterator<Item = &'a str>,
) -> String {
    let mut h = Sha256::new();
    h.update(kind.name());
    h.update(date.to_string());
    for k in keys {
        h.update((k.len() as u64).to_le_bytes());
        h.update(k);
    }
    format!("part-{}.parquet", &hex::encode(h.finalize())[..20])
}

/// The `.parquet` files directly in a folder, sorted by name (none if the folder does not exist).
pub fn parquet_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(StoreError::Io {
                path: dir.to_path_buf(),
                source,
            })
        }
    };
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|source| StoreError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        let path = entry.path();
        if path.extension().is_some_and(|e| e == "parquet") {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

/// Creates a folder (and its parents) readable by the owner only.
pub fn create_private_dir(path: &Path) -> Result<()> {
    let mut b = fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut b, 0o700);
    b.create(path).map_err(|source| StoreError::Create {
        path: path.to_path_buf(),
        source,
    })
}

/// Opens a file readable and writable by the owner only; `truncate` starts it empty.
pub fn private_file(path: &Path, truncate: bool) -> io::Result<File> {
    let mut o = OpenOptions::new();
    o.read(true).write(true).create(true).truncate(truncate);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o600);
    o.open(path)
}

/// Makes a rename durable. Failure is not fatal (some filesystems refuse to sync folders); the rename itself is
/// already atomic.
pub(crate) fn sync_dir(dir: &Path) {
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn access_identities_that_differ_only_in_where_a_field_ends_or_in_an_absent_field_have_different_digests(
    ) {
        let twin =
            |nhs: &str, account: Option<&str>, device: Option<&str>, section: Option<&str>| {
                RowKeys::audit("ev1", 7, nhs, account, device, "view", section)
                    .twin
                    .map(|t| (t.any, t.derived))
            };
        let base = twin("9434765919", Some("acct"), Some("dev"), Some("problems"));
        // The same identity, the same digests, whatever the event id.
        assert_eq!(
            base,
            RowKeys::audit(
                "ev2",
                7,
                "9434765919",
                Some("acct"),
                Some("dev"),
                "view",
                Some("problems")
            )
            .twin
            .map(|t| (t.any, t.derived))
        );
        for other in [
            twin("9434765919", Some("acc"), Some("tdev"), Some("problems")),
            twin("9434765919", Some("acctdev"), None, Some("problems")),
            twin("9434765919", None, Some("acctdev"), Some("problems")),
            twin("9434765919", Some(""), Some("dev"), Some("problems")),
            twin("9434765919", Some("acct"), Some("dev"), None),
            twin("9434765919", Some("acct"), Some("dev"), Some("")),
        ] {
            assert_ne!(base, other);
        }
        // A field may hold any character the marker bytes use: only the lengths keep these two apart.
        assert_ne!(
            twin("9434765919", Some("a\u{1}"), Some("b"), None),
            twin("9434765919", Some("a"), Some("\u{1}b"), None)
        );
        let (any, derived) = base.unwrap();
        assert_ne!(any, derived, "the two twin digests are kept apart");
        assert_ne!(any, key_digest("ev1"));
        assert_ne!(key_digest("ev1"), key_digest("ev2"));
    }

    #[test]
    #[cfg(target_os = "linux")]
    fn a_full_disk_is_reported_as_such_with_the_path() {
        // /dev/full refuses every write with ENOSPC, as a full disk does.
        let full = OpenOptions::new().write(true).open("/dev/full").unwrap();
        let df = df!("x" => (0..100_000i64).collect::<Vec<_>>()).unwrap();
        let e = write_parquet(full, &df, Path::new("/store/_tmp/part.tmp"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("/store/_tmp/part.tmp") && e.contains("No space left on device"),
            "{e}"
        );
        assert!(!e.contains("thrift"), "{e}");
    }

    #[test]
    fn part_names_are_deterministic_and_content_addressed() {
        let d = NaiveDate::from_ymd_opt(2026, 3, 1).unwrap();
        let a = part_file_name(Kind::Audit, d, ["x", "y"].into_iter());
        assert_eq!(a, part_file_name(Kind::Audit, d, ["x", "y"].into_iter()));
        assert_ne!(a, part_file_name(Kind::Audit, d, ["y", "x"].into_iter()));
        assert_ne!(
            a,
            part_file_name(Kind::Audit, d, ["xy"].into_iter()),
            "keys do not run together"
        );
        assert_ne!(a, part_file_name(Kind::Entries, d, ["x", "y"].into_iter()));
        assert_ne!(
            a,
            part_file_name(Kind::Audit, d.succ_opt().unwrap(), ["x", "y"].into_iter())
        );
        assert!(
            a.starts_with("part-")
                && a.ends_with(".parquet")
                && a.len() == "part-.parquet".len() + 20
        );
    }

    #[test]
    fn a_second_writer_is_refused_while_the_first_holds_the_lock() {
        let dir = tempfile::tempdir().unwrap();
        let first = Store::open_for_write(dir.path()).unwrap();
        assert!(matches!(
            Store::open_for_write(dir.path()),
            Err(StoreError::Locked(_))
        ));
        drop(first);
        assert!(Store::open_for_write(dir.path()).is_ok());
    }
}
