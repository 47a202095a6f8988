//! The temporary directories restore and verify download S3 backups into
//! (`pgbak-fetch-*` in `--scratch-dir` when given, else in `$TMPDIR`):
//! private, marked with the run that made them, and swept once that run is gone.
//!
//! A download holds a whole dump (plaintext, for an unencrypted backup), so
//! the directory is created 0700 (never wider, whatever the umask) and
//! removed when the run ends. A run killed with SIGKILL cannot remove it, so
//! its name carries the run's mark, like the `PGBAK_PARENT` mark of its
//! children ([`crate::children`]): `pgbak-fetch-<pidns>-<pid>-<start>-<random>`,
//! the pid namespace, pid and start time of the pgbak that made it. The next
//! `backup`, `verify`, `restore` or `cron` removes the directories whose run
//! no longer runs ([`sweep`]) - only real directories (not symlinks), owned
//! by the user pgbak runs as, marked in its own pid namespace: never a live
//! run's, never another user's, never one whose mark it cannot read (made by
//! an older pgbak, or by hand).

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use anyhow::{Context, Result};

use crate::error::usage;
use crate::ui;

const PREFIX: &str = "pgbak-fetch-";

/// `--scratch-dir` (`PGBAK_SCRATCH_DIR`) of this run, set once at dispatch:
/// downloads go there instead of `$TMPDIR`.
static SCRATCH: OnceLock<PathBuf> = OnceLock::new();

/// Downloads of this run go into `scratch` (`--scratch-dir`) when given; the
/// leftovers of dead runs there are swept now, as `$TMPDIR`'s are.
pub fn use_scratch(scratch: Option<&Path>) {
    let Some(dir) = scratch else {
        return;
    };
    if SCRATCH.set(dir.to_path_buf()).is_ok() && dir != crate::settings::temp_dir() {
        sweep_in(dir);
    }
}

/// Where this run's downloads go: `--scratch-dir`, else `$TMPDIR`.
pub fn download_dir() -> PathBuf {
    SCRATCH
        .get()
        .cloned()
        .unwrap_or_else(crate::settings::temp_dir)
}

/// This process's pid namespace, as the number `/proc/self/ns/pid` names
/// (`pid:[4026531836]`); 0 when it cannot be read.
fn pid_namespace() -> u64 {
    std::fs::read_link("/proc/self/ns/pid")
        .ok()
        .and_then(|link| {
            let text = link.to_string_lossy().into_owned();
            text.strip_prefix("pid:[")?.strip_suffix(']')?.parse().ok()
        })
        .unwrap_or(0)
}

/// The name's prefix for this run: `pgbak-fetch-<pidns>-<pid>-<start>-`.
fn own_prefix() -> String {
    let (pid, start) = crate::children::identity()
        .split_once(':')
        .unwrap_or(("0", "0"));
    format!("{PREFIX}{}-{pid}-{start}-", pid_namespace())
}

/// `pgbak-fetch-<pidns>-<pid>-<start>-<random>` -> (pidns, pid, start); None
/// for any other name (pure).
pub fn parse_name(name: &str) -> Option<(u64, u32, u64)> {
    let mut parts = name.strip_prefix(PREFIX)?.splitn(4, '-');
    let ns = parts.next()?.parse().ok()?;
    let pid = parts.next()?.parse().ok()?;
    let start = parts.next()?.parse().ok()?;
    parts.next().filter(|random| !random.is_empty())?;
    Some((ns, pid, start))
}

/// A new private download directory in [`download_dir`], removed on drop.
/// A `--scratch-dir` that is not a directory is a usage error (exit 2).
pub fn create() -> Result<tempfile::TempDir> {
    let dir = download_dir();
    if SCRATCH.get().is_some() && !dir.is_dir() {
        return Err(usage(format!(
            "--scratch-dir {} is not a directory pgbak can use",
            dir.display()
        )));
    }
    let prefix = own_prefix();
    let temp = tempfile::Builder::new()
        .prefix(&prefix)
        .permissions(std::fs::Permissions::from_mode(0o700))
        .tempdir_in(&dir)
        .with_context(|| {
            format!(
                "creating a temporary directory for the download in {}",
                dir.display()
            )
        })?;
    Ok(temp)
}

/// Why `path` (named for the dead run) may not be removed, or None when it may.
fn refusal(path: &Path) -> Option<&'static str> {
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return Some("gone");
    };
    if !meta.file_type().is_dir() {
        return Some("not a directory");
    }
    if meta.uid() != rustix::process::geteuid().as_raw() {
        return Some("owned by another user");
    }
    None
}

/// Removes the download directories of runs that died (see the module doc)
/// from `$TMPDIR`. Never fails the run: what cannot be removed is warned about.
pub fn sweep() {
    sweep_in(&crate::settings::temp_dir());
}

/// [`sweep`] in `dir`.
fn sweep_in(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let own_ns = pid_namespace();
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some((ns, pid, start)) = name.to_str().and_then(parse_name) else {
            continue;
        };
        if ns != own_ns || crate::children::runs(pid, start) {
            continue;
        }
        let path: PathBuf = entry.path();
        if let Some(why) = refusal(&path) {
            ui::debug(&format!("leaving {} alone: {why}", path.display()));
            continue;
        }
        ui::info(&format!(
            "removing {}, the download of a pgbak run (pid {pid}) that died",
            path.display()
        ));
        if let Err(err) = std::fs::remove_dir_all(&path) {
            ui::warn(&format!("could not remove {}: {err}", path.display()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_carry_the_run_and_only_ours_parse() {
        assert_eq!(
            parse_name("pgbak-fetch-4026531836-123-456789-AbC1x2"),
            Some((4_026_531_836, 123, 456_789))
        );
        for other in [
            "pgbak-fetch-Xy12Ab",
            "pgbak-fetch-1-2-3-",
            "pgbak-fetch-1-2-x-abc",
            "pgbak-verify-1-2-3-abc",
            "pgbak-fetch-",
        ] {
            assert_eq!(parse_name(other), None, "{other}");
        }
        let own = format!("{}xyz", own_prefix());
        let (ns, pid, _) = parse_name(&own).expect("own name parses");
        assert_eq!((ns, pid), (pid_namespace(), std::process::id()));
    }

    #[test]
    fn a_new_directory_is_private_and_marked_alive() {
        let temp = create().unwrap();
        let meta = std::fs::symlink_metadata(temp.path()).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o700);
        let name = temp.path().file_name().unwrap().to_str().unwrap();
        let (_, pid, start) = parse_name(name).unwrap();
        assert!(crate::children::runs(pid, start));
        assert_eq!(refusal(temp.path()), None);
    }
}
