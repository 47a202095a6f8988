//! A throwaway PostgreSQL cluster for `pgbak verify --ephemeral`: initdb and
//! postgres from the chosen bin dir, in a temp dir, so verifying puts no load
//! on production. Nobody but pgbak reaches it: the directory is 0700 from its
//! creation, the server listens on no TCP address, its socket sits in that
//! directory (and is 0700 itself), and every login needs a SCRAM password
//! that only pgbak knows (random per run, given to its children through their
//! environment). As root the server runs as a dedicated unprivileged user
//! ([`user`]); every file pgbak itself writes in the directory is created
//! before the directory is handed to that user, and the server's settings
//! are its command line, so pgbak never opens a path that user could have
//! replaced with a symlink. A dead run's cluster is swept by the next run
//! ([`sweep`]).

mod sweep;
mod user;

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Seek, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use tokio::process::Child;

use super::tools::PgTools;
use super::url::{ConnSettings, Host, SslMode};
use crate::ui;
use user::{command_as, unreachable_ancestor, Tether};
pub use user::{lookup, server_user, ServerUser};

/// The port only names the socket file; nothing listens on TCP.
const PORT: u16 = 5432;

/// The superuser of the throwaway cluster.
const SUPERUSER: &str = "postgres";

/// What happens to the throwaway cluster when the run ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cleanup {
    /// Stopped and removed (also when pgbak dies: the server gets SIGQUIT).
    Remove,
    /// `--no-cleanup`: left running for inspection, outliving pgbak.
    Keep,
}

/// A running throwaway cluster; stopped and removed by [`Ephemeral::remove`]
/// or, as a last resort, on drop.
pub struct Ephemeral {
    pub dir: PathBuf,
    pub bin_dir: PathBuf,
    server: Option<Child>,
    keep: bool,
    /// `pgbak.owner` in the dir, locked while this run lives (see [`sweep`]).
    owner: Option<File>,
    /// The superuser's password: random, known only to this run.
    password: String,
    /// The server's log, opened (append-only) before the directory was handed over.
    log: Option<File>,
}

/// The file in a throwaway cluster's directory that its live run keeps locked.
const OWNER_FILE: &str = "pgbak.owner";
const DIR_PREFIX: &str = "pgbak-verify-";

/// Locks `dir/pgbak.owner` for this process. The file is locked before it gets
/// its name, so another run never sees it unlocked while this one lives.
fn claim(dir: &Path) -> Result<File> {
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

/// A random password (32 hex digits) from the kernel's generator.
pub fn random_password() -> Result<String> {
    let mut bytes = [0u8; 16];
    rustix::rand::getrandom(&mut bytes, rustix::rand::GetRandomFlags::empty())
        .context("reading random bytes for a throwaway password")?;
    Ok(hex::encode(bytes))
}

/// Creates `path` (exclusively: never through a symlink), 0600, for appending.
fn create_private(path: &Path) -> Result<File> {
    std::fs::OpenOptions::new()
        .append(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))
}

/// Gives `file` (already open) to `user`, when there is one.
fn hand_over(file: &File, path: &Path, user: Option<&ServerUser>) -> Result<()> {
    if let Some(user) = user {
        std::os::unix::fs::fchown(file, Some(user.uid), Some(user.gid))
            .with_context(|| format!("giving {} to the user {}", path.display(), user.name))?;
    }
    Ok(())
}

/// The server's settings, on its command line: nothing in the data directory
/// (which its user owns) is written by pgbak. Throwaway: durability is
/// worthless here, speed is not.
fn server_args(dir: &Path) -> Vec<String> {
    [
        "listen_addresses=".to_owned(),
        format!("unix_socket_directories={}", dir.display()),
        "unix_socket_permissions=0700".to_owned(),
        format!("port={PORT}"),
        "fsync=off".to_owned(),
        "synchronous_commit=off".to_owned(),
        "full_page_writes=off".to_owned(),
        "wal_level=minimal".to_owned(),
        "max_wal_senders=0".to_owned(),
        "max_wal_size=4GB".to_owned(),
        "autovacuum=off".to_owned(),
        "shared_buffers=256MB".to_owned(),
        "password_encryption=scram-sha-256".to_owned(),
    ]
    .into_iter()
    .flat_map(|setting| ["-c".to_owned(), setting])
    .collect()
}

