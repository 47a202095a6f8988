//! What a backup holds: its mode. Part of every backup's file name and
//! meta.json (`"mode": "full"`), and of its group for retention and locks.

use std::fmt;

use clap::ValueEnum;
use serde::{Deserialize, Serialize};

/// What a backup holds. In meta.json and file names as `full`, `schema`,
/// `data`, `globals`.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, ValueEnum, Serialize, Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Schema and data.
    Full,
    /// DDL only.
    Schema,
    /// Rows only.
    Data,
    /// Roles, memberships, role settings and tablespaces (`pg_dumpall --globals-only`):
    /// written by `--all-databases` and `--globals`, never asked for with `--mode`.
    #[value(skip)]
    Globals,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Full => "full",
            Mode::Schema => "schema",
            Mode::Data => "data",
            Mode::Globals => "globals",
        }
    }

    pub fn parse(text: &str) -> Option<Mode> {
        match text {
            "full" => Some(Mode::Full),
            "schema" => Some(Mode::Schema),
            "data" => Some(Mode::Data),
            "globals" => Some(Mode::Globals),
            _ => None,
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_round_trip_as_their_names() {
        for mode in [Mode::Full, Mode::Schema, Mode::Data, Mode::Globals] {
            assert_eq!(Mode::parse(mode.as_str()), Some(mode));
            let json = serde_json::to_string(&mode).unwrap();
            assert_eq!(json, format!("\"{}\"", mode.as_str()));
            assert_eq!(serde_json::from_str::<Mode>(&json).unwrap(), mode);
        }
        assert_eq!(Mode::parse("everything"), None);
        assert!(serde_json::from_str::<Mode>("\"Full\"").is_err());
    }
}
