//! Pseudonyms for analyst exports: identifiers (NHS numbers, account ids, device ids, IP addresses) replaced by a
//! keyed hash, HMAC-SHA256 under a practice's secret key. The same key gives the same pseudonym on every run, so
//! exports still join; without the key a pseudonym cannot be turned back or guessed from a list of NHS numbers.
//!
//! The key is read from the file named by `ACCESSWATCH_KEY_FILE`, else by the config's `pseudonymise_key_file`;
//! never from the command line (it would sit in shell history and process lists).

use std::path::{Path, PathBuf};

use hmac::{Hmac, Mac};
use polars::prelude::*;
use sha2::Sha256;

pub const KEY_FILE_ENV: &str = "ACCESSWATCH_KEY_FILE";
/// A key shorter than this is refused: it could be guessed.
pub const MIN_KEY_BYTES: usize = 16;
/// Columns whose values are identifiers, whatever table or query they come from.
pub const IDENTIFIER_COLUMNS: &[&str] = &[
    "nhs_number",
    "proxy_nhs_number",
    "account_id",
    "proxy_account_id",
    "device_id",
    "ip_address",
];

#[derive(Debug, thiserror::Error)]
pub enum PseudonymError {
    #[error(
        "pseudonymising needs a key: put at least {MIN_KEY_BYTES} random bytes in a file readable only by this user \
         and name it with the {KEY_FILE_ENV} environment variable or the config's pseudonymise_key_file"
    )]
    NoKey,
    #[error("cannot read the pseudonymisation key file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the pseudonymisation key file {0} holds fewer than {MIN_KEY_BYTES} bytes")]
    Short(PathBuf),
}

pub struct Pseudonymiser {
    key: Vec<u8>,
}

impl Pseudonymiser {
    /// The key from the environment's file, else the config's.
    pub fn from_key_file(config_key_file: Option<&Path>) -> Result<Pseudonymiser, PseudonymError> {
        let path = std::env::var_os(KEY_FILE_ENV)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
            .or_else(|| config_key_file.map(Path::to_path_buf));
        let path = path.ok_or(PseudonymError::NoKey)?;
        let raw = std::fs::read(&path).map_err(|source| PseudonymError::Read {
            path: path.clone(),
            source,
        })?;
        let key: Vec<u8> = raw.trim_ascii().to_vec();
        if key.len() < MIN_KEY_BYTES {
            return Err(PseudonymError::Short(path));
        }
        Ok(Pseudonymiser { key })
    }

    /// `kind` separates the domains, so a device id and an NHS number with the same text get different pseudonyms.
    pub fn pseudonym(&self, kind: &str, value: &str) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key)
            .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
        mac.update(kind.as_bytes());
        mac.update(&[0]);
        mac.update(value.as_bytes());
        let digest = mac.finalize().into_bytes();
        format!(
            "{}-{}",
            &kind[..kind.len().min(3)],
            hex::encode(&digest[..12])
        )
    }

    /// The pseudonym of a value, or the value itself when it already is a pseudonym of this kind (a run folder
    /// written with `--pseudonymise` read again by `query --pseudonymise` keeps its pseudonyms, so they still join).
    pub fn pseudonym_once(&self, kind: &str, value: &str) -> String {
        if is_pseudonym(kind, value) {
            value.to_string()
        } else {
            self.pseudonym(kind, value)
        }
    }

    /// Replaces every identifier column of a frame.
    pub fn frame(&self, df: &mut DataFrame) -> PolarsResult<()> {
        for name in IDENTIFIER_COLUMNS {
            let Ok(column) = df.column(name) else {
                continue;
            };
            let kind = if name.ends_with("nhs_number") {
                "nhs"
            } else if name.ends_with("account_id") {
                "acc"
            } else if *name == "device_id" {
                "dev"
            } else {
                "ip"
            };
            let as_text = column.cast(&DataType::String)?;
            let replaced: StringChunked = as_text
                .str()?
                .iter()
                .map(|v| v.map(|v| self.pseudonym_once(kind, v)))
                .collect();
            df.with_column(replaced.with_name((*name).into()).into_column())?;
        }
        Ok(())
    }
}

/// Whether `value` has the shape of a pseudonym of `kind` (prefix, dash, 24 lowercase hex digits).
pub fn is_pseudonym(kind: &str, value: &str) -> bool {
    let prefix = &kind[..kind.len().min(3)];
    value
        .strip_prefix(prefix)
        .and_then(|rest| rest.strip_prefix('-'))
        .is_some_and(|hex| {
            hex.len() == 24
                && hex
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pseudonyms_are_keyed_stable_and_domain_separated() {
        let a = Pseudonymiser {
            key: b"0123456789abcdef-key-one".to_vec(),
        };
        let b = Pseudonymiser {
            key: b"0123456789abcdef-key-two".to_vec(),
        };
        assert_eq!(
            a.pseudonym("nhs", "9434765919"),
            a.pseudonym("nhs", "9434765919")
        );
        assert_ne!(
            a.pseudonym("nhs", "9434765919"),
            b.pseudonym("nhs", "9434765919")
        );
        assert_ne!(a.pseudonym("nhs", "x"), a.pseudonym("dev", "x"));
        assert!(a.pseudonym("nhs", "9434765919").starts_with("nhs-"));
        assert!(!a.pseudonym("nhs", "9434765919").contains("9434765919"));
        let once = a.pseudonym("dev", "phone-1");
        assert!(is_pseudonym("dev", &once));
        assert!(!is_pseudonym("nhs", &once));
        assert_eq!(a.pseudonym_once("dev", &once), once);
        assert_eq!(b.pseudonym_once("dev", &once), once);
        assert!(!is_pseudonym("nhs", "9434765919"));
    }
}
