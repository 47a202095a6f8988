//! A throwaway PostgreSQL cluster for `pgbak verify --ephemeral`: initdb and
//! postgres from the chosen bin dir, in a temp dir, reachable only through a
//! unix socket in that dir, so verifying puts no load on production. As root
//! the server runs as the `postgres` system user (PostgreSQL refuses root).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use tokio::process::{Child, Command};

use super::tools::PgTools;
use super::url::{ConnSettings, Host, SslMode};
use crate::ui;

/// The port only names the socket file; nothing listens on TCP.
const PORT: u16 = 5432;

/// What happens to the throwaway cluster when the run ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cleanup {
    /// Stopped and removed (also when pgbak dies: the server gets SIGQUIT).
    Remove,
    /// `--no-cleanup`: left running for inspection, outliving pgbak.
    Keep,
}

/// Whether a child of pgbak dies with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tether {
    /// SIGQUIT (the server's immediate shutdown) when pgbak dies.
    DiesWithPgbak,
    /// Outlives pgbak (a server kept with --no-cleanup).
    Outlives,
}

/// A running throwaway cluster; stopped and removed by [`Ephemeral::remove`]
/// or, as a last resort, on drop.
pub struct Ephemeral {
    pub dir: PathBuf,
    pub bin_dir: PathBuf,
    server: Option<Child>,
    keep: bool,
    /// `pgbak.owner` in the dir, locked while this run lives (see [`sweep_dead`]).
    owner: Option<std::fs::File>,
}

/// The file in a throwaway cluster's directory that its live run keeps locked.
const OWNER_FILE: &str = "pgbak.owner";
const DIR_PREFIX: &str = "pgbak-verify-";

/// Locks `dir/pgbak.owner` for this process. The file is locked before it gets
/// its name, so another run never sees it unlocked while this one lives.
fn claim(dir: &Path) -> Result<std::fs::File> {
    let tmp = dir.join(format!("{OWNER_FILE}.new"));
    let file = crate::storage::fsio::create_new(&tmp)
        .with_context(|| format!("creating {}", tmp.display()))?;
    file.try_lock()
        .map_err(std::io::Error::other)
        .with_context(|| format!("locking {}", tmp.display()))?;
    std::fs::rename(&tmp, dir.join(OWNER_FILE))
        .with_context(|| format!("renaming {} into place", tmp.display()))?;
    Ok(file)
}

