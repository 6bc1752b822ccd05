//! Sessions spilled between detection's two passes, so memory follows one batch of patients, not the store.

use std::path::Path;

use polars::prelude::*;

/// A batch's sessions spilled between detection's two passes: `<store>/.detect-spill-<pid>/batch-N.parquet`,
/// owner-only, removed when the run ends; a folder left by a killed run (its process gone) is removed by the next.
pub struct Spill {
    dir: std::path::PathBuf,
}

impl Spill {
    pub fn create(store: &Path) -> std::io::Result<Spill> {
        if let Ok(entries) = std::fs::read_dir(store) {
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().to_string();
                if let Some(pid) = name.strip_prefix(".detect-spill-") {
                    if !Path::new("/proc").join(pid).exists() {
                        let _ = std::fs::remove_dir_all(entry.path());
                    }
                }
            }
        }
        let dir = store.join(format!(".detect-spill-{}", std::process::id()));
        if dir.exists() {
            std::fs::remove_dir_all(&dir)?;
        }
        crate::store::create_private_dir(&dir).map_err(std::io::Error::other)?;
        Ok(Spill { dir })
    }

    fn path(&self, batch: u32) -> std::path::PathBuf {
        self.dir.join(format!("batch-{batch}.parquet"))
    }

    pub fn write(&self, batch: u32, frame: &mut DataFrame) -> PolarsResult<()> {
        let mut f = crate::store::private_file(&self.path(batch), true)?;
        crate::store::parquet_writer(&mut f).finish(frame)?;
        Ok(())
    }

    pub fn read(&self, batch: u32) -> PolarsResult<DataFrame> {
        ParquetReader::new(std::fs::File::open(self.path(batch))?).finish()
    }
}

impl Drop for Spill {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
