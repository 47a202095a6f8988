//! Issue 22, the host's half (items 3, 6, 7, 8, 10): what a local user or a planted file
//! could get from a run. Each test builds the attack and shows it fails: another OS user cannot
//! reach the throwaway cluster, a planted `pgbak-verify-*` directory cannot make pgbak signal a
//! process or follow a symlink, the throwaway cluster never runs as root or postgres, a parallel
//! encrypted verify as an ordinary user reads only its unnamed file, and cleartext URLs to other
//! hosts are warned about. (Secrets kept from children and core dumps: `security::secrets`.)

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::support::keys::keygen;
use crate::support::verify::verify_dirs;
use crate::support::verify::Dir;
use crate::support::{self, is_root, output_text, paths, pg16, TestDb, EPHEMERAL_USER};

/// A small database and a backup of it (the harness's default tools, PostgreSQL 17's, which
/// have initdb and postgres beside pg_restore for --ephemeral).
fn small_backup<'a>(hint: &str) -> (TestDb<'a>, Dir, PathBuf) {
    let pg = pg16();
    let db = pg.db_with(
        hint,
        "CREATE TABLE t AS SELECT g FROM generate_series(1, 3) g",
    );
    let dir = Dir::new(&hint.replace(' ', "-"));
    let out = support::backup(pg, &db.name, &dir, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    let dump = dir.join(&support::dumps(&dir)[0]);
    (db, dir, dump)
}

/// `pgbak verify --ephemeral <dump>` with the throwaway cluster under `tmp`.
fn verify_ephemeral(
    db: &TestDb<'_>,
    dump: &Path,
    tmp: &Path,
    extra: &[&str],
) -> std::process::Output {
    let mut cmd = crate::support::verify::verify_cmd(
        db,
        dump,
        &["--ephemeral", "--expect-table", "public.t"],
    );
    cmd.args(extra).env("TMPDIR", tmp);
    cmd.output().expect("running pgbak verify --ephemeral")
}

/// psql into the throwaway cluster in `dir` as its superuser, as `os_user` (None: this
/// process's user), with `env` added; Ok(stdout) when it got in.
fn psql_into(dir: &Path, os_user: Option<&str>, env: &[(&str, &Path)]) -> Result<String, String> {
    let psql = paths()
        .pg17_bin
        .clone()
        .unwrap_or_else(|| pg16().bin.clone())
        .join("psql");
    let mut cmd = match os_user {
        Some(user) => {
            let mut c = std::process::Command::new("runuser");
            c.args(["-u", user, "--"]).arg(&psql);
            c
        }
        None => std::process::Command::new(&psql),
    };
    support::clear_pg_env(&mut cmd);
    cmd.args(["-X", "-w", "-At", "-h"])
        .arg(dir)
        .args([
            "-p",
            "5432",
            "-U",
            "postgres",
            "-d",
            "postgres",
            "-c",
            "SELECT current_user",
        ])
        .env("PGCONNECT_TIMEOUT", "5")
        .current_dir("/");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("running psql");
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_owned())
    }
}

/// A `sleep` this test owns: the process a planted postmaster.pid names.
struct Victim(std::process::Child);

impl Victim {
    fn start() -> Victim {
        Victim(
            std::process::Command::new("sleep")
                .arg("600")
                .spawn()
                .unwrap(),
        )
    }
    fn pid(&self) -> u32 {
        self.0.id()
    }
    fn alive(&mut self) -> bool {
        self.0.try_wait().unwrap().is_none()
    }
}