impl Ephemeral {
    /// initdb + postgres from `tools.bin_dir`; waits until the server accepts
    /// connections. As root the server runs as the system user `user_name`
    /// ([`server_user`]).
    pub async fn start(tools: &PgTools, cleanup: Cleanup, user_name: &str) -> Result<Ephemeral> {
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
        let user = server_user(user_name)?;
        let mut owners = vec![rustix::process::geteuid().as_raw()];
        owners.extend(user.as_ref().map(|u| u.uid));
        sweep::sweep_dead(&crate::settings::temp_dir(), &owners);
        let dir = tempfile::Builder::new()
            .prefix(DIR_PREFIX)
            .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o700))
            .tempdir_in(crate::settings::temp_dir())
            .context("creating the temporary directory for the throwaway cluster")?
            .keep();
        let mut cluster = Ephemeral {
            dir: dir.clone(),
            bin_dir: tools.bin_dir.clone(),
            server: None,
            keep: cleanup == Cleanup::Keep,
            owner: None,
            password: random_password()?,
            log: None,
        };
        cluster.owner = Some(claim(&dir)?);
        let pwfile = cluster.prepare_dir(user.as_ref())?;
        let data = dir.join("data");
        ui::info(&format!(
            "starting a throwaway PostgreSQL {} cluster in {}",
            tools.version,
            dir.display()
        ));
        let mut cmd = command_as(&initdb, user.as_ref(), &dir, Tether::DiesWithPgbak);
        cmd.arg("-D")
            .arg(&data)
            .args(["-U", SUPERUSER, "--auth=scram-sha-256"])
            .arg(format!("--pwfile={}", pwfile.display()))
            .args(["-E", "UTF8", "--locale=C", "--no-sync", "--no-instructions"]);
        let initialized = crate::pg::tools::run_ok(cmd, "initdb for the throwaway cluster").await;
        // Removed whatever initdb did: the password lives on only in this run.
        let _ = std::fs::remove_file(&pwfile);
        initialized?;
        let tether = match cleanup {
            Cleanup::Remove => Tether::DiesWithPgbak,
            Cleanup::Keep => Tether::Outlives,
        };
        let log = cluster
            .log
            .as_ref()
            .context("the throwaway cluster has no log")?
            .try_clone()
            .context("passing the log to the throwaway postgres")?;
        let mut cmd = command_as(&postgres, user.as_ref(), &dir, tether);
        cmd.arg("-D")
            .arg(&data)
            .args(server_args(&dir))
            .stdout(Stdio::null())
            .stderr(log)
            // Not in pgbak's process group: a Ctrl-C is pgbak's to handle, not the server's.
            .process_group(0);
        cluster.server = Some(cmd.spawn().context("starting the throwaway postgres")?);
        cluster.wait_ready().await?;
        Ok(cluster)
    }

    /// Creates, while the directory is still pgbak's own, every file pgbak
    /// writes in it (the password file for initdb, the server's log), then
    /// hands the directory to the server's user. Returns the password file.
    fn prepare_dir(&mut self, user: Option<&ServerUser>) -> Result<PathBuf> {
        let pwfile = self.dir.join("pwfile");
        let mut file = create_private(&pwfile)?;
        writeln!(file, "{}", self.password)
            .with_context(|| format!("writing {}", pwfile.display()))?;
        hand_over(&file, &pwfile, user)?;
        let log_path = self.dir.join("server.log");
        let log = create_private(&log_path)?;
        hand_over(&log, &log_path, user)?;
        self.log = Some(log);
        if let Some(user) = user {
            std::os::unix::fs::lchown(&self.dir, Some(user.uid), Some(user.gid)).with_context(
                || format!("giving {} to the user {}", self.dir.display(), user.name),
            )?;
            if let Some(blocked) = unreachable_ancestor(&self.dir, user.uid) {
                bail!(
                    "the user {} cannot enter {} (it is not searchable by others), so the \
                     throwaway cluster cannot live under it: set TMPDIR to a directory it can \
                     reach, such as /tmp",
                    user.name,
                    blocked.display()
                );
            }
        }
        Ok(pwfile)
    }

    /// The server's log so far, read through the descriptor pgbak opened
    /// (never by its path, which the server's user could have replaced).
    fn log_text(&self) -> String {
        let mut text = String::new();
        if let Some(mut log) = self.log.as_ref().and_then(|l| l.try_clone().ok()) {
            if log.rewind().is_ok() {
                let _ = log.read_to_string(&mut text);
            }
        }
        text
    }

    async fn wait_ready(&mut self) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(60);
        let conn = self.conn("postgres");
        loop {
            if let Some(server) = self.server.as_mut() {
                if let Ok(Some(status)) = server.try_wait() {
                    return Err(crate::pg::tools::ChildFailed::new(
                        "the throwaway postgres",
                        status,
                        &self.log_text(),
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

    /// How to reach `dbname` in the cluster: the superuser, over the socket, with its password.
    pub fn conn(&self, dbname: &str) -> ConnSettings {
        self.conn_as(SUPERUSER, &self.password, dbname)
    }

    /// How `user` (a role of the cluster with `password`) reaches `dbname`.
    pub fn conn_as(&self, user: &str, password: &str, dbname: &str) -> ConnSettings {
        ConnSettings {
            host: Host::Socket(self.dir.clone()),
            port: PORT,
            user: user.to_owned(),
            password: Some(password.to_owned()),
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

    /// Leaves the cluster running for inspection, and the superuser's password
    /// beside it in a 0600 file of the invoking user (`pgpass`, libpq's
    /// format); returns how to connect.
    pub fn leave(mut self) -> String {
        self.keep = true;
        // Kept on purpose: without its owner file no later run sweeps it away.
        let _ = std::fs::remove_file(self.dir.join(OWNER_FILE));
        let pgpass = self.dir.join("pgpass");
        let saved = create_private(&pgpass).and_then(|mut f| {
            writeln!(f, "*:*:*:{SUPERUSER}:{}", self.password)
                .with_context(|| format!("writing {}", pgpass.display()))
        });
        if let Some(server) = self.server.take() {
            // Detach: forgetting the handle keeps kill_on_drop from stopping the server.
            std::mem::forget(server);
        }
        match saved {
            Ok(()) => format!(
                "connect with: PGPASSFILE={} psql -h {} -p {PORT} -U {SUPERUSER} -d postgres",
                pgpass.display(),
                self.dir.display()
            ),
            Err(err) => format!(
                "its password could not be saved ({}): it cannot be logged into",
                crate::error::one_line(&err)
            ),
        }
    }

    fn quit_server(&self) {
        if let Some(pid) = self
            .server
            .as_ref()
            .and_then(Child::id)
            .and_then(|p| i32::try_from(p).ok())
            .and_then(rustix::process::Pid::from_raw)
        {
            // SIGQUIT: PostgreSQL's immediate shutdown.
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::QUIT);
        }
    }

    async fn stop_server(&mut self) {
        self.quit_server();
        if let Some(mut server) = self.server.take() {
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
        self.quit_server();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
