//! Clinical context: what appeared in the record and when. The sensitive code catalogue, and the views over the
//! store that the detection rules read (sensitive entries, restriction periods, formal proxies, face-to-face
//! visits).

pub mod catalogue;
pub mod views;

/// The 104 code: enhanced review indicated; stops automatic online access to new entries.
pub const CODE_104: &str = "1364731000000104";
/// The 106 code: enhanced review not indicated; negates an earlier 104.
pub const CODE_106: &str = "1364751000000106";
/// The 103 code: the patient declined online access.
pub const CODE_103: &str = "1290331000000103";
