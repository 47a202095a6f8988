//! `pgbak verify` compares more than tables and rows (issue 10 item 5): the
//! indexes, constraints, triggers, row-level security and sequence values that
//! meta.json recorded in the dump's snapshot must all be in the restored copy.
//! A copy that lacks one is made for real: a second dump of the same database
//! after `DROP INDEX` / `DROP POLICY` / a sequence set back, put in place of the
//! first dump under the first meta.json (with the second's checksum and size,
//! so the checksum check passes and the comparison is what fails).
//! Also: a stop signal while the checks on the copy wait ends verify with 143.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::faults::TableLock;
use crate::support::verify::wait_for_temp_db;
use crate::support::verify::{
    backup, detail, read_meta, run_json, status, verify_cmd, verify_dbs, write_meta, Dir,
};
use crate::support::{output_text, pg16, Pg, TestDb};

/// The schema checks, as verify names them.
const SCHEMA_CHECKS: [&str; 5] = [
    "indexes match",
    "constraints match",
    "triggers match",
    "row-level security matches",
    "sequences match",
];

/// The fixture (indexes incl. HNSW, foreign keys, serial sequences) plus a
/// trigger, a disabled trigger, a NOT VALID check and an RLS policy.
fn schema_db<'a>(pg: &'a Pg, hint: &str) -> TestDb<'a> {
    let db = pg.fixture_db(hint, 0.05);
    db.psql(
        "CREATE FUNCTION touch() RETURNS trigger LANGUAGE plpgsql AS \
           'BEGIN NEW.display_name := coalesce(NEW.display_name, NEW.email); RETURN NEW; END';
         CREATE TRIGGER users_touch BEFORE INSERT ON users FOR EACH ROW EXECUTE FUNCTION touch();
         CREATE TRIGGER users_touch_off BEFORE UPDATE ON users FOR EACH ROW EXECUTE FUNCTION touch();
         ALTER TABLE users DISABLE TRIGGER users_touch_off;
         ALTER TABLE feedback ADD CONSTRAINT feedback_score_range CHECK (score BETWEEN -1000 AND 1000) NOT VALID;
         ALTER TABLE documents ENABLE ROW LEVEL SECURITY;
         CREATE POLICY tenant_documents ON documents FOR SELECT TO PUBLIC
           USING (tenant_id = current_setting('app.tenant_id', true)::bigint);",
    );
    db
}

/// Puts `other`'s dump bytes in place of `dump`, and `other`'s checksum and
/// size into `dump`'s meta.json: everything else is the first backup's record.
fn swap_dump(dump: &Path, other: &Path) {
    std::fs::copy(other, dump).expect("copying the second dump over the first");
    let theirs = read_meta(other);
    let mut ours = read_meta(dump);
    ours["sha256"] = theirs["sha256"].clone();
    ours["size_bytes"] = theirs["size_bytes"].clone();
    write_meta(dump, &ours);
}

/// Verifies `dump`, expecting exit 1 with exactly `failed` failing.
fn verify_fails_with(db: &TestDb<'_>, dump: &Path, failed: &[&str]) -> Value {
    let (out, report) = run_json(&mut verify_cmd(db, dump, &[]));
    assert_eq!(out.status.code(), Some(1), "{}", output_text(&out));
    let failing: Vec<&str> = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["status"] == "fail")
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(failing, failed, "{report:#}");
    let verification = &read_meta(dump)["verification"];
    assert_eq!(verification["passed"], false);
    assert_eq!(verification["failed_checks"], serde_json::json!(failed));
    assert!(verify_dbs(db.pg(), &db.name).is_empty());
    report
}

fn find<'m>(list: &'m Value, name: &str) -> &'m Value {
    list.as_array()
        .unwrap()
        .iter()
        .find(|o| o["name"] == name)
        .unwrap_or_else(|| panic!("{name} not recorded in {list:#}"))
}

#[test]
fn verify_records_and_compares_indexes_constraints_triggers_policies_and_sequences() {
    let pg = pg16();
    let db = schema_db(pg, "verify schema good");
    let dir = Dir::new("verify-schema-good");
    let dump = backup(&db, &dir);

    let meta = read_meta(&dump);
    let objects = &meta["schema_objects"];
    let hnsw = find(&objects["indexes"], "vector_chunks_embedding_idx");
    assert!(
        hnsw["definition"].as_str().unwrap().contains("USING hnsw"),
        "{hnsw}"
    );
    let fk = find(&objects["constraints"], "users_tenant_id_fkey");
    assert_eq!(fk["kind"], "foreign key");
    assert!(fk["definition"]
        .as_str()
        .unwrap()
        .contains("REFERENCES public.tenants(id)"));
    let not_valid = find(&objects["constraints"], "feedback_score_range");
    assert_eq!(not_valid["validated"], false);
    assert_eq!(
        find(&objects["triggers"], "users_touch")["enabled"],
        "enabled"
    );
    assert_eq!(
        find(&objects["triggers"], "users_touch_off")["enabled"],
        "disabled"
    );
    let policy = find(&objects["policies"], "tenant_documents");
    assert_eq!(policy["command"], "SELECT");
    assert_eq!(policy["roles"], serde_json::json!(["public"]));
    assert_eq!(
        objects["row_security"],
        serde_json::json!([{"schema": "public", "table": "documents", "enabled": true, "forced": false}])
    );
    let users = db.psql("SELECT max(id) FROM users");
    let seq = find(&objects["sequences"], "users_id_seq");
    assert_eq!(seq["last_value"].to_string(), users, "{seq}");

    let (out, report) = run_json(&mut verify_cmd(&db, &dump, &[]));
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    for check in SCHEMA_CHECKS {
        assert_eq!(status(&report, check), "pass", "{check}: {report:#}");
    }
    assert!(detail(&report, "indexes match").contains("defined as in meta.json"));
    assert!(detail(&report, "sequences match").contains("none behind"));
    assert!(verify_dbs(pg, &db.name).is_empty());

    // A meta.json written before schema objects were recorded still verifies, saying so.
    let mut old = read_meta(&dump);
    old.as_object_mut().unwrap().remove("schema_objects");
    old.as_object_mut().unwrap().remove("verification");
    write_meta(&dump, &old);
    let (out, report) = run_json(&mut verify_cmd(&db, &dump, &[]));
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    for check in SCHEMA_CHECKS {
        assert_eq!(status(&report, check), "skip", "{check}: {report:#}");
        assert!(detail(&report, check).contains("records no schema objects"));
    }
    assert!(read_meta(&dump).get("schema_objects").is_none());
}

