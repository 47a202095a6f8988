//! The defaults that more than one place needs, each written once: clap's
//! `default_value*` in [`crate::cli`] names these constants, and so does the
//! code that builds settings without a command line of its own (cron's
//! verify of the backup it just made, the commands that have no such flag).

use std::time::Duration;

/// The backup directory of the commands run by hand (`--output-dir`,
/// `--backup-dir`) when neither the flag nor `BACKUP_DIR` says.
pub const BACKUP_DIR: &str = "./backups";

/// Parallel pg_restore jobs of verify and restore (the scripts' `--jobs 4`).
pub const RESTORE_JOBS: u32 = 4;

/// `maintenance_work_mem` of verify's and restore's pg_restore (HNSW index
/// builds are the slow part of a restore).
pub const MAINTENANCE_WORK_MEM: &str = "1GB";

/// The longest wait for a table lock (`--lock-wait-timeout`), as clap reads it.
pub const LOCK_WAIT_TIMEOUT: &str = "10m";

/// [`LOCK_WAIT_TIMEOUT`] as a duration, for the commands that take no such flag.
pub fn lock_wait_timeout() -> Duration {
    // A constant that the unit test below parses: the fallback is never taken.
    crate::cli::parse_duration(LOCK_WAIT_TIMEOUT).unwrap_or(Duration::from_secs(600))
}

/// As root, the system user of the `--ephemeral` server, unless
/// `PGBAK_EPHEMERAL_USER` names another.
pub const EPHEMERAL_USER: &str = "pgbak";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lock_wait_default_parses() {
        assert_eq!(
            crate::cli::parse_duration(LOCK_WAIT_TIMEOUT),
            Ok(lock_wait_timeout())
        );
    }
}
