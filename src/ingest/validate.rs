//! Field-level validation exactly as the data contract states it: NHS numbers (Modulus 11), timestamps (RFC 3339
//! or naive practice-local time), enumerations, SNOMED CT identifiers (Verhoeff), IP addresses.
//!
//! Each function takes the trimmed text of one field and returns the normalised value or a reason in plain words.
//! Reasons never repeat the offending value: it may be an identifier, and the quarantine keeps the raw line anyway.

use std::borrow::Cow;
use std::net::IpAddr;

use chrono::{DateTime, LocalResult, NaiveDateTime, TimeZone};
use chrono_tz::Tz;

/// An NHS number as stored: 10 digits. Spaces and hyphens are allowed in input; the Modulus 11 check digit must hold.
pub fn nhs_number(text: &str) -> Result<String, String> {
    nhs_number_text(text).map(Cow::into_owned)
}

/// [`nhs_number`], borrowing the text when it is already 10 bare digits.
pub fn nhs_number_text(text: &str) -> Result<Cow<'_, str>, String> {
    let digits: Cow<str> = if text.bytes().any(|b| b == b' ' || b == b'-') {
        Cow::Owned(text.chars().filter(|c| *c != ' ' && *c != '-').collect())
    } else {
        Cow::Borrowed(text)
    };
    if digits.len() != 10 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err("NHS number must be 10 digits (spaces and hyphens allowed)".into());
    }
    if !nhs_check_digit_holds(digits.as_bytes()) {
        return Err("NHS number fails the Modulus 11 check digit".into());
    }
    Ok(digits)
}

/// The Modulus 11 check: weights 10..2 on the first nine digits; 11 - (sum mod 11) is the check digit, 11 reads as
/// 0 and 10 means the number is not valid.
pub fn nhs_check_digit_holds(digits: &[u8]) -> bool {
    if digits.len() != 10 {
        return false;
    }
    let sum: u32 = digits[..9]
        .iter()
        .zip((2..=10).rev())
        .map(|(d, w)| u32::from(d - b'0') * w)
        .sum();
    let check = match 11 - (sum % 11) {
        11 => 0,
        10 => return false,
        c => c,
    };
    u32::from(digits[9] - b'0') == check
}

/// Parses a timestamp to UTC microseconds since the epoch.
///
/// With an offset (`2026-03-01T21:14:05Z`, `...05.123+01:00`) it is an instant. Without one (`2026-03-01 21:14:05`,
/// `2026-03-01T21:14:05`, fractional seconds allowed) it is the practice's local time: a time in the spring-forward
/// gap does not exist and is rejected; a time in the autumn fold happened twice and takes the earlier instant.
pub fn timestamp(text: &str, tz: Tz) -> Result<i64, String> {
    if let Some(t) = utc_seconds(text) {
        return Ok(t);
    }
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Ok(t.timestamp_micros());
    }
    let naive = NAIVE_FORMATS
        .iter()
        .find_map(|f| NaiveDateTime::parse_from_str(text, f).ok())
        .ok_or_else(|| {
            "not a timestamp: expected RFC 3339 with an offset (2026-03-01T21:14:05Z) or local time (2026-03-01 21:14:05)"
                .to_string()
        })?;
    match tz.from_local_datetime(&naive) {
        LocalResult::Single(t) => Ok(t.timestamp_micros()),
        LocalResult::Ambiguous(earlier, _) => Ok(earlier.timestamp_micros()),
        LocalResult::None => Err(format!(
            "local time does not exist in {}: it falls in the spring-forward gap of the clock change",
            tz.name()
        )),
    }
}

/// The commonest shape, `2026-03-01T21:14:05Z`, read without chrono's general parser. Anything else, or anything
/// out of range (a leap second, 30 February), is left to it, so the answer is always chrono's.
fn utc_seconds(text: &str) -> Option<i64> {
    let b = text.as_bytes();
    if b.len() != 20
        || b[4] != b'-'
        || b[7] != b'-'
        || b[10] != b'T'
        || b[13] != b':'
        || b[16] != b':'
        || b[19] != b'Z'
    {
        return None;
    }
    let number = |range: std::ops::Range<usize>| {
        b[range].iter().try_fold(0u32, |n, d| {
            d.is_ascii_digit().then(|| n * 10 + u32::from(d - b'0'))
        })
    };
    let date =
        chrono::NaiveDate::from_ymd_opt(number(0..4)? as i32, number(5..7)?, number(8..10)?)?;
    let time = date.and_hms_opt(number(11..13)?, number(14..16)?, number(17..19)?)?;
    Some(time.and_utc().timestamp_micros())
}

