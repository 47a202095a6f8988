//! With encryption on, meta.json keeps in plaintext only what list, check,
//! retention and the anomaly check need; database and role settings, policy
//! and constraint expressions, role names go into its age-encrypted `sealed`
//! section. Greps every file on disk and every object in the bucket (moto)
//! of an encrypted backup, one database and an `--all-databases` run, for
//! the secrets; then verify and restore, which hold the key, still compare
//! and re-apply them.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::support::keys::keygen;
use crate::support::verify::check_named;
use crate::support::verify::Dir;
use crate::support::{self, output_text, private_cluster, s3, Pg, S3Server};

const DB_SECRET: &str = "S3cr3t-jwt-db-7f1e2d";

const ROLE_SECRET: &str = "S3cr3t-role-9a8b7c";

const POLICY_EXPR: &str = "P0l1cy-expr-51c2";

const CHECK_EXPR: &str = "Ch3ck-expr-64d3";

const SECRETS: [&str; 4] = [DB_SECRET, ROLE_SECRET, POLICY_EXPR, CHECK_EXPR];

/// pgbak on `pg`'s database `db`, uploading to `bucket` under `prefix`.
fn pgbak_s3(pg: &Pg, db: &str, server: &S3Server, bucket: &str, prefix: &str) -> Command {
    let mut cmd = support::pgbak(pg);
    for (key, value) in server.env() {
        cmd.env(key, value);
    }
    cmd.env("S3_BUCKET", bucket)
        .env("S3_PREFIX", prefix)
        .env("DATABASE_URL", pg.url(db));
    cmd
}

/// Every file under `dir` (recursively) and its bytes.
fn all_files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            found.extend(all_files(&path));
        } else {
            found.push((path.display().to_string(), std::fs::read(&path).unwrap()));
        }
    }
    found
}

fn leaks(name: &str, bytes: &[u8]) -> Vec<String> {
    let text = String::from_utf8_lossy(bytes);
    SECRETS
        .iter()
        .filter(|s| text.contains(**s))
        .map(|s| format!("{name} holds {s}"))
        .collect()
}