/// Removes throwaway clusters whose run died without cleaning up (SIGKILL,
/// power loss): a `pgbak-verify-*` directory in the temp dir whose owner file
/// nobody holds. Its server, if still up, is stopped first. Clusters kept
/// with --no-cleanup have no owner file and stay.
pub fn sweep_dead() {
    let Ok(entries) = std::fs::read_dir(crate::settings::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let dir = entry.path();
        let is_ours = entry.file_name().to_string_lossy().starts_with(DIR_PREFIX);
        let Ok(owner) = std::fs::File::open(dir.join(OWNER_FILE)) else {
            continue;
        };
        if !is_ours || owner.try_lock().is_err() {
            continue;
        }
        let pid_file = dir.join("data/postmaster.pid");
        if let Some(pid) = std::fs::read_to_string(&pid_file)
            .ok()
            .and_then(|t| t.lines().next()?.trim().parse::<i32>().ok())
            .filter(|pid| *pid > 1)
        {
            // SAFETY: kill has no memory effects; SIGQUIT is the immediate shutdown.
            unsafe {
                libc::kill(pid, libc::SIGQUIT);
            }
            std::thread::sleep(Duration::from_millis(500));
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

/// uid and gid to run the server as, when pgbak runs as root.
fn server_user() -> Result<Option<(u32, u32)>> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Ok(None);
    }
    let name = c"postgres";
    // SAFETY: name is a valid C string; the result is read at once, before any other getpw* call.
    let pw = unsafe { libc::getpwnam(name.as_ptr()) };
    if pw.is_null() {
        bail!(
            "pgbak runs as root and PostgreSQL refuses to run as root; --ephemeral runs the \
             throwaway server as the `postgres` system user, and there is none here \
             (create it with `useradd --system postgres`, or run pgbak as another user)"
        );
    }
    // SAFETY: pw is non-null and points to a valid passwd struct.
    Ok(Some(unsafe { ((*pw).pw_uid, (*pw).pw_gid) }))
}

/// A command that runs as `ids` (when given): groups dropped, gid then uid set.
fn command_as(program: &Path, ids: Option<(u32, u32)>, cwd: &Path, tether: Tether) -> Command {
    let mut cmd = Command::new(program);
    // initdb and the throwaway server need no secret of pgbak's: they get a
    // clean environment, so DATABASE_URL, AWS keys, webhook URLs and routing
    // keys never reach them (nor /proc/<pid>/environ of the postgres user).
    cmd.env_clear();
    for key in CHILD_ENV {
        if let Some(value) = crate::settings::env().get_os(key) {
            cmd.env(key, value);
        }
    }
    cmd.current_dir(cwd).stdin(Stdio::null()).kill_on_drop(true);
    if let Some((uid, gid)) = ids {
        // SAFETY: only async-signal-safe calls (setgroups, setgid, setuid) between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                if libc::setgroups(0, std::ptr::null()) != 0
                    || libc::setgid(gid) != 0
                    || libc::setuid(uid) != 0
                {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
    if tether == Tether::DiesWithPgbak {
        super::tools::die_with_parent(&mut cmd, libc::SIGQUIT);
    }
    cmd
}

/// The only variables initdb and the throwaway server inherit.
pub const CHILD_ENV: &[&str] = &["PATH", "LANG", "TZ"];

/// The first ancestor of `dir` that `uid` cannot search (no x bit for it), if any.
fn unreachable_ancestor(dir: &Path, uid: u32) -> Option<PathBuf> {
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

fn chown_tree(path: &Path, uid: u32, gid: u32) -> Result<()> {
    std::os::unix::fs::lchown(path, Some(uid), Some(gid))
        .with_context(|| format!("giving {} to the postgres user", path.display()))?;
    if path.is_dir() && !path.is_symlink() {
        for entry in
            std::fs::read_dir(path).with_context(|| format!("listing {}", path.display()))?
        {
            chown_tree(&entry?.path(), uid, gid)?;
        }
    }
    Ok(())
}

impl Ephemeral {
    /// initdb + postgres from `tools.bin_dir`; waits until the server accepts connections.
    pub async fn start(tools: &PgTools, cleanup: Cleanup) -> Result<Ephemeral> {
        let keep = cleanup == Cleanup::Keep;
        let initdb = tools.tool("initdb");
        let postgres = tools.tool("postgres");
        if !initdb.is_file() || !postgres.is_file() {
            bail!(
                "--ephemeral needs initdb and postgres beside pg_restore in {}, and they are not there \
                 (install the PostgreSQL {} server package, or point --pg-bin-dir at a full installation)",
                tools.bin_dir.display(),
                tools.major
            );
        }
        let ids = server_user()?;
        sweep_dead();
        let dir = tempfile::Builder::new()
            .prefix(DIR_PREFIX)
            .tempdir_in(crate::settings::temp_dir())
            .context("creating the temporary directory for the throwaway cluster")?
            .keep();
        let mut cluster = Ephemeral {
            dir: dir.clone(),
            bin_dir: tools.bin_dir.clone(),
            server: None,
            keep,
            owner: None,
        };
        cluster.owner = Some(claim(&dir)?);
        if let Some((uid, gid)) = ids {
            chown_tree(&dir, uid, gid)?;
            if let Some(blocked) = unreachable_ancestor(&dir, uid) {
                let _ = std::fs::remove_dir_all(&dir);
                cluster.keep = true;
                bail!(
                    "the postgres user cannot enter {} (it is not searchable by others), so the \
                     throwaway cluster cannot live under it: set TMPDIR to a directory it can \
                     reach, such as /tmp",
                    blocked.display()
                );
            }
        }
        let data = dir.join("data");
        ui::info(&format!(
            "starting a throwaway PostgreSQL {} cluster in {}",
            tools.version,
            dir.display()
        ));
        let mut cmd = command_as(&initdb, ids, &dir, Tether::DiesWithPgbak);
        cmd.arg("-D")
            .arg(&data)
            .args(["-U", "postgres", "--auth=trust", "-E", "UTF8", "--locale=C"])
            .args(["--no-sync", "--no-instructions"]);
        crate::pg::tools::run_ok(cmd, "initdb for the throwaway cluster").await?;
        // Throwaway: durability is worthless here, speed is not.
        let conf = format!(
            "\n# pgbak verify --ephemeral\nlisten_addresses = ''\nunix_socket_directories = '{}'\n\
             port = {PORT}\nfsync = off\nsynchronous_commit = off\nfull_page_writes = off\n\
             wal_level = minimal\nmax_wal_senders = 0\nmax_wal_size = 4GB\nautovacuum = off\n\
             shared_buffers = 256MB\n",
            dir.display().to_string().replace('\'', "''")
        );
        let conf_path = data.join("postgresql.conf");
        let mut text = std::fs::read_to_string(&conf_path)
            .with_context(|| format!("reading {}", conf_path.display()))?;
        text.push_str(&conf);
        std::fs::write(&conf_path, text)
            .with_context(|| format!("writing {}", conf_path.display()))?;

        let log_path = dir.join("server.log");
        let log = std::fs::File::create(&log_path)
            .with_context(|| format!("creating {}", log_path.display()))?;
        if let Some((uid, gid)) = ids {
            chown_tree(&log_path, uid, gid)?;
        }
        let tether = match cleanup {
            Cleanup::Remove => Tether::DiesWithPgbak,
            Cleanup::Keep => Tether::Outlives,
        };
        let mut cmd = command_as(&postgres, ids, &dir, tether);
        cmd.arg("-D")
            .arg(&data)
            .stdout(Stdio::null())
            .stderr(log)
            // Not in pgbak's process group: a Ctrl-C is pgbak's to handle, not the server's.
            .process_group(0);
        cluster.server = Some(cmd.spawn().context("starting the throwaway postgres")?);
        cluster.wait_ready(&log_path).await?;
        Ok(cluster)
    }

    async fn wait_ready(&mut self, log_path: &Path) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(60);
        let conn = self.conn("postgres");
        loop {
            if let Some(server) = self.server.as_mut() {
                if let Ok(Some(status)) = server.try_wait() {
                    let log = std::fs::read_to_string(log_path).unwrap_or_default();
                    return Err(crate::pg::tools::ChildFailed::new(
                        "the throwaway postgres",
                        status,
                        &log,
                    )
                    .into());
                }
            }
            if crate::pg::client::connect(&conn).await.is_ok() {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("the throwaway postgres did not accept connections within 60 s");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// How to reach `dbname` in the cluster: the superuser over the socket.
    pub fn conn(&self, dbname: &str) -> ConnSettings {
        ConnSettings {
            host: Host::Socket(self.dir.clone()),
            port: PORT,
            user: "postgres".to_owned(),
            password: None,
            dbname: dbname.to_owned(),
            sslmode: SslMode::Disable,
            params: BTreeMap::new(),
        }
    }

    /// What an operator runs to remove a cluster left by `--no-cleanup`.
    /// SIGQUIT is PostgreSQL's immediate shutdown; unlike pg_ctl it works as root too.
    pub fn removal_hint(&self) -> String {
        let pid = self
            .server
            .as_ref()
            .and_then(Child::id)
            .map_or_else(|| "<postmaster pid>".to_owned(), |p| p.to_string());
        format!("kill -QUIT {pid}; sleep 1; rm -rf {}", self.dir.display())
    }

    /// Stops the server (immediate shutdown: nothing in it is worth keeping) and removes the dir.
    pub async fn remove(mut self) -> Result<()> {
        self.stop_server().await;
        let dir = self.dir.clone();
        self.keep = true; // nothing left for Drop
        tokio::task::spawn_blocking(move || std::fs::remove_dir_all(&dir))
            .await
            .context("removing the throwaway cluster stopped unexpectedly")?
            .with_context(|| format!("removing {}", self.dir.display()))
    }

    /// Leaves the cluster running for inspection.
    pub fn leave(mut self) {
        self.keep = true;
        // Kept on purpose: without its owner file no later run sweeps it away.
        let _ = std::fs::remove_file(self.dir.join(OWNER_FILE));
        if let Some(server) = self.server.take() {
            // Detach: forgetting the handle keeps kill_on_drop from stopping the server.
            std::mem::forget(server);
        }
    }

    async fn stop_server(&mut self) {
        if let Some(mut server) = self.server.take() {
            if let Some(pid) = server.id().and_then(|p| i32::try_from(p).ok()) {
                // SAFETY: kill has no memory effects. SIGQUIT is PostgreSQL's immediate shutdown.
                unsafe {
                    libc::kill(pid, libc::SIGQUIT);
                }
            }
            if tokio::time::timeout(Duration::from_secs(10), server.wait())
                .await
                .is_err()
            {
                let _ = server.kill().await;
            }
        }
    }
}

impl Drop for Ephemeral {
    fn drop(&mut self) {
        if self.keep {
            return;
        }
        if let Some(server) = self.server.as_mut() {
            if let Some(pid) = server.id().and_then(|p| i32::try_from(p).ok()) {
                // SAFETY: as in stop_server.
                unsafe {
                    libc::kill(pid, libc::SIGQUIT);
                }
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