impl Drop for Victim {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Plants `tmp/<name>` as a dead verify run's cluster would look: an unlocked owner file and a
/// postmaster.pid naming `pid`, everything owned by `uid` (mode 0700).
fn plant_cluster(tmp: &Path, name: &str, pid: u32, uid: u32) -> PathBuf {
    let dir = tmp.join(name);
    std::fs::create_dir_all(dir.join("data")).unwrap();
    std::fs::write(dir.join("pgbak.owner"), "").unwrap();
    std::fs::write(
        dir.join("data/postmaster.pid"),
        format!("{pid}\n/some/data\n"),
    )
    .unwrap();
    for path in [
        dir.join("data/postmaster.pid"),
        dir.join("pgbak.owner"),
        dir.join("data"),
        dir.clone(),
    ] {
        std::os::unix::fs::lchown(&path, Some(uid), Some(uid)).unwrap();
    }
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    dir
}

fn own_uid() -> u32 {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() }
}

#[test]
fn host_another_local_user_cannot_reach_the_ephemeral_cluster() {
    use std::os::unix::fs::MetadataExt;
    let (db, _dir, dump) = small_backup("ephemeral reach");
    let tmp = Dir::new("ephemeral-reach-tmp");
    let out = verify_ephemeral(&db, &dump, &tmp, &["--no-cleanup"]);
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    let clusters = verify_dirs(&tmp);
    assert_eq!(clusters.len(), 1, "{clusters:?}");
    let cluster = &clusters[0];
    let removal = {
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let left = report["left_in_place"].as_str().unwrap().to_owned();
        left.split("remove it with: ")
            .nth(1)
            .unwrap()
            .trim_end_matches(')')
            .to_owned()
    };
    let outcome = std::panic::catch_unwind(|| {
        let meta = std::fs::metadata(cluster).unwrap();
        assert_eq!(meta.mode() & 0o777, 0o700, "the cluster's directory");
        if is_root() {
            let (uid, _) = crate::support::ids_of(EPHEMERAL_USER);
            assert_eq!(
                meta.uid(),
                uid,
                "the server runs as {EPHEMERAL_USER}, not postgres or root"
            );
        }
        let socket = std::fs::metadata(cluster.join(".s.PGSQL.5432")).unwrap();
        assert_eq!(socket.mode() & 0o777, 0o700, "the socket");
        if is_root() {
            // The attack: another local user opens a session on the restored data.
            let nobody = psql_into(cluster, Some("nobody"), &[]);
            assert!(nobody.is_err(), "nobody got in: {nobody:?}");
        }
        // Not trust: pgbak's own user gets nothing without the password...
        let no_password = psql_into(cluster, None, &[]);
        assert!(
            no_password.is_err(),
            "in without a password: {no_password:?}"
        );
        // ... and the operator who kept it gets in with the password file pgbak left.
        let pgpass = cluster.join("pgpass");
        assert_eq!(std::fs::metadata(&pgpass).unwrap().mode() & 0o777, 0o600);
        assert_eq!(
            psql_into(cluster, None, &[("PGPASSFILE", &pgpass)]),
            Ok("postgres".into())
        );
    });
    let status = std::process::Command::new("sh")
        .arg("-c")
        .arg(&removal)
        .status()
        .unwrap();
    assert!(status.success(), "{removal}");
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

#[test]
fn host_a_planted_verify_directory_makes_pgbak_signal_no_process() {
    let (db, _dir, dump) = small_backup("planted pid");
    let tmp = Dir::new("planted-pid-tmp");
    let mut theirs = Victim::start();
    let mut ours = Victim::start();
    // A local user's plant (as root: owned by nobody), and one that looks like
    // ours (owned by this user, 0700) but names a process that is no postgres
    // of that directory.
    let other_uid = if is_root() { 65534 } else { own_uid() };
    let planted = plant_cluster(&tmp, "pgbak-verify-planted", theirs.pid(), other_uid);
    plant_cluster(&tmp, "pgbak-verify-lookalike", ours.pid(), own_uid());
    let out = verify_ephemeral(&db, &dump, &tmp, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    assert!(theirs.alive(), "the pid a local user named was signalled");
    assert!(
        ours.alive(),
        "a pid that is no postgres of the directory was signalled"
    );
    if is_root() {
        assert!(planted.exists(), "another user's directory was removed");
    }
}

#[test]
fn host_a_planted_symlink_in_the_cluster_directory_is_never_followed() {
    if !is_root() {
        return; // the attack is the cluster's user against root
    }
    let (db, _dir, dump) = small_backup("planted link");
    let tmp = Dir::new("planted-link-tmp");
    // A root-only file the cluster's user must not be able to make pgbak write.
    let vault = Dir::new("planted-link-vault");
    std::fs::set_permissions(&vault, std::fs::Permissions::from_mode(0o700)).unwrap();
    let victim = vault.join("precious");
    std::fs::write(&victim, "precious\n").unwrap();
    std::fs::set_permissions(&victim, std::fs::Permissions::from_mode(0o600)).unwrap();
    // initdb, run as the cluster's user, plants symlinks where pgbak writes:
    // the server's log beside the data directory and its postgresql.conf.
    let real = paths()
        .pg17_bin
        .clone()
        .unwrap_or_else(|| pg16().bin.clone());
    let bin = Dir::new("planted-link-bin");
    for entry in std::fs::read_dir(&real).unwrap().flatten() {
        let target = bin.join(entry.file_name());
        if entry.file_name() == "initdb" {
            std::fs::write(
                &target,
                format!(
                    "#!/bin/sh\nfor a; do [ \"$prev\" = -D ] && data=$a; prev=$a; done\n\
                     '{}' \"$@\" || exit $?\n\
                     ln -sf '{v}' \"$data/../server.log\"\n\
                     rm -f \"$data/postgresql.conf\"; ln -s '{v}' \"$data/postgresql.conf\"\n",
                    entry.path().display(),
                    v = victim.display()
                ),
            )
            .unwrap();
            std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o755)).unwrap();
        } else {
            std::os::unix::fs::symlink(entry.path(), &target).unwrap();
        }
    }
    let mut cmd = crate::support::verify::verify_cmd(
        &db,
        &dump,
        &["--ephemeral", "--expect-table", "public.t"],
    );
    let out = cmd
        .env("TMPDIR", &*tmp)
        .env("PGBAK_PG_BIN_DIR", &*bin)
        .output()
        .unwrap();
    // Whatever verify made of its broken cluster, the file is untouched.
    assert_eq!(
        std::fs::read_to_string(&victim).unwrap(),
        "precious\n",
        "pgbak wrote through a planted symlink: {}",
        output_text(&out)
    );
}

