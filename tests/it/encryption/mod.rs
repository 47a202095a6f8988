//! Encryption at rest with age, against real clusters, the real S3 server and the stock `age` CLI
//! (installed by scripts/setup.sh): no plaintext byte on disk, in the bucket or on the wire;
//! verify and restore decrypt on the way in; meta.json's sealed section.

mod at_rest;
mod decrypt;
mod sealed_meta;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::Value;

use crate::support::bucket::sha256_hex;
use crate::support::{self, output_text, paths, Pg, TestDb};

/// The stock age CLI; setup.sh installs it, so its absence is a broken setup, said loudly.
pub(crate) fn age_cli(tool: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| d.join(tool))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!("{tool} is not installed: run scripts/setup.sh (it installs Debian's age)")
        })
}

/// An identity made by `age-keygen`: (key file, public key).
pub(crate) fn age_keygen(dir: &Path, name: &str) -> (PathBuf, String) {
    let key = dir.join(name);
    let out = Command::new(age_cli("age-keygen"))
        .arg("-o")
        .arg(&key)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", output_text(&out));
    let public = Command::new(age_cli("age-keygen"))
        .arg("-y")
        .arg(&key)
        .output()
        .unwrap();
    (
        key,
        String::from_utf8(public.stdout).unwrap().trim().to_owned(),
    )
}

/// An identity made by `pgbak keygen -o`: (key file, public key printed on stdout).
pub(crate) fn pgbak_keygen(dir: &Path, name: &str) -> (PathBuf, String) {
    let (key, public) = support::keys::keygen(dir, name);
    assert!(public.starts_with("age1"), "{public}");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&key).unwrap().permissions().mode();
    assert_eq!(mode & 0o077, 0, "keygen writes 0600");
    (key, public)
}

/// pg_restore able to read pgbak's dumps (made by the harness's pg17 client when present).
pub(crate) fn pg_restore_bin(pg: &Pg) -> PathBuf {
    paths()
        .pg17_bin
        .clone()
        .unwrap_or_else(|| pg.bin.clone())
        .join("pg_restore")
}

pub(crate) fn contains_pgdmp(bytes: &[u8]) -> bool {
    bytes.windows(5).any(|w| w == b"PGDMP")
}

/// Every regular file under `dir` holding the archive magic `PGDMP`.
pub(crate) fn plaintext_files(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            found.extend(plaintext_files(&path));
        } else if std::fs::read(&path).is_ok_and(|b| contains_pgdmp(&b)) {
            found.push(path);
        }
    }
    found
}

pub(crate) fn backup_cmd(db: &TestDb<'_>, dir: &Path, recipients: &[&str]) -> Command {
    let mut cmd = support::pgbak(db.pg());
    cmd.args(["backup", "--no-s3", "--json", "--output-dir"])
        .arg(dir)
        .env("DATABASE_URL", db.url());
    for r in recipients {
        cmd.arg("--encrypt-to").arg(r);
    }
    cmd
}

/// The summary of a successful `backup --json`: (dump path, meta).
pub(crate) fn summary(out: &Output) -> (PathBuf, Value) {
    assert!(out.status.success(), "{}", output_text(out));
    let summary: Value = serde_json::from_slice(&out.stdout).expect("backup --json");
    (
        PathBuf::from(summary["dump"].as_str().unwrap()),
        summary["meta"].clone(),
    )
}

/// `age -d -i KEY FILE | pg_restore --list`: (pg_restore's output, the plaintext's SHA-256).
pub(crate) fn age_cli_decrypt_and_list(pg: &Pg, key: &Path, file: &Path) -> (Output, String) {
    let decrypted = Command::new(age_cli("age"))
        .arg("-d")
        .arg("-i")
        .arg(key)
        .arg(file)
        .output()
        .unwrap();
    assert!(decrypted.status.success(), "{}", output_text(&decrypted));
    let mut list = Command::new(pg_restore_bin(pg))
        .arg("--list")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    // pg_restore --list stops reading after the table of contents: a broken pipe is fine.
    let _ = list.stdin.take().unwrap().write_all(&decrypted.stdout);
    (
        list.wait_with_output().unwrap(),
        sha256_hex(&decrypted.stdout),
    )
}

pub(crate) fn verify(db: &TestDb<'_>, dump: &Path, extra: &[&str]) -> (Output, Value) {
    let out = support::pgbak(db.pg())
        .arg("verify")
        .arg(dump)
        .arg("--json")
        .args(extra)
        .env("DATABASE_URL", db.url())
        .output()
        .unwrap();
    let report = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    (out, report)
}

pub(crate) fn check<'r>(report: &'r Value, name: &str) -> &'r str {
    report["checks"]
        .as_array()
        .and_then(|checks| checks.iter().find(|c| c["name"] == name))
        .and_then(|c| c["status"].as_str())
        .unwrap_or("absent")
}

pub(crate) fn meta_file(dump: &Path) -> String {
    let name = dump.file_name().unwrap().to_string_lossy().into_owned();
    let stem = name
        .strip_suffix(".dump.age")
        .or_else(|| name.strip_suffix(".dump"))
        .unwrap();
    format!("{stem}.meta.json")
}
