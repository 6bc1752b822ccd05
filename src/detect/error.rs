//! Detection's own errors: what failed, and where.

use std::path::PathBuf;

use polars::prelude::PolarsError;

#[derive(Debug, thiserror::Error)]
pub enum DetectError {
    /// The store could not be read or a plan over it failed.
    #[error("reading the store: {0}")]
    Store(#[from] PolarsError),
    /// The owner-only folder for spilled sessions could not be made.
    #[error("cannot make the detection spill folder in {}: {source}", path.display())]
    Spill {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A batch was neither kept in memory nor spilled: a bug, reported rather than hidden.
    #[error("batch {0} of sessions was neither kept nor spilled")]
    LostBatch(u32),
}

pub type Result<T> = std::result::Result<T, DetectError>;