#[test]
fn verify_fails_naming_an_index_or_a_policy_the_copy_lacks() {
    let pg = pg16();
    let db = schema_db(pg, "verify schema missing");
    let dir = Dir::new("verify-schema-missing");
    let dump = backup(&db, &dir);
    let original_meta = read_meta(&dump);

    db.psql("DROP INDEX vector_chunks_embedding_idx");
    let other = Dir::new("verify-schema-missing-index");
    let without_index = backup(&db, &other);
    swap_dump(&dump, &without_index);
    let report = verify_fails_with(&db, &dump, &["indexes match"]);
    let said = detail(&report, "indexes match");
    assert!(
        said.contains("index public.vector_chunks_embedding_idx on public.vector_chunks missing"),
        "{said}"
    );
    assert_eq!(status(&report, "row counts match"), "pass");

    db.psql("CREATE INDEX vector_chunks_embedding_idx ON vector_chunks USING hnsw (embedding vector_cosine_ops); DROP POLICY tenant_documents ON documents");
    let other = Dir::new("verify-schema-missing-policy");
    let without_policy = backup(&db, &other);
    write_meta(&dump, &original_meta);
    swap_dump(&dump, &without_policy);
    let report = verify_fails_with(&db, &dump, &["row-level security matches"]);
    let said = detail(&report, "row-level security matches");
    assert!(
        said.contains("policy tenant_documents on public.documents missing"),
        "{said}"
    );
}

#[test]
fn verify_fails_when_a_sequence_in_the_copy_is_behind() {
    let pg = pg16();
    let db = schema_db(pg, "verify schema sequence");
    let dir = Dir::new("verify-schema-sequence");
    let dump = backup(&db, &dir);
    let recorded = read_meta(&dump)["schema_objects"]["sequences"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "users_id_seq")
        .unwrap()["last_value"]
        .clone();

    db.psql("SELECT setval('users_id_seq', 3)");
    let other = Dir::new("verify-schema-sequence-behind");
    let behind = backup(&db, &other);
    swap_dump(&dump, &behind);
    let report = verify_fails_with(&db, &dump, &["sequences match"]);
    let said = detail(&report, "sequences match");
    assert!(
        said.contains(&format!(
            "sequence public.users_id_seq is behind: last value {recorded} in the backup, 3 in the copy"
        )),
        "{said}"
    );
}

#[test]
fn verify_sigterm_while_a_check_on_the_copy_waits_exits_143_and_drops_the_temp_db() {
    let pg = pg16();
    let db = pg.fixture_db("verify sig checks", 0.05);
    let dir = Dir::new("verify-sig-checks");
    let dump = backup(&db, &dir);
    // A table the checks will count, which the test creates in the copy and locks:
    // the row-count check then waits on the lock, deterministically.
    let mut meta = read_meta(&dump);
    meta["tables"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({"schema": "public", "name": "zz_held", "rows": 0}));
    write_meta(&dump, &meta);

    let mut child = verify_cmd(&db, &dump, &[])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting pgbak verify");
    let deadline = Instant::now() + Duration::from_secs(120);
    let temp = wait_for_temp_db(pg, &db.name, &mut child, deadline);
    pg.psql(&temp, "CREATE TABLE public.zz_held (id int)");
    let lock = TableLock::hold(pg, &temp, "public.zz_held");
    let waiting = format!(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = '{temp}' \
           AND application_name = 'pgbak' AND wait_event_type = 'Lock'"
    );
    while pg.psql("postgres", &waiting) == "0" {
        assert!(
            Instant::now() < deadline,
            "the checks never waited on the lock"
        );
        assert!(child.try_wait().unwrap().is_none(), "verify ended early");
        std::thread::sleep(Duration::from_millis(50));
    }

    // SAFETY: kill on our own child's pid.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let sent = Instant::now();
    let mut stopped = None;
    while sent.elapsed() < Duration::from_secs(20) {
        if let Some(code) = child.try_wait().unwrap() {
            stopped = Some(code);
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    if stopped.is_none() {
        let _ = child.kill();
        let _ = child.wait();
        drop(lock);
        pg.psql(
            "postgres",
            &format!("DROP DATABASE IF EXISTS \"{temp}\" WITH (FORCE)"),
        );
        panic!("verify did not stop within 20 s of SIGTERM while a check waited on a lock");
    }
    let out = child.wait_with_output().unwrap();
    drop(lock);
    assert_eq!(out.status.code(), Some(143), "{}", output_text(&out));
    assert!(verify_dbs(pg, &db.name).is_empty(), "temp database left");
    assert!(
        read_meta(&dump).get("verification").is_none(),
        "an interrupted verify records no verdict"
    );
}
