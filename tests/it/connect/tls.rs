//! TLS to the server: a cluster that accepts only TLS (hostssl) with a certificate from a
//! self-signed CA. pgbak's own connection and pg_dump must both follow sslmode, and verify-full
//! without a root certificate is refused as libpq refuses it.

use std::path::Path;
use std::process::Command;

use crate::support::verify::Dir;
use crate::support::{self, output_text, pgbak_bare, OwnedCluster};

fn openssl(dir: &Path, args: &[&str]) {
    let mut cmd = Command::new("openssl");
    cmd.current_dir(dir).args(args);
    support::output_ok(&mut cmd, &format!("openssl {args:?}"));
}

/// A CA, and a server certificate for `localhost` only, signed by it.
fn make_certs(dir: &Path) {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=pgbak test CA",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
        ],
    );
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=localhost",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
        ],
    );
    std::fs::write(dir.join("san.ext"), "subjectAltName=DNS:localhost\n").unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "san.ext",
            "-out",
            "server.pem",
        ],
    );
}

pub fn tls_only_cluster() -> Option<(OwnedCluster, tempfile::TempDir)> {
    // The PostgreSQL 16 wheel is built without OpenSSL; 17's and Debian's 15 have it.
    let major = if support::paths().pg17_bin.is_some() {
        17
    } else if support::paths().pg15_bin.is_some() {
        15
    } else {
        eprintln!("skipped: no PostgreSQL build with OpenSSL in the test tools");
        return None;
    };
    let pg = support::private_cluster(major);
    let certs = tempfile::tempdir().unwrap();
    make_certs(certs.path());
    for file in ["server.pem", "server.key"] {
        let to = pg.data_dir.join(file);
        std::fs::copy(certs.path().join(file), &to).unwrap();
        support::chown_to_postgres(&to);
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&to, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let hba = "local all all trust\nhostssl all all 127.0.0.1/32 scram-sha-256\n";
    std::fs::write(pg.data_dir.join("pg_hba.conf"), hba).unwrap();
    for setting in [
        "ssl = on",
        "ssl_cert_file = 'server.pem'",
        "ssl_key_file = 'server.key'",
    ] {
        pg.psql("postgres", &format!("ALTER SYSTEM SET {setting}"));
    }
    pg.psql("postgres", "SELECT pg_reload_conf()");
    std::thread::sleep(std::time::Duration::from_millis(500));
    assert_eq!(pg.psql("postgres", "SHOW ssl"), "on");
    Some((pg, certs))
}

fn backup_with(pg: &OwnedCluster, url: &str, dir: &Path) -> std::process::Output {
    pgbak_bare()
        .env("DATABASE_URL", url)
        .env("PGBAK_PG_BIN_DIR", &pg.bin)
        .args(["backup", "--output-dir"])
        .arg(dir)
        .output()
        .unwrap()
}

#[test]
fn sslmode_require_and_verify_full_work_and_a_wrong_host_name_fails() {
    let Some((pg, certs)) = tls_only_cluster() else {
        return;
    };
    let db = pg.db_with("tls", "CREATE TABLE t AS SELECT 1 AS x");
    let ca = certs.path().join("ca.pem");
    let pw = support::PASSWORD;
    let url = |host: &str, query: &str| {
        format!(
            "postgresql://postgres:{pw}@{host}:{}/{}?{query}",
            pg.port, db.name
        )
    };
    let tmp = tempfile::tempdir().unwrap();

    // The server takes TLS only: without it, the connection is refused.
    let out = backup_with(&pg, &url("127.0.0.1", "sslmode=disable"), tmp.path());
    assert_eq!(out.status.code(), Some(1), "{}", output_text(&out));

    let out = backup_with(&pg, &url("127.0.0.1", "sslmode=require"), tmp.path());
    assert!(out.status.success(), "require: {}", output_text(&out));

    let verify_ca = format!("sslmode=verify-ca&sslrootcert={}", ca.display());
    let out = backup_with(&pg, &url("127.0.0.1", &verify_ca), tmp.path());
    assert!(out.status.success(), "verify-ca: {}", output_text(&out));

    let verify_full = format!("sslmode=verify-full&sslrootcert={}", ca.display());
    let out = backup_with(&pg, &url("localhost", &verify_full), tmp.path());
    assert!(out.status.success(), "verify-full: {}", output_text(&out));
    let made = std::fs::read_dir(tmp.path()).unwrap().count();

    // The certificate names localhost, not 127.0.0.1.
    let out = backup_with(&pg, &url("127.0.0.1", &verify_full), tmp.path());
    assert_eq!(out.status.code(), Some(1), "{}", output_text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("TLS") || err.contains("certificate"), "{err}");
    assert!(!err.contains(pw));
    assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), made);
}

#[test]
fn host_verify_full_without_a_root_certificate_is_refused_as_libpq_does() {
    let Some((pg, certs)) = crate::connect::tls::tls_only_cluster() else {
        return;
    };
    let db = pg.db_with("tls roots", "CREATE TABLE t AS SELECT 1 AS x");
    let ca = certs.path().join("ca.pem");
    let home = Dir::new("tls-roots-home"); // no ~/.postgresql/root.crt
    let url = |query: &str| {
        format!(
            "postgresql://postgres:{}@localhost:{}/{}?{query}",
            support::PASSWORD,
            pg.port,
            db.name
        )
    };
    let backup = |query: &str| {
        let backups = Dir::new("tls-roots");
        let out = support::pgbak_bare()
            .env("DATABASE_URL", url(query))
            .env("PGBAK_PG_BIN_DIR", &pg.bin)
            .env("HOME", &*home)
            // The test CA is the "system" store here (OpenSSL and pgbak both read it).
            .env("SSL_CERT_FILE", &ca)
            .args(["backup", "--output-dir"])
            .arg(&*backups)
            .output()
            .unwrap();
        (out, support::dumps(&backups).len())
    };
    // No root certificate named: refused before connecting, as libpq refuses
    // (the system store is not a silent fallback), a configuration error.
    let (out, made) = backup("sslmode=verify-full");
    assert_eq!(out.status.code(), Some(2), "{}", output_text(&out));
    assert_eq!(made, 0);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("sslrootcert=system"), "{stderr}");
    let (out, _) = backup("sslmode=verify-ca");
    assert_eq!(out.status.code(), Some(2), "{}", output_text(&out));
    // Asked for: the system's trusted roots, for pgbak's session and pg_dump alike.
    let (out, made) = backup("sslmode=verify-full&sslrootcert=system");
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    assert_eq!(made, 1);
}