#[test]
fn host_cleartext_s3_webhook_and_heartbeat_urls_to_other_hosts_are_warned_about_once() {
    let pg = pg16();
    let db = pg.db_with("cleartext hook", "CREATE TABLE t AS SELECT 1 AS x");
    let token = "T0KEN-in-the-hook-url";
    let run = |hook: &str| {
        let root = Dir::new("cleartext-hook");
        support::pgbak(pg)
            .arg("cron")
            .env("DATABASE_URL", db.url())
            .env("BACKUP_DIR", root.join("backups"))
            .env("LOG_DIR", root.join("logs"))
            // Never called: the run succeeds. TEST-NET-1, another host.
            .env("ALERT_WEBHOOK_URL", hook)
            .output()
            .unwrap()
    };
    let out = run(&format!("http://192.0.2.1/hooks/{token}"));
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let warned = stderr
        .lines()
        .filter(|l| l.contains("ALERT_WEBHOOK_URL is plain http://"))
        .count();
    assert_eq!(warned, 1, "{stderr}");
    assert!(!stderr.contains(token), "{stderr}");
    // The S3 endpoint and the heartbeat too, each named once (resolved only:
    // --check-config connects nowhere).
    let root = Dir::new("cleartext-config");
    let out = support::pgbak_bare()
        .args(["cron", "--check-config"])
        .env("DATABASE_URL", db.url())
        .env("BACKUP_DIR", root.join("backups"))
        .env("LOG_DIR", root.join("logs"))
        .env("S3_BUCKET", "backups")
        .env("S3_ENDPOINT_URL", "http://192.0.2.1:9000")
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test-secret")
        .env("HEARTBEAT_URL", format!("http://192.0.2.1/ping/{token}"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    for name in ["S3_ENDPOINT_URL", "HEARTBEAT_URL"] {
        let warned = stderr
            .lines()
            .filter(|l| l.contains(&format!("{name} is plain http://")))
            .count();
        assert_eq!(warned, 1, "{name}: {stderr}");
    }
    assert!(!stderr.contains(token), "{stderr}");
    for quiet in [
        format!("https://192.0.2.1/hooks/{token}"),
        format!("http://127.0.0.1:9/hooks/{token}"),
    ] {
        let out = run(&quiet);
        assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("plain http://"), "{quiet}: {stderr}");
    }
}

#[test]
fn host_a_parallel_encrypted_verify_as_an_ordinary_user_reads_its_unnamed_file() {
    // pgbak is not dumpable (no core dumps), so its /proc/<pid>/fd is closed to
    // its own user's other processes: pg_restore must inherit the decrypted
    // scratch file, not open it through pgbak's /proc entry. Root would not
    // notice (CAP_SYS_PTRACE); run as nobody.
    if !is_root() {
        return;
    }
    let pg = pg16();
    let db = pg.db_with_rows("unnamed fd", 1000);
    let home = Dir::new("unnamed-fd");
    let (key, public) = keygen(&home, "key.txt");
    let backups = home.join("backups");
    let out = support::backup_cmd(pg, &db.name, &backups, &[])
        .env("PGBAK_AGE_RECIPIENTS", &public)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    let tmp = home.join("tmp");
    std::fs::create_dir(&tmp).unwrap();
    let status = std::process::Command::new("chown")
        .args(["-R", "nobody:nogroup"])
        .arg(&*home)
        .status()
        .unwrap();
    assert!(status.success());
    let bin = paths()
        .pg17_bin
        .clone()
        .unwrap_or_else(|| pg16().bin.clone());
    let out = std::process::Command::new("runuser")
        .args(["-u", "nobody", "--", "env", "-i"])
        .arg(format!(
            "PATH={}",
            std::env::var("PATH").unwrap_or_default()
        ))
        .arg(format!("HOME={}", home.display()))
        .arg(format!("TMPDIR={}", tmp.display()))
        .arg(format!("PGBAK_PG_BIN_DIR={}", bin.display()))
        .arg(env!("CARGO_BIN_EXE_pgbak"))
        .args([
            "verify",
            "--ephemeral",
            "--jobs",
            "2",
            "--json",
            "--expect-table",
            "public.t",
        ])
        .arg("--identity-file")
        .arg(&key)
        .arg(
            backups.join(
                support::files(&backups)
                    .into_iter()
                    .find(|f| f.ends_with(".dump.age"))
                    .expect("an encrypted dump"),
            ),
        )
        .current_dir("/")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("into an unnamed 0600 file"),
        "{}",
        output_text(&out)
    );
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
}

#[test]
fn host_the_ephemeral_cluster_never_runs_as_root_or_postgres_nor_as_a_missing_user() {
    if !is_root() {
        return; // not root: the server runs as pgbak's own user
    }
    let (db, _dir, dump) = small_backup("ephemeral user");
    let tmp = Dir::new("ephemeral-user-tmp");
    for (user, says) in [
        ("pgbak-no-such-user", "useradd --system"),
        ("postgres", "never runs as root or postgres"),
        ("root", "never runs as root or postgres"),
    ] {
        let mut cmd = crate::support::verify::verify_cmd(&db, &dump, &["--ephemeral"]);
        let out = cmd
            .env("TMPDIR", &*tmp)
            .env("PGBAK_EPHEMERAL_USER", user)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{user}: {}", output_text(&out));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(says), "{user}: {stderr}");
        assert!(
            verify_dirs(&tmp).is_empty(),
            "{user}: a cluster was started"
        );
    }
}
