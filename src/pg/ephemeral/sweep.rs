//! Removing throwaway clusters whose run died without cleaning up (SIGKILL,
//! power loss), without trusting anything another local user could have put
//! in the temp dir: a `pgbak-verify-*` directory is swept only when it is a
//! real directory (no symlink), owned by pgbak's user or the cluster's
//! dedicated one, mode 0700, with an owner file nobody holds; its server is
//! stopped only when the pid in `postmaster.pid` is a `postgres` whose working
//! directory is that cluster's data directory (PostgreSQL chdirs there). A
//! planted directory naming some other process's pid stops nothing.

use std::fs::File;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;
use std::time::Duration;

use rustix::fs::OFlags;

use super::{DIR_PREFIX, OWNER_FILE};
use crate::ui;

/// What the sweep saw of a candidate directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DirFacts {
    pub is_dir: bool,
    pub is_symlink: bool,
    pub owner: u32,
    pub mode: u32,
}

/// Whether a `pgbak-verify-*` directory with these facts may be one of ours:
/// a real directory, owned by one of `owners`, reachable by nobody else. Pure.
pub fn trusted_dir(facts: &DirFacts, owners: &[u32]) -> bool {
    facts.is_dir && !facts.is_symlink && owners.contains(&facts.owner) && facts.mode & 0o077 == 0
}

/// Opens `path` for reading without following a symlink, without blocking
/// on a FIFO, and only when it is a regular file owned by one of `owners`.
fn open_own_file(path: &Path, owners: &[u32]) -> Option<File> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags((OFlags::NOFOLLOW | OFlags::NONBLOCK).bits() as i32)
        .open(path)
        .ok()?;
    let meta = file.metadata().ok()?;
    (meta.is_file() && owners.contains(&meta.uid())).then_some(file)
}

/// The pid in `data/postmaster.pid`, when `data` is a real directory and the
/// file a regular one of ours.
fn postmaster_pid(data: &Path, owners: &[u32]) -> Option<i32> {
    let meta = std::fs::symlink_metadata(data).ok()?;
    if !meta.is_dir() {
        return None;
    }
    let mut text = String::new();
    std::io::Read::read_to_string(
        &mut open_own_file(&data.join("postmaster.pid"), owners)?,
        &mut text,
    )
    .ok()?;
    text.lines()
        .next()?
        .trim()
        .parse::<i32>()
        .ok()
        .filter(|p| *p > 1)
}

/// Whether `pid` is a postgres server running in `data` (its executable is
/// named postgres and its working directory is `data`).
fn is_postmaster_of(pid: i32, data: &Path) -> bool {
    let proc = std::path::PathBuf::from(format!("/proc/{pid}"));
    let exe_is_postgres = std::fs::read_link(proc.join("exe"))
        .ok()
        .and_then(|exe| exe.file_name().map(|n| n == "postgres"))
        .unwrap_or(false);
    let cwd = std::fs::read_link(proc.join("cwd")).ok();
    let data = std::fs::canonicalize(data).ok();
    exe_is_postgres && cwd.is_some() && cwd == data
}

/// Removes the throwaway clusters of dead runs in `temp_dir` that [`trusted_dir`]
/// accepts for `owners` (pgbak's user and the cluster's). Clusters kept with
/// --no-cleanup have no owner file and stay.
pub fn sweep_dead(temp_dir: &Path, owners: &[u32]) {
    let Ok(entries) = std::fs::read_dir(temp_dir) else {
        return;
    };
    for entry in entries.flatten() {
        if !entry.file_name().to_string_lossy().starts_with(DIR_PREFIX) {
            continue;
        }
        let dir = entry.path();
        let Ok(meta) = std::fs::symlink_metadata(&dir) else {
            continue;
        };
        let facts = DirFacts {
            is_dir: meta.is_dir(),
            is_symlink: meta.file_type().is_symlink(),
            owner: meta.uid(),
            mode: meta.mode(),
        };
        if !trusted_dir(&facts, owners) {
            ui::debug(&format!(
                "leaving {} alone: not a 0700 directory of pgbak's",
                dir.display()
            ));
            continue;
        }
        let Some(owner) = open_own_file(&dir.join(OWNER_FILE), owners) else {
            continue;
        };
        if owner.try_lock().is_err() {
            continue;
        }
        let data = dir.join("data");
        if let Some(pid) = postmaster_pid(&data, owners).filter(|p| is_postmaster_of(*p, &data)) {
            if let Some(pid) = rustix::process::Pid::from_raw(pid) {
                // SIGQUIT: the server's immediate shutdown.
                let _ = rustix::process::kill_process(pid, rustix::process::Signal::QUIT);
                std::thread::sleep(Duration::from_millis(500));
            }
        }
        ui::info(&format!(
            "removing the throwaway cluster {}, left by a verify run that died",
            dir.display()
        ));
        if let Err(err) = std::fs::remove_dir_all(&dir) {
            ui::warn(&format!("could not remove {}: {err}", dir.display()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_private_directories_of_ours_are_swept() {
        let ours = DirFacts {
            is_dir: true,
            is_symlink: false,
            owner: 1000,
            mode: 0o40700,
        };
        let owners = [1000, 998];
        assert!(trusted_dir(&ours, &owners));
        assert!(trusted_dir(&DirFacts { owner: 998, ..ours }, &owners));
        for bad in [
            DirFacts {
                owner: 65534,
                ..ours
            },
            DirFacts {
                mode: 0o40755,
                ..ours
            },
            DirFacts {
                mode: 0o40710,
                ..ours
            },
            DirFacts {
                mode: 0o40701,
                ..ours
            },
            DirFacts {
                is_symlink: true,
                ..ours
            },
            DirFacts {
                is_dir: false,
                ..ours
            },
        ] {
            assert!(!trusted_dir(&bad, &owners), "{bad:?}");
        }
    }

    #[test]
    fn a_process_outside_the_data_dir_is_no_postmaster_of_it() {
        // This test process: not postgres, and not running in /tmp.
        let own = i32::try_from(std::process::id()).unwrap_or(i32::MAX);
        assert!(!is_postmaster_of(own, Path::new("/tmp")));
        let cwd = std::env::current_dir().unwrap_or_default();
        assert!(!is_postmaster_of(own, &cwd), "its exe is not postgres");
    }
}
