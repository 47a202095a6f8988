//! A table restore in one transaction: pg_restore writes the chosen entries
//! as SQL (`--file=-`), psql runs them with `--single-transaction` and
//! `ON_ERROR_STOP`, so the table comes back whole or the target stays as it
//! was. Not `pg_restore --single-transaction`: a pg_restore newer than the
//! server opens with settings the server does not know (PostgreSQL 17's
//! `SET transaction_timeout = 0`), an error that would abort the
//! transaction before anything ran; the script's opening lines are adjusted
//! on the way instead ([`adjust_prelude_line`]).
//!
//! psql's session is watched as pg_restore's are ([`super::sessions`]): a
//! lock wait longer than `--lock-wait-timeout` is cancelled with its blocker
//! named, and on a signal the session is ended on the server (a backend
//! waiting for a lock does not notice that its client is gone, and would hold
//! the locks its transaction took until the wait ends).

use std::process::Stdio;

use anyhow::{Context, Result};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

use super::{
    dbname_conninfo, pgoptions, sessions, Input, PgRestoreVerdict, RestoreJob, TableWay, STDERR_CAP,
};
use crate::error::interrupted;
use crate::pg::tools;
use crate::signals::Signals;
use crate::ui;

/// Runs the table restore `job` (its `-L` list) reading `input`, as `way` says.
pub async fn in_one_transaction(
    job: &RestoreJob<'_>,
    way: TableWay,
    input: &Input,
    signals: &mut Signals,
) -> Result<PgRestoreVerdict> {
    let mut script = job.tools.command("pg_restore", job.conn);
    if !job.owners {
        script.arg("--no-owner").arg("--no-privileges");
    }
    script.arg("--file=-");
    if let Some(list) = job.list_file {
        script.arg("--use-list").arg(list);
    }
    match way {
        TableWay::Create => {}
        TableWay::DataOnly => {
            script.arg("--data-only");
        }
        TableWay::Clean => {
            script.arg("--clean").arg("--if-exists");
        }
    }
    input.attach(&mut script)?;
    script.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut psql = job.tools.command("psql", job.conn);
    psql.args([
        "--no-psqlrc",
        "--quiet",
        "--no-password",
        "--single-transaction",
        "--set=ON_ERROR_STOP=1",
    ])
    .arg(format!("--dbname={}", dbname_conninfo(&job.conn.dbname)))
    .stdin(Stdio::piped())
    .stdout(Stdio::null())
    .stderr(Stdio::piped());
    psql.env("PGOPTIONS", pgoptions(job.conn, job.maintenance_work_mem));
    // A name of its own, so the watch sees this session and no other psql.
    let own = sessions::Sessions {
        app: format!("pgbak-table-restore-{}", std::process::id()),
        database: job.conn.dbname.clone(),
    };
    psql.env("PGAPPNAME", &own.app);
    ui::debug(&format!(
        "running {} | {}",
        tools::describe(&script),
        tools::describe(&psql)
    ));
    let mut script = script
        .spawn()
        .with_context(|| format!("starting {}", job.tools.tool("pg_restore").display()))?;
    let mut psql = psql.spawn().with_context(|| {
        format!(
            "starting {} (a table restore runs through psql, in one transaction)",
            job.tools.tool("psql").display()
        )
    })?;
    let (Some(sql), Some(sink), Some(script_err), Some(psql_err)) = (
        script.stdout.take(),
        psql.stdin.take(),
        script.stderr.take(),
        psql.stderr.take(),
    ) else {
        anyhow::bail!("pg_restore or psql started without its pipes");
    };
    let script_err = tools::drain_stderr(script_err, STDERR_CAP);
    let psql_err = tools::drain_stderr(psql_err, STDERR_CAP);
    let pump = tokio::spawn(pump(sql, sink));
    let watch = job
        .lock_wait_timeout
        .map(|limit| sessions::Watch::start(job.conn.clone(), own.clone(), limit));
    // On a signal psql's session is ended on the server (its transaction
    // rolled back), then both are killed as they drop.
    let (written, read) = tokio::select! {
        done = async { (script.wait().await, psql.wait().await) } => done,
        sig = signals.recv() => {
            ui::warn(&format!("{}: stopping the table restore (its transaction is rolled back)", sig.name()));
            sessions::terminate(job.conn, &own).await;
            return Err(interrupted(sig));
        }
    };
    let written = written.context("waiting for pg_restore")?;
    let read = read.context("waiting for psql")?;
    let _ = pump.await;
    let (script_err, _) = script_err.await.unwrap_or_default();
    let (psql_err, _) = psql_err.await.unwrap_or_default();
    let mut outcome = judge(&psql_err, read.success());
    outcome.blockers = watch.map(|w| w.blockers()).unwrap_or_default();
    if !written.success() {
        outcome.errors.insert(
            0,
            format!(
                "pg_restore could not write the table's entries ({written}): {}",
                super::one_line(&script_err)
            ),
        );
    }
    Ok(outcome)
}