#[test]
fn sealed_meta_no_setting_or_expression_in_any_plaintext_file_or_object() {
    let pg = private_cluster(16);
    pg.psql("postgres", "CREATE ROLE sealed_app LOGIN");
    pg.psql("postgres", "CREATE DATABASE sealed_app OWNER sealed_app");
    pg.psql(
        "postgres",
        &format!(
            "ALTER DATABASE sealed_app SET app.jwt_secret = '{DB_SECRET}';
             ALTER ROLE sealed_app IN DATABASE sealed_app SET app.role_secret = '{ROLE_SECRET}'"
        ),
    );
    pg.psql(
        "sealed_app",
        &format!(
            "CREATE TABLE notes (id int PRIMARY KEY, owner text CHECK (owner <> '{CHECK_EXPR}'), body text);
             INSERT INTO notes SELECT g, 'o' || g, 'note ' || g FROM generate_series(1, 200) g;
             ALTER TABLE notes OWNER TO sealed_app;
             ALTER TABLE notes ENABLE ROW LEVEL SECURITY;
             CREATE POLICY notes_owner ON notes USING (owner <> '{POLICY_EXPR}')"
        ),
    );
    let keys = Dir::new("sealed-keys");
    let (key, public) = keygen(&keys, "key.txt");
    let server = s3();
    let bucket = server.fresh_bucket("sealed");
    let dir = Dir::new("sealed");
    let all_dir = Dir::new("sealed-all");

    // One database, and a whole server (globals included), both uploaded.
    let out = pgbak_s3(&pg, "sealed_app", server, &bucket, "one/")
        .args(["backup", "--json", "--encrypt-to", &public, "--output-dir"])
        .arg(&*dir)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    let printed = String::from_utf8_lossy(&out.stdout).into_owned();
    let out = pgbak_s3(&pg, "postgres", server, &bucket, "all/")
        .args([
            "backup",
            "--all-databases",
            "--encrypt-to",
            &public,
            "--output-dir",
        ])
        .arg(&*all_dir)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));

    let mut found = leaks("backup --json", printed.as_bytes());
    let mut metas = Vec::new();
    for (name, bytes) in all_files(&dir).into_iter().chain(all_files(&all_dir)) {
        found.extend(leaks(&name, &bytes));
        if name.ends_with(".meta.json") {
            metas.push((name, bytes));
        }
    }
    let objects = server.list_objects(&bucket, "");
    assert!(objects.len() >= 6, "{objects:?}");
    for object in &objects {
        let bytes = server.get_object(&bucket, &object.key);
        found.extend(leaks(&object.key, &bytes));
    }
    assert!(found.is_empty(), "secrets in plaintext: {found:?}");

    // What stays readable without the key: enough to list, check, retain, pin.
    let app_metas: Vec<Value> = metas
        .iter()
        .filter(|(name, _)| name.contains("sealed_app_full_"))
        .map(|(_, bytes)| serde_json::from_slice(bytes).unwrap())
        .collect();
    assert_eq!(app_metas.len(), 2, "{metas:?}");
    for meta in &app_metas {
        assert!(
            meta["sealed"]
                .as_str()
                .is_some_and(|s| s.starts_with("-----BEGIN AGE ENCRYPTED FILE-----")),
            "{meta:#}"
        );
        assert_eq!(meta["tables"][0]["name"], "notes");
        assert_eq!(meta["tables"][0]["rows"], 200);
        for sealed in ["database_properties", "roles", "schema_objects"] {
            assert!(
                meta.get(sealed).is_none(),
                "{sealed} in plaintext: {meta:#}"
            );
        }
    }
    let out = support::pgbak_bare()
        .args(["list", "--json", "--backup-dir"])
        .arg(&*dir)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    let out = support::pgbak_bare()
        .args(["check", "--max-verified-age", "0", "--backup-dir"])
        .arg(&*dir)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));

    // verify decrypts the sealed section and still compares the policy and the check.
    let dump = dir.join(
        crate::support::bucket::files(&dir, ".dump.age")
            .into_iter()
            .next()
            .unwrap(),
    );
    let out = support::pgbak(&pg)
        .args(["verify", "--json"])
        .arg(&dump)
        .env("PGBAK_AGE_IDENTITY_FILE", &key)
        .env("DATABASE_URL", pg.url("sealed_app"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let detail = |name: &str| -> String {
        report["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == name)
            .map(|c| format!("{} {}", c["status"], c["detail"]))
            .unwrap_or_default()
    };
    // A lost sealed section would make these "skip" (nothing recorded to compare).
    for check in [
        "row-level security matches",
        "constraints match",
        "extensions present",
    ] {
        assert!(detail(check).starts_with("\"pass\""), "{check}: {report:#}");
    }
    // The verdict was written back without unsealing anything.
    let (_, bytes) = all_files(&dir)
        .into_iter()
        .find(|(n, _)| n.ends_with(".meta.json"))
        .unwrap();
    assert!(leaks("meta.json after verify", &bytes).is_empty());
    let meta: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(meta["verification"]["passed"], true);
    assert!(meta["sealed"].is_string());

    // Without the identity: the clear exit 2, as for the dump itself.
    let out = support::pgbak(&pg)
        .arg("verify")
        .arg(&dump)
        .env("DATABASE_URL", pg.url("sealed_app"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", output_text(&out));

    // restore --create-db re-applies the settings the sealed section holds.
    let out = support::pgbak(&pg)
        .args([
            "restore",
            "--no-confirm",
            "--create-db",
            "--allow-other-database",
        ])
        .arg(&dump)
        .env("PGBAK_AGE_IDENTITY_FILE", &key)
        .env("DATABASE_URL", pg.url("sealed_copy"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    let settings = pg.psql(
        "postgres",
        "SELECT string_agg(array_to_string(setconfig, ','), ';') FROM pg_db_role_setting s
           JOIN pg_database d ON d.oid = s.setdatabase WHERE d.datname = 'sealed_copy'",
    );
    assert!(
        settings.contains(DB_SECRET) && settings.contains(ROLE_SECRET),
        "{settings}"
    );
}

/// A verify that finds an encrypted backup's policy defined otherwise in the
/// copy names the policy, but its report, log lines and meta.json show
/// neither expression (they would reach logs and alert webhooks).
#[test]
fn sealed_meta_a_differing_policy_is_named_without_its_expressions() {
    let pg = crate::support::pg16();
    let db = pg.fresh_db("sealed differs");
    db.psql(&format!(
        "CREATE TABLE notes (id int PRIMARY KEY, owner text);
         INSERT INTO notes SELECT g, 'o' || g FROM generate_series(1, 20) g;
         ALTER TABLE notes ENABLE ROW LEVEL SECURITY;
         CREATE POLICY notes_owner ON notes USING (owner <> '{POLICY_EXPR}')"
    ));
    let keys = Dir::new("sealed-differs-keys");
    let (key, public) = keygen(&keys, "key.txt");
    let backup = |dir: &Path| -> PathBuf {
        let out = support::backup_cmd(
            pg,
            &db.name,
            dir,
            &["--no-s3", "--json", "--encrypt-to", &public],
        )
        .output()
        .unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
        let summary: Value = serde_json::from_slice(&out.stdout).unwrap();
        PathBuf::from(summary["dump"].as_str().unwrap())
    };
    let meta_of = |dump: &Path| {
        let name = dump
            .file_name()
            .unwrap()
            .to_string_lossy()
            .replace(".dump.age", ".meta.json");
        dump.with_file_name(name)
    };
    let first_dir = Dir::new("sealed-differs-1");
    let first = backup(&first_dir);
    db.psql("ALTER POLICY notes_owner ON notes USING (owner <> 'Other-expr-77')");
    let second_dir = Dir::new("sealed-differs-2");
    let second = backup(&second_dir);
    // The second dump in place of the first, under the first's meta.json.
    std::fs::copy(&second, &first).unwrap();
    let theirs: Value = serde_json::from_slice(&std::fs::read(meta_of(&second)).unwrap()).unwrap();
    let mut ours: Value = serde_json::from_slice(&std::fs::read(meta_of(&first)).unwrap()).unwrap();
    for field in ["sha256", "size_bytes", "encryption"] {
        ours[field] = theirs[field].clone();
    }
    std::fs::write(meta_of(&first), serde_json::to_vec_pretty(&ours).unwrap()).unwrap();
    let out = support::pgbak(pg)
        .args(["verify", "--json"])
        .arg(&first)
        .env("PGBAK_AGE_IDENTITY_FILE", &key)
        .env("DATABASE_URL", db.url())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", output_text(&out));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let rls = check_named(&report, "row-level security matches");
    assert_eq!(rls["status"], "fail", "{report:#}");
    assert!(
        rls["detail"]
            .as_str()
            .unwrap()
            .contains("policy notes_owner on public.notes"),
        "{rls}"
    );
    let everything = format!(
        "{}{}",
        output_text(&out),
        String::from_utf8_lossy(&std::fs::read(meta_of(&first)).unwrap())
    );
    for expression in [POLICY_EXPR, "Other-expr-77"] {
        assert!(
            !everything.contains(expression),
            "{expression} shown: {everything}"
        );
    }
}