const NAIVE_FORMATS: &[&str] = &["%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S%.f"];

/// Normalises an enumerated value (`Face to face`, `FACE-TO-FACE` -> `face_to_face`) and checks it is allowed.
pub fn one_of(text: &str, allowed: &'static [&'static str]) -> Result<&'static str, String> {
    let text = text.trim();
    allowed
        .iter()
        .copied()
        .find(|a| a.len() == text.len() && a.bytes().zip(text.bytes()).all(|(a, t)| a == fold(t)))
        .ok_or_else(|| format!("not one of the allowed values ({})", allowed.join(", ")))
}

/// Lower case, with spaces and hyphens folded to underscores: how enumerations and channels are compared and kept.
pub fn normalise_token(text: &str) -> String {
    token(text).into_owned()
}

/// [`normalise_token`], borrowing the text when it is already in that form.
pub fn token(text: &str) -> Cow<'_, str> {
    let text = text.trim();
    if text.bytes().all(|b| fold(b) == b) {
        return Cow::Borrowed(text);
    }
    Cow::Owned(
        text.chars()
            .map(|c| match c {
                ' ' | '-' => '_',
                c => c.to_ascii_lowercase(),
            })
            .collect(),
    )
}

/// One byte of a token as [`normalise_token`] keeps it (bytes of non-ASCII characters are left as they are).
fn fold(b: u8) -> u8 {
    match b {
        b' ' | b'-' => b'_',
        b => b.to_ascii_lowercase(),
    }
}

/// `true`/`false` (also `yes`/`no`, `1`/`0`, `t`/`f`, any case).
pub fn boolean(text: &str) -> Result<bool, String> {
    match text.to_ascii_lowercase().as_str() {
        "true" | "t" | "yes" | "y" | "1" => Ok(true),
        "false" | "f" | "no" | "n" | "0" => Ok(false),
        _ => Err("not true or false".into()),
    }
}

/// An IPv4 or IPv6 address, kept in its canonical text form.
pub fn ip_address(text: &str) -> Result<String, String> {
    ip_text(text).map(Cow::into_owned)
}

/// [`ip_address`], borrowing the text when it is already canonical.
pub fn ip_text(text: &str) -> Result<Cow<'_, str>, String> {
    let ip = text
        .parse::<IpAddr>()
        .map_err(|_| "not an IPv4 or IPv6 address".to_string())?;
    // IPv4's parser takes only the canonical dotted form; IPv6 has several spellings of one address.
    Ok(match ip {
        IpAddr::V4(_) => Cow::Borrowed(text),
        IpAddr::V6(v6) => {
            let canonical = v6.to_string();
            if canonical == text {
                Cow::Borrowed(text)
            } else {
                Cow::Owned(canonical)
            }
        }
    })
}

/// A clinical code. A numeric code must be a well-formed SNOMED CT identifier (6 to 18 digits, a valid partition
/// and a Verhoeff check digit); a code with letters is a practice-local code (EMIS and SystmOne both have them) and
/// is kept as it is, so term keywords can still recognise it.
pub fn clinical_code(text: &str) -> Result<String, String> {
    if text.chars().any(char::is_whitespace) {
        return Err("a code cannot contain spaces".into());
    }
    if !text.bytes().all(|b| b.is_ascii_digit()) {
        return Ok(text.to_string());
    }
    if !(6..=18).contains(&text.len()) || text.starts_with('0') {
        return Err("a SNOMED CT identifier has 6 to 18 digits and no leading zero".into());
    }
    if !snomed_id_is_valid(text) {
        return Err("not a valid SNOMED CT identifier (partition or Verhoeff check digit)".into());
    }
    Ok(text.to_string())
}

/// SNOMED CT SCTID check: the partition identifier (second and third digits from the right) names a component
/// type, and the last digit is a Verhoeff check digit over the rest.
pub fn snomed_id_is_valid(sctid: &str) -> bool {
    let b = sctid.as_bytes();
    if b.len() < 6 || !b.iter().all(u8::is_ascii_digit) {
        return false;
    }
    let partition = &sctid[b.len() - 3..b.len() - 1];
    if !matches!(
        partition,
        "00" | "01" | "02" | "03" | "04" | "05" | "10" | "11" | "12" | "13" | "14" | "15"
    ) {
        return false;
    }
    verhoeff_holds(sctid)
}

