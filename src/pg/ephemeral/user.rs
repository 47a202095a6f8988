//! Who runs the throwaway cluster and how its children start. PostgreSQL
//! refuses root; as root, pgbak runs the server as a dedicated unprivileged
//! system user (`pgbak` unless `PGBAK_EPHEMERAL_USER` names another), never as
//! `postgres` (the owner of the host's real clusters) nor root: a dump's code
//! that reaches the operating system through the throwaway server then holds
//! nothing but that user's own files. Not root: the server runs as pgbak's own
//! user, which no other local user can enter (the cluster's directory is 0700).

use std::path::{Path, PathBuf};
use std::process::Stdio;

use anyhow::Result;
use tokio::process::Command;

use crate::error::usage;

/// The OS user the throwaway server runs as when pgbak runs as root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerUser {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
}

/// The system user to run the throwaway server as: None when pgbak does not
/// run as root (the server then runs as pgbak's own user). As root: `name`
/// (PGBAK_EPHEMERAL_USER, default `pgbak`) must exist and be neither root nor
/// `postgres`, else a usage error (exit 2) saying how to create it.
pub fn server_user(name: &str) -> Result<Option<ServerUser>> {
    if !rustix::process::geteuid().is_root() {
        return Ok(None);
    }
    if name == "postgres" || name == "root" {
        return Err(usage(format!(
            "PGBAK_EPHEMERAL_USER={name}: the throwaway cluster of --ephemeral never runs as root \
             or postgres (a dump's code would run with that user's files); name an unprivileged \
             system user of its own, such as pgbak"
        )));
    }
    let Some((uid, gid)) = lookup(name) else {
        return Err(usage(format!(
            "pgbak runs as root, and --ephemeral runs its throwaway server as the unprivileged \
             system user {name:?}, which does not exist here: create it with `useradd --system \
             --no-create-home --shell /usr/sbin/nologin {name}` (the pgbak package does), or name \
             another with PGBAK_EPHEMERAL_USER (never root or postgres)"
        )));
    };
    if uid == 0 {
        return Err(usage(format!(
            "PGBAK_EPHEMERAL_USER={name} has uid 0: the throwaway cluster never runs as root"
        )));
    }
    Ok(Some(ServerUser {
        name: name.to_owned(),
        uid,
        gid,
    }))
}

/// uid and gid of the system user `name`, if there is one.
pub fn lookup(name: &str) -> Option<(u32, u32)> {
    // getpwnam_r through nix: the system's name service (files, LDAP, sssd), as `id NAME`.
    let user = nix::unistd::User::from_name(name).ok().flatten()?;
    Some((user.uid.as_raw(), user.gid.as_raw()))
}

/// Whether a child of pgbak dies with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tether {
    /// SIGQUIT (the server's immediate shutdown) when pgbak dies.
    DiesWithPgbak,
    /// Outlives pgbak (a server kept with --no-cleanup).
    Outlives,
}

/// The only variables initdb and the throwaway server inherit.
pub const CHILD_ENV: &[&str] = &["PATH", "LANG", "TZ"];

/// A command that runs as `user` (when given): groups dropped, gid then uid set.
pub fn command_as(
    program: &Path,
    user: Option<&ServerUser>,
    cwd: &Path,
    tether: Tether,
) -> Command {
    let mut cmd = Command::new(program);
    // initdb and the throwaway server need no secret of pgbak's: they get a
    // clean environment, so DATABASE_URL, AWS keys, webhook URLs and routing
    // keys never reach them (nor /proc/<pid>/environ of the server's user).
    cmd.env_clear();
    for key in CHILD_ENV {
        if let Some(value) = crate::settings::env().get_os(key) {
            cmd.env(key, value);
        }
    }
    cmd.current_dir(cwd).stdin(Stdio::null()).kill_on_drop(true);
    if let Some(user) = user {
        // In the child, before it runs anything, std sets the gid, drops the
        // supplementary groups (setgroups(0), as root), then sets the uid.
        cmd.gid(user.gid).uid(user.uid);
    }
    if tether == Tether::DiesWithPgbak {
        crate::pg::tools::die_with_parent(&mut cmd, rustix::process::Signal::QUIT);
    }
    cmd
}

/// The first ancestor of `dir` that `uid` cannot search (no x bit for it), if any.
pub fn unreachable_ancestor(dir: &Path, uid: u32) -> Option<PathBuf> {
    use std::os::unix::fs::MetadataExt;
    dir.ancestors().skip(1).find_map(|parent| {
        let meta = std::fs::metadata(parent).ok()?;
        let searchable = if meta.uid() == uid {
            meta.mode() & 0o100 != 0
        } else {
            meta.mode() & 0o001 != 0 || meta.mode() & 0o010 != 0
        };
        (!searchable).then(|| parent.to_path_buf())
    })
}
