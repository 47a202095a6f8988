//! One run at a time per backup group: two cron runs of the same database,
//! mode and label must never dump, verify and prune the same set at once,
//! while the daily full and the weekly schema run may overlap (each prunes
//! only its own group).
//!
//! The lock is `flock` on `<dir>/.pgbak-<db>_<mode>[_<label>].<server>.lock` (std's
//! `File::try_lock`), so the kernel releases it when the process ends, however it ends: a run
//! killed with SIGKILL never blocks the next one. The server's name is part of it because a
//! group is per server: `app` of two servers backed up into one directory are two groups, and
//! neither run waits for the other. The file holds the owner's
//! //! pid and start time, only to tell the second run who holds it.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};

use crate::error::{Exit, LOCKED};
use crate::storage::fsio;

/// The lock file of one backup group inside the backup directory, named
/// like the group's backups: the database and the server's name (`--server-name`,
/// which names the group's backups too) made safe the same way.
pub fn lock_file_name(
    server: &str,
    database: &str,
    mode: crate::mode::Mode,
    label: Option<&str>,
) -> String {
    let mut name = format!(
        ".pgbak-{}_{}",
        crate::storage::safe_database_name(database),
        mode.as_str()
    );
    if let Some(label) = label {
        name.push('_');
        name.push_str(label);
    }
    name.push('.');
    name.push_str(&crate::storage::safe_database_name(server));
    name.push_str(".lock");
    name
}

/// Held for as long as it lives; dropping it (or dying) releases the lock.
#[derive(Debug)]
pub struct RunLock {
    file: File,
    path: PathBuf,
}

impl RunLock {
    /// Takes the lock `name` in `dir`, waiting up to `wait` (polling once a
    /// second) for its holder to finish. A signal ends the wait (exit 130/143).
    pub async fn acquire_waiting(
        dir: &Path,
        name: &str,
        wait: Duration,
        signals: &mut crate::signals::Signals,
    ) -> Result<RunLock> {
        let deadline = std::time::Instant::now() + wait;
        let mut announced = false;
        loop {
            match RunLock::acquire(dir, name) {
                Err(err) if crate::error::exit_code(&err) == LOCKED => {
                    let left = deadline.saturating_duration_since(std::time::Instant::now());
                    if left.is_zero() {
                        if wait.is_zero() {
                            return Err(err);
                        }
                        return Err(Exit {
                            code: LOCKED,
                            message: format!("{err} (waited {}s)", wait.as_secs()),
                        }
                        .into());
                    }
                    if !announced {
                        crate::ui::info(&format!(
                            "{err}; waiting up to {}s for it (--lock-wait)",
                            left.as_secs()
                        ));
                        announced = true;
                    }
                    let nap = left.min(Duration::from_secs(1));
                    signals
                        .guard(async {
                            tokio::time::sleep(nap).await;
                            Ok(())
                        })
                        .await?;
                }
                other => return other,
            }
        }
    }

