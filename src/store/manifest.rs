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
                files: Vec::new(),
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

    pub fn next_seq(&self) -> i64 {
        self.files.iter().map(|f| f.seq).max().unwrap_or(0) + 1
    }
}
