//! Parquet files written with arrow-rs: a polars frame crosses to an arrow-rs `RecordBatch` through the Arrow C
//! Data Interface (no copy of the values, no row-by-row step), and `parquet`'s `ArrowWriter` writes it with the
//! layout analysts' engines read best:
//! - zstd, row groups of [`ROW_GROUP_ROWS`] rows, min/max statistics per page and a page index (column and offset
//!   indexes), so a reader looking for one patient skips whole row groups and pages;
//! - dictionary encoding where values repeat (actions, sections, channels, devices), plain encoding for the columns
//!   that are unique per row (ids, hashes, the FHIR `raw` text), where a dictionary would only cost time;
//! - for the store's data files, the order the rows are in (`nhs_number`, time, key) recorded as the row groups'
//!   sorting columns.
//!
//! No arrow schema is embedded: readers take types from the Parquet schema itself (UTF-8 strings, timestamps in
//! microseconds adjusted to UTC, booleans, 64-bit integers), which every engine maps the same way.

use std::sync::Arc;

use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{Field, Schema};
use parquet::arrow::arrow_writer::{ArrowWriter, ArrowWriterOptions};
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::metadata::SortingColumn;
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::schema::types::ColumnPath;
use polars::prelude::{CompatLevel, DataFrame};

/// Rows per row group: small enough that a sorted file's groups each hold a narrow range of patients.
pub const ROW_GROUP_ROWS: usize = 128 * 1024;

/// Columns whose values are (nearly) unique per row: written without a dictionary.
const UNIQUE_COLUMNS: &[&str] = &[
    crate::schema::EVENT_ID,
    crate::schema::RECORD_HASH,
    crate::schema::RAW,
    crate::schema::SOURCE_LINE,
];

/// The frame as one arrow-rs record batch, every column handed over through the C Data Interface.
pub fn record_batch(df: &DataFrame) -> Result<RecordBatch, String> {
    let mut fields = Vec::with_capacity(df.width());
    let mut arrays: Vec<ArrayRef> = Vec::with_capacity(df.width());
    for col in df.columns() {
        let series = col.as_materialized_series().rechunk();
        // The oldest compatibility level gives the classic layouts (large UTF-8 strings rather than views), which
        // every Parquet writer path supports.
        let array = series.to_arrow(0, CompatLevel::oldest());
        let field =
            polars_arrow::datatypes::Field::new(series.name().clone(), array.dtype().clone(), true);
        let c_array = polars_arrow::ffi::export_array_to_c(array);
        let c_schema = polars_arrow::ffi::export_field_to_c(&field);
        // SAFETY: both crates define these structs exactly as the C Data Interface specifies (`#[repr(C)]`, the
        // same fields in the same order; `transmute` checks the sizes), so this moves ownership of the exported
        // array and schema, release callbacks included, to arrow-rs, which releases them once.
        let (ffi_array, ffi_schema) = unsafe {
            (
                std::mem::transmute::<
                    polars_arrow::ffi::ArrowArray,
                    arrow_array::ffi::FFI_ArrowArray,
                >(c_array),
                std::mem::transmute::<
                    polars_arrow::ffi::ArrowSchema,
                    arrow_schema::ffi::FFI_ArrowSchema,
                >(c_schema),
            )
        };
        let field =
            Field::try_from(&ffi_schema).map_err(|e| format!("column {}: {e}", series.name()))?;
        // SAFETY: the array was exported by polars for this very schema, as the C Data Interface requires.
        let data = unsafe { arrow_array::ffi::from_ffi(ffi_array, &ffi_schema) }
            .map_err(|e| format!("column {}: {e}", series.name()))?;
        fields.push(field);
        arrays.push(arrow_array::make_array(data));
    }
    RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays).map_err(|e| e.to_string())
}

/// The writer settings; `sorted_by` names the columns the rows are sorted by, in order (ascending), if any.
fn properties(schema: &Schema, sorted_by: &[&str]) -> WriterProperties {
    let mut b = WriterProperties::builder()
        // zstd's own default level, as polars and DuckDB use (parquet-rs's default, 1, makes files a fifth larger).
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(3).unwrap_or_default()))
        .set_max_row_group_size(ROW_GROUP_ROWS)
        .set_statistics_enabled(EnabledStatistics::Page)
        .set_dictionary_enabled(true);
    for name in UNIQUE_COLUMNS {
        if schema.field_with_name(name).is_ok() {
            b = b.set_column_dictionary_enabled(ColumnPath::from(*name), false);
        }
    }
    let sorting: Vec<SortingColumn> = sorted_by
        .iter()
        .filter_map(|c| schema.index_of(c).ok())
        .map(|i| SortingColumn {
            column_idx: i as i32,
            descending: false,
            nulls_first: false,
        })
        .collect();
    if !sorting.is_empty() && sorting.len() == sorted_by.len() {
        b = b.set_sorting_columns(Some(sorting));
    }
    b.build()
}

/// Writes the rows as one Parquet file to `w`.
pub fn write<W: std::io::Write + Send>(
    w: W,
    batch: &RecordBatch,
    sorted_by: &[&str],
) -> Result<(), String> {
    let options = ArrowWriterOptions::new()
        .with_properties(properties(&batch.schema(), sorted_by))
        .with_skip_arrow_metadata(true);
    let mut writer =
        ArrowWriter::try_new_with_options(w, batch.schema(), options).map_err(|e| e.to_string())?;
    writer.write(batch).map_err(|e| e.to_string())?;
    writer.close().map_err(|e| e.to_string())?;
    Ok(())
}
