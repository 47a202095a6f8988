//! Filesystem steps that make "a file named `.dump` is always complete" true:
//! exclusive creation with mode 0600, fsync, rename without replacing, and
//! fsync of the directory so the rename survives a crash.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

/// Creates `dir` (and parents) with mode 0700 when missing.
pub fn ensure_dir(dir: &Path) -> Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("creating the directory {}", dir.display()))
}

/// Creates `path` for writing, mode 0600; fails if it exists.
pub fn create_new(path: &Path) -> std::io::Result<File> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
}

/// fsyncs a directory so renames and unlinks in it are durable.
pub fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("syncing the directory {}", dir.display()))
}

/// Renames `from` to `to`, failing rather than replacing an existing `to`.
pub fn rename_noreplace(from: &Path, to: &Path) -> Result<()> {
    use rustix::fs::{renameat_with, RenameFlags, CWD};
    use rustix::io::Errno;
    let err = match renameat_with(CWD, from, CWD, to, RenameFlags::NOREPLACE) {
        Ok(()) => return Ok(()),
        Err(errno) => errno,
    };
    if err == Errno::INVAL || err == Errno::NOSYS {
        // Filesystems without RENAME_NOREPLACE: a hard link fails on an existing target too.
        std::fs::hard_link(from, to)
            .with_context(|| format!("renaming {} to {}", from.display(), to.display()))?;
        std::fs::remove_file(from).with_context(|| format!("removing {}", from.display()))?;
        return Ok(());
    }
    if err == Errno::EXIST {
        bail!("{} already exists; not replacing it", to.display());
    }
    Err(std::io::Error::from(err))
        .with_context(|| format!("renaming {} to {}", from.display(), to.display()))
}

/// The `.partial` name a file is written under before it is complete.
pub fn partial_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".partial");
    path.with_file_name(name)
}

/// Creates `partial` exclusively; a stale one (left by a process that died
/// between creating and renaming it, so nobody holds its lock) is removed
/// first. One held by a live writer is an error, never taken over.
fn create_partial(partial: &Path) -> Result<File> {
    match create_new(partial) {
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            let held = File::open(partial).is_ok_and(|f| f.try_lock().is_err());
            if held {
                bail!(
                    "{} is being written by another pgbak process",
                    partial.display()
                );
            }
            std::fs::remove_file(partial)
                .with_context(|| format!("removing the stale {}", partial.display()))?;
            create_new(partial)
        }
        other => other,
    }
    .with_context(|| format!("creating {}", partial.display()))
    .and_then(|file| {
        file.try_lock()
            .map_err(std::io::Error::other)
            .with_context(|| format!("locking {}", partial.display()))?;
        Ok(file)
    })
}

/// Writes `bytes` to `path` atomically, mode 0600: `path.partial` (locked while
/// written), fsync, rename, fsync of the directory. On any error the partial
/// file is removed; a stale partial of a dead process is replaced.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let partial = partial_path(path);
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut created = false;
    let result = (|| {
        let mut file = create_partial(&partial)?;
        created = true;
        file.write_all(bytes)
            .and_then(|()| file.sync_all())
            .with_context(|| format!("writing {}", partial.display()))?;
        std::fs::rename(&partial, path)
            .with_context(|| format!("renaming {} into place", partial.display()))?;
        sync_dir(dir)
    })();
    // Never remove a partial this call did not create (another writer's).
    if result.is_err() && created {
        let _ = std::fs::remove_file(&partial);
    }
    result
}

/// True when `path` is a regular file readable only by its owner (0600 or stricter).
pub fn is_private(path: &Path) -> bool {
    std::fs::metadata(path)
        .map(|m| m.permissions().mode() & 0o077 == 0)
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_replaces_a_stale_partial_but_not_a_live_one() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.json");
        std::fs::write(partial_path(&a), b"left by a dead run").unwrap();
        write_atomic(&a, b"{}").unwrap();
        assert_eq!(std::fs::read(&a).unwrap(), b"{}");
        assert!(!partial_path(&a).exists());

        let live = create_partial(&partial_path(&a)).unwrap();
        let err = write_atomic(&a, b"[]").unwrap_err();
        assert!(
            format!("{err:#}").contains("another pgbak process"),
            "{err:#}"
        );
        assert!(partial_path(&a).exists(), "the live writer's partial stays");
        assert_eq!(std::fs::read(&a).unwrap(), b"{}");
        drop(live);
    }

    #[test]
    fn atomic_write_is_private_and_noreplace_refuses() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.json");
        write_atomic(&a, b"{}").unwrap();
        assert!(is_private(&a));
        assert!(!partial_path(&a).exists());
        let b = dir.path().join("b");
        std::fs::write(&b, "b").unwrap();
        assert!(rename_noreplace(&b, &a).is_err());
        assert_eq!(std::fs::read(&a).unwrap(), b"{}");
        let c = dir.path().join("c");
        rename_noreplace(&b, &c).unwrap();
        assert!(c.exists() && !b.exists());
    }
}