    /// Takes the lock `name` in `dir` (created 0700 if missing) without
    /// waiting. When another process holds it: an [`Exit`] error with code
    /// 75 naming that process.
    pub fn acquire(dir: &Path, name: &str) -> Result<RunLock> {
        fsio::ensure_dir(dir)?;
        let path = dir.join(name);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .with_context(|| format!("opening the lock file {}", path.display()))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let owner = read_owner(&mut file);
                return Err(Exit {
                    code: LOCKED,
                    message: format!(
                        "another pgbak run of this backup holds the lock {} ({owner}); not starting a second one",
                        path.display()
                    ),
                }
                .into());
            }
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(e).with_context(|| format!("locking {}", path.display()));
            }
        }
        let owner = format!(
            "pid={}\nstarted={}\n",
            std::process::id(),
            chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        );
        (|| -> std::io::Result<()> {
            file.set_len(0)?;
            file.rewind()?;
            file.write_all(owner.as_bytes())?;
            file.sync_data()
        })()
        .with_context(|| format!("writing the owner into {}", path.display()))?;
        Ok(RunLock { file, path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for RunLock {
    fn drop(&mut self) {
        // Clear the owner so a stale pid is never reported; closing the file releases the lock.
        let _ = self.file.set_len(0);
    }
}

/// "pid 1234, started 2026-11-25T02:00:00Z", read from the holder's file. The
/// holder writes it right after locking, so an empty file is read again briefly.
fn read_owner(file: &mut File) -> String {
    for _ in 0..20 {
        let mut text = String::new();
        if file.rewind().is_ok() && file.read_to_string(&mut text).is_ok() {
            if let Some(owner) = parse_owner(&text) {
                return owner;
            }
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    "owner unknown".to_owned()
}

fn parse_owner(text: &str) -> Option<String> {
    let field = |key: &str| {
        text.lines()
            .find_map(|line| line.strip_prefix(key)?.strip_prefix('='))
            .map(str::trim)
            .filter(|v| !v.is_empty())
    };
    let pid = field("pid")?;
    Some(match field("started") {
        Some(started) => format!("pid {pid}, started {started}"),
        None => format!("pid {pid}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mode::Mode;

    #[test]
    fn a_group_lock_is_named_by_database_mode_label_and_server() {
        let name = |server, db, mode, label| lock_file_name(server, db, mode, label);
        assert_eq!(
            name("db-a", "app", Mode::Full, None),
            ".pgbak-app_full.db-a.lock"
        );
        assert_eq!(
            name("db-a", "app", Mode::Schema, Some("weekly")),
            ".pgbak-app_schema_weekly.db-a.lock"
        );
        // Two servers, two locks; the same server reached twice, one.
        assert_ne!(
            name("db-a", "app", Mode::Full, None),
            name("db-b", "app", Mode::Full, None)
        );
        // A host:port or a name with a slash stays one file name, told apart injectively.
        let socket = name("host:5432", "app", Mode::Full, None);
        assert!(!socket.contains([':', '/']), "{socket}");
        assert_ne!(socket, name("host-5432", "app", Mode::Full, None));
        assert!(!name("a/../b", "app", Mode::Full, None).contains('/'));
    }

    #[test]
    fn second_lock_is_refused_with_the_owner_then_released_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        let first = RunLock::acquire(dir.path(), ".a.lock").unwrap();
        assert!(fsio::is_private(first.path()));
        let other = RunLock::acquire(dir.path(), ".b.lock").expect("another group is free");
        drop(other);
        let err = RunLock::acquire(dir.path(), ".a.lock").unwrap_err();
        assert_eq!(crate::error::exit_code(&err), LOCKED);
        let text = err.to_string();
        assert!(
            text.contains(&format!("pid {}", std::process::id())) && text.contains("started 20"),
            "{text}"
        );
        drop(first);
        let again = RunLock::acquire(dir.path(), ".a.lock").unwrap();
        drop(again);
    }

    #[test]
    fn lock_names_follow_the_group() {
        use crate::mode::Mode;
        let cases = [
            (
                "enterprise_agents",
                Mode::Full,
                None,
                ".pgbak-enterprise_agents_full.srv.lock",
            ),
            (
                "enterprise_agents",
                Mode::Schema,
                None,
                ".pgbak-enterprise_agents_schema.srv.lock",
            ),
            (
                "app",
                Mode::Full,
                Some("pre-migration"),
                ".pgbak-app_full_pre-migration.srv.lock",
            ),
        ];
        for (db, mode, label, want) in cases {
            assert_eq!(lock_file_name("srv", db, mode, label), want);
        }
        let odd = lock_file_name("srv", "../etc/x y", Mode::Full, None);
        assert!(!odd.contains('/') && !odd.contains(' '), "{odd}");
    }

    #[test]
    fn owner_parsing() {
        let cases = [
            (
                "pid=12\nstarted=2026-11-25T02:00:00Z\n",
                Some("pid 12, started 2026-11-25T02:00:00Z"),
            ),
            ("pid=12\n", Some("pid 12")),
            ("", None),
            ("pid=\n", None),
            ("garbage", None),
        ];
        for (text, want) in cases {
            assert_eq!(parse_owner(text).as_deref(), want, "{text:?}");
        }
    }
}