const VERHOEFF_D: [[u8; 10]; 10] = [
    [0, 1, 2, 3, 4, 5, 6, 7, 8, 9],
    [1, 2, 3, 4, 0, 6, 7, 8, 9, 5],
    [2, 3, 4, 0, 1, 7, 8, 9, 5, 6],
    [3, 4, 0, 1, 2, 8, 9, 5, 6, 7],
    [4, 0, 1, 2, 3, 9, 5, 6, 7, 8],
    [5, 9, 8, 7, 6, 0, 4, 3, 2, 1],
    [6, 5, 9, 8, 7, 1, 0, 4, 3, 2],
    [7, 6, 5, 9, 8, 2, 1, 0, 4, 3],
    [8, 7, 6, 5, 9, 3, 2, 1, 0, 4],
    [9, 8, 7, 6, 5, 4, 3, 2, 1, 0],
];
const VERHOEFF_P: [[u8; 10]; 8] = [
    [0, 1, 2, 3, 4, 5, 6, 7, 8, 9],
    [1, 5, 7, 6, 2, 8, 3, 0, 9, 4],
    [5, 8, 0, 3, 7, 9, 6, 1, 4, 2],
    [8, 9, 1, 6, 0, 4, 3, 5, 2, 7],
    [9, 4, 5, 3, 1, 2, 6, 8, 7, 0],
    [4, 2, 8, 6, 5, 7, 3, 9, 0, 1],
    [2, 7, 9, 3, 8, 0, 6, 4, 1, 5],
    [7, 0, 4, 6, 9, 1, 3, 2, 5, 8],
];