/// Copies pg_restore's script into psql, adjusting its opening settings.
async fn pump(sql: tokio::process::ChildStdout, mut sink: tokio::process::ChildStdin) {
    let mut lines = BufReader::new(sql);
    let mut line = Vec::new();
    let mut prelude = true;
    loop {
        line.clear();
        match lines.read_until(b'\n', &mut line).await {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        if prelude {
            prelude = in_prelude(&line);
        }
        let out = match prelude.then(|| adjust_prelude_line(&line)).flatten() {
            Some(adjusted) => adjusted.into_bytes(),
            None => std::mem::take(&mut line),
        };
        if sink.write_all(&out).await.is_err() {
            break;
        }
    }
    let _ = sink.shutdown().await;
}

/// The script opens with settings (`SET x = y;`, `SELECT
/// pg_catalog.set_config(...)`), comments, blank lines and (pg_restore
/// 17.6 and later) psql's `\restrict KEY`; the first other line ends that
/// prelude (data lines are never touched).
fn in_prelude(line: &[u8]) -> bool {
    let text = String::from_utf8_lossy(line);
    let text = text.trim();
    text.is_empty()
        || text.starts_with("--")
        || text.starts_with("\\restrict ")
        || text.starts_with("SET ")
        || text.starts_with("SELECT pg_catalog.set_config(")
}

/// A setting newer servers know and older ones refuse, made conditional:
/// `SET transaction_timeout = 0;` (pg_restore 17) becomes a `set_config`
/// that runs only where the server has the setting. None: keep the line.
pub fn adjust_prelude_line(line: &[u8]) -> Option<String> {
    const NEWER: &[&str] = &["transaction_timeout"];
    let text = std::str::from_utf8(line).ok()?.trim();
    let rest = text.strip_prefix("SET ")?.strip_suffix(';')?;
    let (name, value) = rest.split_once(" = ")?;
    if !NEWER.contains(&name) || !value.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return None;
    }
    Some(format!(
        "SELECT pg_catalog.set_config('{name}', '{value}', false) \
         WHERE EXISTS (SELECT 1 FROM pg_catalog.pg_settings WHERE name = '{name}');\n"
    ))
}

/// psql's stderr: its `ERROR:` lines (with the `DETAIL:` after each) are
/// the errors; NOTICEs (`DROP ... IF EXISTS` of what is not there) are not.
pub fn judge(stderr: &str, success: bool) -> PgRestoreVerdict {
    let mut outcome = PgRestoreVerdict {
        warnings: Vec::new(),
        errors: Vec::new(),
        not_created: Vec::new(),
        error_entries: 0,
        blockers: Vec::new(),
        needs_superuser: Vec::new(),
    };
    for line in stderr.lines() {
        let message = line
            .strip_prefix("psql:")
            .and_then(|rest| rest.splitn(3, ':').nth(2))
            .unwrap_or(line)
            .trim();
        if let Some(error) = message.strip_prefix("ERROR:") {
            outcome.errors.push(error.trim().to_owned());
        } else if let Some(detail) = message.strip_prefix("DETAIL:") {
            if let Some(last) = outcome.errors.last_mut() {
                last.push_str(&format!(" ({})", detail.trim()));
            }
        } else if let Some(warning) = message.strip_prefix("WARNING:") {
            outcome.warnings.push(warning.trim().to_owned());
        }
    }
    if !success && outcome.errors.is_empty() {
        outcome
            .errors
            .push(format!("psql failed: {}", super::one_line(stderr.trim())));
    }
    outcome.error_entries = outcome.errors.len();
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_known_newer_settings_of_the_prelude_are_made_conditional() {
        let adjusted = adjust_prelude_line(b"SET transaction_timeout = 0;\n").unwrap();
        assert!(adjusted.starts_with(
            "SELECT pg_catalog.set_config('transaction_timeout', '0', false) WHERE EXISTS"
        ));
        for kept in [
            &b"SET statement_timeout = 0;\n"[..],
            b"SET transaction_timeout = '0; DROP TABLE x';\n",
            b"CREATE TABLE t (id int);\n",
        ] {
            assert_eq!(
                adjust_prelude_line(kept),
                None,
                "{}",
                String::from_utf8_lossy(kept)
            );
        }
        assert!(in_prelude(b"SET lock_timeout = 0;\n") && in_prelude(b"--\n") && in_prelude(b"\n"));
        assert!(in_prelude(b"\\restrict gMLJwy7HZn14j5x\n"));
        assert!(!in_prelude(b"CREATE TABLE public.users (\n"));
        assert!(!in_prelude(b"COPY public.users (id) FROM stdin;\n"));
    }

    #[test]
    fn psql_errors_are_the_errors_and_notices_are_not() {
        let stderr = "psql:<stdin>:20: NOTICE:  table \"users\" does not exist, skipping\n\
                      psql:<stdin>:57: ERROR:  duplicate key value violates unique constraint \"users_pkey\"\n\
                      DETAIL:  Key (id)=(1) already exists.\n\
                      CONTEXT:  COPY users, line 1\n";
        let outcome = judge(stderr, false);
        assert_eq!(
            outcome.errors,
            vec!["duplicate key value violates unique constraint \"users_pkey\" (Key (id)=(1) already exists.)"]
        );
        assert!(outcome.warnings.is_empty());
        assert!(judge("psql:<stdin>:1: NOTICE:  x\n", true).succeeded());
        let failed = judge("psql: error: connection to server failed\n", false);
        assert!(!failed.succeeded() && failed.errors[0].contains("connection"));
    }
}
