//! The loop both whole-server commands run (`backup --all-databases` and
//! `restore --all-databases`): every database in turn; one that fails is
//! named and collected and the next one runs; an interruption (SIGINT,
//! SIGTERM, `--timeout`) stops the loop at once, and the caller says what
//! is done and what is left. Written once, so the two cannot drift apart.

use crate::error::{is_interruption, one_line};
use crate::ui;

/// What the loop collected so far.
#[derive(Debug, Default)]
pub struct Tally {
    /// (database, why), in run order.
    pub failed: Vec<(String, String)>,
}

impl Tally {
    /// Takes the error one database ended with. An interruption comes back
    /// as `Err`: the loop stops there. Any other error is logged as
    /// `{label}: why`, collected, and handed back for the caller to keep.
    pub fn take(
        &mut self,
        database: &str,
        label: &str,
        err: anyhow::Error,
    ) -> anyhow::Result<anyhow::Error> {
        if is_interruption(&err) {
            return Err(err);
        }
        ui::error(&format!("{label}: {}", one_line(&err)));
        self.failed.push((database.to_owned(), one_line(&err)));
        Ok(err)
    }

    /// A database that failed in a way its step has already reported.
    pub fn failed(&mut self, database: &str, why: &str) {
        self.failed.push((database.to_owned(), why.to_owned()));
    }
}
