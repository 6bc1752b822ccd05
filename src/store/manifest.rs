//! The manifest: one entry per ingested file, so a re-run can tell what is already in the store and an auditor can
//! tell where every row came from. Replaced atomically after each file.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::{Store, StoreError, MANIFEST_FILE};
use crate::schema::Kind;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Manifest {
    pub version: u32,
    pub files: Vec<ManifestEntry>,
    /// Files begun and not (yet) committed: a killed or failed ingest. Their `ingest_seq` is never given to other
    /// content, so their partial rows stay invisible to readers (which see committed sequences only) and to
    /// de-duplication; the same content sent again takes its sequence back and completes it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pending: Vec<PendingEntry>,
}

/// A file begun and not committed.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PendingEntry {
    pub seq: i64,
    pub sha256: String,
    pub kind: Kind,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ManifestEntry {
    /// Position in the manifest, from 1; stored with every row as `ingest_seq`.
    pub seq: i64,
    pub path: String,
    pub sha256: String,
    pub kind: Kind,
    pub read: u64,
    pub stored: u64,
    pub duplicates: u64,
    pub quarantined: u64,
    /// RFC 3339, UTC.
    pub ingested_at: String,
}

impl Manifest {
    pub fn load(store_root: &Path) -> Result<Manifest, StoreError> {
        let path = store_root.join(MANIFEST_FILE);
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| StoreError::Manifest {
                path,
                reason: e.to_string(),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Manifest {
                version: 1,
                ..Default::default()
            }),
            Err(source) => Err(StoreError::Io { path, source }),
        }
    }

    pub fn save(&self, store: &Store) -> Result<(), StoreError> {
        let bytes = serde_json::to_vec_pretty(self).map_err(|e| StoreError::Manifest {
            path: store.root().join(MANIFEST_FILE),
            reason: e.to_string(),
        })?;
        store.replace_file(MANIFEST_FILE, &bytes)
    }

    pub fn find(&self, sha256: &str, kind: Kind) -> Option<&ManifestEntry> {
        self.files
            .iter()
            .find(|f| f.sha256 == sha256 && f.kind == kind)
    }

    /// The sequence for a file about to be read: the one it was given before if it was begun and never committed
    /// (the same content, re-sent after a kill or a failure, with nothing committed since), else a new one, never used
    /// before.
    pub fn begin(&mut self, sha256: &str, kind: Kind) -> i64 {
        // Taken back only if nothing was committed since: rows another file wrote meanwhile may repeat the leftovers,
        // which would then show twice. Otherwise the leftovers stay invisible for good and the file starts afresh.
        let last_committed = self.files.iter().map(|f| f.seq).max().unwrap_or(0);
        if let Some(p) = self
            .pending
            .iter()
            .find(|p| p.sha256 == sha256 && p.kind == kind && p.seq > last_committed)
        {
            return p.seq;
        }
        let seq = self
            .files
            .iter()
            .map(|f| f.seq)
            .chain(self.pending.iter().map(|p| p.seq))
            .max()
            .unwrap_or(0)
            + 1;
        self.pending.push(PendingEntry {
            seq,
            sha256: sha256.to_string(),
            kind,
        });
        seq
    }

    /// Records a file as ingested: its sequence becomes visible.
    pub fn commit(&mut self, entry: ManifestEntry) {
        self.pending.retain(|p| p.seq != entry.seq);
        self.files.push(entry);
    }

    /// The sequences readers see.
    pub fn committed(&self) -> std::collections::BTreeSet<i64> {
        self.files.iter().map(|f| f.seq).collect()
    }
}
