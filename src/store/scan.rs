//! Reading the store lazily: one LazyFrame per kind, with the hive `date` partition column typed as a date so a
//! filter on it prunes whole folders.

use std::path::Path;
use std::sync::Arc;

use polars::prelude::*;

use crate::schema::{self, Kind};

/// Every committed row of a kind (with its `date` partition column): rows of files the manifest records, so a
/// reader beside an ingest that is half-way through a file, or was killed in one, sees the store as the manifest
/// last committed it. An empty store gives an empty frame with the right schema, so plans over a new practice still
/// run.
pub fn scan_kind(store: &Path, kind: Kind) -> PolarsResult<LazyFrame> {
    let mut schema = kind.stored_schema();
    let committed: Vec<i64> = super::manifest::Manifest::load(store)
        .map_err(|e| PolarsError::ComputeError(e.to_string().into()))?
        .files
        .iter()
        .map(|f| f.seq)
        .collect();
    Ok(
        scan_dir(&store.join(kind.name()), true, &mut schema)?.filter(
            col(schema::INGEST_SEQ).is_in(
                lit(Series::new("committed".into(), committed)).implode(false),
                false,
            ),
        ),
    )
}

/// Every quarantined row.
pub fn scan_quarantine(store: &Path) -> PolarsResult<LazyFrame> {
    let mut schema = schema::quarantine_schema();
    scan_dir(&store.join(super::QUARANTINE_DIR), false, &mut schema)
}

fn scan_dir(dir: &Path, hive: bool, schema: &mut Schema) -> PolarsResult<LazyFrame> {
    let date_schema = Arc::new(Schema::from_iter([Field::new(
        schema::PARTITION_DATE.into(),
        DataType::Date,
    )]));
    if hive {
        schema.with_column(schema::PARTITION_DATE.into(), DataType::Date);
    }
    if !has_parquet(dir) {
        return Ok(DataFrame::empty_with_schema(schema).lazy());
    }
    let pattern = if hive {
        format!("{}/**/*.parquet", dir.display())
    } else {
        format!("{}/*.parquet", dir.display())
    };
    let args = ScanArgsParquet {
        hive_options: HiveOptions {
            enabled: Some(hive),
            hive_start_idx: 0,
            schema: hive.then_some(date_schema),
            try_parse_dates: true,
        },
        ..Default::default()
    };
    LazyFrame::scan_parquet(PlRefPath::new(pattern), args)
}

fn has_parquet(dir: &Path) -> bool {
    fn walk(dir: &Path) -> bool {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return false;
        };
        entries.flatten().any(|e| {
            let p = e.path();
            if p.is_dir() {
                walk(&p)
            } else {
                p.extension().is_some_and(|x| x == "parquet")
            }
        })
    }
    walk(dir)
}
