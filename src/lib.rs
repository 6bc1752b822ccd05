//! accesswatch: finds signs that a third party is watching a patient's online GP record.
//!
//! Data flows one way: [`ingest`] (CSV and, later, FHIR readers) -> [`store`] (partitioned Parquet) -> detection
//! -> reports. The binary in `main.rs` is a thin shell over [`cli`]; tests and benchmarks use the same code.

pub mod cases;
pub mod cli;
pub mod config;
pub mod context;
pub mod detect;
pub mod evaluate;
#[doc(hidden)]
pub mod fuzzing;
pub mod generate;
pub mod ingest;
pub mod pipeline;
pub mod pseudonym;
pub mod query;
pub mod records;
pub mod report;
pub mod schema;
pub mod store;