fn verhoeff_holds(digits: &str) -> bool {
    let mut c = 0u8;
    for (i, b) in digits.bytes().rev().enumerate() {
        c = VERHOEFF_D[c as usize][VERHOEFF_P[i % 8][(b - b'0') as usize] as usize];
    }
    c == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nhs_numbers() {
        assert_eq!(nhs_number("943 476 5919").as_deref(), Ok("9434765919"));
        assert_eq!(nhs_number("943-476-5919").as_deref(), Ok("9434765919"));
        assert!(nhs_number("9434765918").unwrap_err().contains("Modulus 11"));
        assert!(nhs_number("94347659").unwrap_err().contains("10 digits"));
        assert!(nhs_number("94347659x9").is_err());
        // Check digit 10 is never valid: 1000000010 has sum 10, 11 - 10 = 1... find one whose check would be 10.
        let ten = (0..1_000_000u32)
            .map(|n| format!("{n:09}"))
            .find(|s| {
                let sum: u32 = s
                    .bytes()
                    .zip((2..=10).rev())
                    .map(|(d, w)| u32::from(d - b'0') * w)
                    .sum();
                11 - sum % 11 == 10
            })
            .unwrap();
        for last in 0..10 {
            assert!(!nhs_check_digit_holds(format!("{ten}{last}").as_bytes()));
        }
    }

    #[test]
    fn timestamps_with_offsets_are_instants() {
        let london = chrono_tz::Europe::London;
        let z = timestamp("2026-03-01T21:14:05Z", london).unwrap();
        assert_eq!(z, 1_772_399_645_000_000);
        let plus1 = timestamp("2026-03-01T22:14:05.123+01:00", london).unwrap();
        assert_eq!(plus1, z + 123_000);
    }

    #[test]
    fn naive_times_are_practice_local() {
        let london = chrono_tz::Europe::London;
        // Winter: local = UTC.
        assert_eq!(
            timestamp("2026-03-01 21:14:05", london),
            timestamp("2026-03-01T21:14:05Z", london)
        );
        assert_eq!(
            timestamp("2026-03-01T21:14:05", london),
            timestamp("2026-03-01T21:14:05Z", london)
        );
        // Summer: local = UTC+1.
        assert_eq!(
            timestamp("2026-07-01 12:00:00", london),
            timestamp("2026-07-01T11:00:00Z", london)
        );
        // Spring forward (29 March 2026, 01:00 -> 02:00): 01:30 does not exist.
        assert!(timestamp("2026-03-29 01:30:00", london)
            .unwrap_err()
            .contains("spring-forward"));
        // Autumn fold (25 October 2026, 02:00 -> 01:00): 01:30 happened twice; the earlier is 00:30 UTC.
        assert_eq!(
            timestamp("2026-10-25 01:30:00", london),
            timestamp("2026-10-25T00:30:00Z", london)
        );
        assert!(timestamp("01/03/2026 21:14", london).is_err());
        assert!(timestamp("2026-02-30 10:00:00", london).is_err());
    }

    #[test]
    fn enumerations_are_normalised() {
        assert_eq!(
            one_of("Face to face", crate::schema::MODES),
            Ok("face_to_face")
        );
        assert_eq!(one_of(" VIEW ", crate::schema::ACTIONS), Ok("view"));
        assert!(one_of("peek", crate::schema::ACTIONS).is_err());
    }

    #[test]
    fn snomed_identifiers() {
        for good in [
            "1364731000000104",
            "1364751000000106",
            "1290331000000103",
            "22298006",
            "404684003",
        ] {
            assert!(snomed_id_is_valid(good), "{good}");
            assert_eq!(clinical_code(good).as_deref(), Ok(good));
        }
        assert!(clinical_code("1364731000000105").is_err());
        assert!(clinical_code("EMISNQCO303").is_ok());
        assert!(clinical_code("12 34").is_err());
    }

    #[test]
    fn ip_addresses_and_booleans() {
        assert_eq!(
            ip_address("2001:0db8:0000:0000:0000:0000:0000:0001").as_deref(),
            Ok("2001:db8::1")
        );
        assert!(ip_address("300.1.1.1").is_err());
        assert_eq!(boolean("FALSE"), Ok(false));
        assert!(boolean("maybe").is_err());
        // The borrowing form keeps canonical text as it is and rewrites the rest, as the parser's text would.
        for text in [
            "81.2.69.160",
            "0.0.0.0",
            "::1",
            "2001:db8::1",
            "2001:DB8::1",
            "::ffff:1.2.3.4",
            "1:0:0:0:0:0:0:1",
        ] {
            let canonical = text.parse::<IpAddr>().unwrap().to_string();
            let got = ip_text(text).unwrap();
            assert_eq!(got, canonical, "{text}");
            assert_eq!(matches!(got, Cow::Borrowed(_)), canonical == text, "{text}");
        }
        for bad in ["01.2.3.4", "1.2.3", " 1.2.3.4"] {
            assert!(ip_text(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_fast_timestamp_path_agrees_with_chrono() {
        // Every shape the fast path reads, and its edges: chrono's general parser is the reference.
        let london = chrono_tz::Europe::London;
        let mut texts: Vec<String> = Vec::new();
        for (y, m, d) in [
            (2026, 1, 31),
            (2024, 2, 29),
            (2025, 2, 29),
            (2026, 2, 30),
            (2026, 13, 1),
            (1999, 12, 31),
            (2026, 4, 0),
        ] {
            for (h, mi, se) in [
                (0, 0, 0),
                (23, 59, 59),
                (24, 0, 0),
                (12, 60, 0),
                (12, 0, 60),
                (7, 5, 9),
            ] {
                texts.push(format!("{y:04}-{m:02}-{d:02}T{h:02}:{mi:02}:{se:02}Z"));
            }
        }
        texts.extend(
            [
                "2026-03-01t21:14:05z",
                "2026-03-01T21:14:5Z",
                "2026-03-01T21:14:05+00:00",
                "2026-0a-01T21:14:05Z",
                "+026-03-01T21:14:05Z",
            ]
            .map(String::from),
        );
        let mut fast = 0;
        for t in &texts {
            let reference = DateTime::parse_from_rfc3339(t)
                .map(|d| d.timestamp_micros())
                .ok();
            if let Some(v) = utc_seconds(t) {
                fast += 1;
                assert_eq!(Some(v), reference, "{t}");
            }
            assert_eq!(
                timestamp(t, london).ok(),
                reference.or_else(|| timestamp(t, london).ok()),
                "{t}"
            );
        }
        assert!(fast >= 8, "the fast path read {fast} of the common shapes");
    }

    #[test]
    fn tokens_borrow_only_what_is_already_normal() {
        assert!(matches!(token("nhs_app"), Cow::Borrowed("nhs_app")));
        assert_eq!(token(" NHS App "), "nhs_app");
        assert_eq!(token("Über-App"), "Über_app");
        assert_eq!(
            one_of("face-to-face", crate::schema::MODES),
            Ok("face_to_face")
        );
        assert!(one_of("Über", crate::schema::ACTIONS).is_err());
    }
}
