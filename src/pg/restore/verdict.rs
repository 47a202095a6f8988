//! pg_restore's verdict: its exit status, its own closing error count, and
//! every line of its stderr sorted into harmless warnings, objects not created
//! (a role missing) and errors that mean the copy is incomplete. Pure
//! functions, table-tested.

use anyhow::anyhow;

/// pg_restore's stderr, sorted.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct PgRestoreVerdict {
    /// Complaints that leave the data intact.
    pub warnings: Vec<String>,
    /// Errors: the copy is not complete.
    pub errors: Vec<String>,
    /// Objects pg_restore could not create because a role they name does not
    /// exist here (policies, user mappings: statements `--no-owner
    /// --no-privileges` cannot skip). The data is intact, the copy is not:
    /// verify fails a check, restore names each one.
    pub not_created: Vec<String>,
    /// Objects only a superuser may create (event triggers, subscriptions),
    /// not created by an unprivileged restore: verify's copy goes on without
    /// them (its checks do not cover them) and names them; a real restore
    /// fails on them.
    pub needs_superuser: Vec<String>,
    /// Entries pg_restore reported as `error:` (harmless ones included), to
    /// compare with its own `errors ignored on restore: N`.
    #[serde(skip)]
    pub error_entries: usize,
    /// Sessions seen blocking pg_restore's statements on a lock, described.
    #[serde(skip)]
    pub blockers: Vec<String>,
}

impl PgRestoreVerdict {
    pub fn succeeded(&self) -> bool {
        self.errors.is_empty()
    }

    /// An extension the server does not have (`vector` when pgvector is not installed).
    pub fn missing_extension(&self) -> Option<String> {
        self.errors.iter().find_map(|e| missing_extension(e))
    }
}

/// The extension named by "extension "x" is not available" or a missing control file.
pub fn missing_extension(text: &str) -> Option<String> {
    if let Some(rest) = text.split("extension \"").nth(1) {
        if text.contains("is not available") {
            return rest.split('"').next().map(str::to_owned);
        }
    }
    if text.contains("could not open extension control file") {
        let control = text.split(".control").next()?;
        let name = control.rsplit('/').next()?;
        return Some(name.to_owned());
    }
    None
}

/// pg_restore's stderr kept for classification; beyond it the rest is drained
/// and the verdict is a failure (unclassified errors may be in it).
pub const STDERR_CAP: usize = 64 << 20;

/// The verdict on one pg_restore run. Exit 0: whatever it said is a warning.
/// Exit 1: judged by the entries read, which must account for its own
/// closing `errors ignored on restore: N` (a missing line, or more errors
/// counted than could come from the entries read, mean output pgbak did not
/// read). With `jobs` > 1, pg_restore up to 16 counts each TOC entry that
/// failed in a worker twice (the worker's count and the leader's), so N may
/// be up to twice the entries: the same archive gets the same verdict
/// whatever `--jobs`. Any other exit, or death by a signal, is failure.
pub fn judge(
    stderr: &str,
    code: Option<i32>,
    signal: Option<i32>,
    truncated: bool,
    jobs: u32,
) -> PgRestoreVerdict {
    let counted_per_entry = if jobs > 1 { 2 } else { 1 };
    let mut outcome = classify(stderr, code == Some(0));
    match code {
        Some(0) => {}
        Some(1) => match ignored_errors(stderr) {
            _ if truncated => outcome.errors.push(format!(
                "pg_restore wrote more than {} MiB of messages; the rest was not read, so the \
                 restore cannot be judged complete",
                STDERR_CAP >> 20
            )),
            None => outcome.errors.push(
                "pg_restore exited 1 without its closing `errors ignored on restore: N` line: \
                 its output is incomplete, so the restore cannot be judged complete"
                    .to_owned(),
            ),
            // With --jobs > 1 pg_restore does not count the errors of a worker's session
            // setup (`SET transaction_timeout`), so pgbak may read more error entries
            // than N; and it may count a worker's failed entry twice.
            Some(n) if n > outcome.error_entries * counted_per_entry => {
                outcome.errors.push(format!(
                    "pg_restore counted {n} error(s) but reported only {} that pgbak read: the \
                 restore cannot be judged complete",
                    outcome.error_entries
                ))
            }
            Some(_) => {}
        },
        Some(other) => outcome
            .errors
            .push(format!("pg_restore failed with exit code {other}")),
        None => outcome.errors.push(format!(
            "pg_restore was killed by signal {}",
            signal.map_or_else(|| "?".to_owned(), |s| s.to_string())
        )),
    }
    outcome
}

/// N of pg_restore's closing `warning: errors ignored on restore: N`.
fn ignored_errors(stderr: &str) -> Option<usize> {
    stderr.lines().rev().find_map(|line| {
        let (_, n) = line.split_once("errors ignored on restore: ")?;
        n.trim().parse().ok()
    })
}

/// Sorts pg_restore's stderr into warnings and errors. Harmless: a role or
/// owner that does not exist on this server, an extension or schema that
/// already exists, a setting written by a newer pg_dump that this server does
/// not know (`SET transaction_timeout` from pg_dump 17 on a 16 server).
pub fn classify(stderr: &str, exit_ok: bool) -> PgRestoreVerdict {
    let mut outcome = PgRestoreVerdict::default();
    let mut current: Option<String> = None;
    let mut context: Option<String> = None;
    let finish = |entry: Option<String>, outcome: &mut PgRestoreVerdict| {
        if let Some(entry) = entry {
            outcome.error_entries += 1;
            let text = entry.trim().to_owned();
            match judge_entry(&text) {
                Entry::Harmless => outcome.warnings.push(text),
                Entry::NotCreated(object) => {
                    outcome.not_created.push(object);
                    outcome.warnings.push(text);
                }
                Entry::NeedsSuperuser(object) => {
                    if !outcome.needs_superuser.contains(&object) {
                        outcome.needs_superuser.push(object);
                    }
                    outcome.warnings.push(text);
                }
                Entry::Error => outcome.errors.push(text),
            }
        }
    };
    for line in stderr.lines() {
        // Parallel workers write `pg_restore: `, `error: ` and the message as three
        // writes (the message, `Command was:` included, as one), so lines interleave as
        // `pg_restore: pg_restore: error: error: <message 1>` followed by a bare
        // `<message 2>`, or a bare `error: <message 2>`.
        let (mut rest, mut prefixed, mut is_error) = (line, false, false);
        loop {
            // Also glued without its space (`pg_restore:pg_restore: error: ...`).
            if let Some(r) = rest.strip_prefix("pg_restore:") {
                (rest, prefixed) = (r.strip_prefix(' ').unwrap_or(r), true);
            } else if let Some(r) = rest.strip_prefix("error: ") {
                (rest, is_error) = (r, true);
            } else {
                break;
            }
        }
        // A failed statement's message always opens so; its prefixes may be on another line.
        if rest.starts_with("could not execute query: ") {
            is_error = true;
        }
        let starts_entry = prefixed
            || is_error
            || rest.starts_with("warning: ")
            || rest.starts_with("from TOC entry ");
        if starts_entry {
            finish(current.take(), &mut outcome);
            if is_error {
                let mut entry = rest.to_owned();
                if let Some(ctx) = context.take() {
                    entry = format!("{entry} ({ctx})");
                }
                current = Some(entry);
            } else if let Some(message) = rest.strip_prefix("warning: ") {
                if !message.starts_with("errors ignored on restore") {
                    outcome.warnings.push(message.trim().to_owned());
                }
            } else if let Some(entry) = rest.strip_prefix("from TOC entry ") {
                context = Some(format!("TOC entry {}", entry.trim()));
            }
            // Other lines ("while PROCESSING TOC:", progress) carry nothing to sort.
        } else if let Some(entry) = current.as_mut() {
            let line = line.trim();
            if !line.is_empty() {
                entry.push('\n');
                entry.push_str(line);
            }
        }
    }
    finish(current.take(), &mut outcome);
    if exit_ok {
        // pg_restore exits 0 only when it hit no error: whatever it said is a warning.
        let errors = std::mem::take(&mut outcome.errors);
        outcome.warnings.extend(errors);
    }
    outcome
}

/// What one `error:` entry of pg_restore means.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Entry {
    Harmless,
    /// A role it names does not exist: this object (described) was not created.
    NotCreated(String),
    /// Only a superuser may create this object (described), and the restore
    /// runs as a role that is not one.
    NeedsSuperuser(String),
    Error,
}

/// Every error line of the entry must be harmless, not only its first (worker
/// output interleaves). A missing role is harmless only for the statements
/// `--no-owner --no-privileges` cannot skip, and then the object is reported.
fn judge_entry(entry: &str) -> Entry {
    let command = entry
        .lines()
        .find_map(|l| l.strip_prefix("Command was: "))
        .unwrap_or_default();
    let mut lines = entry.lines();
    let first = lines.next().unwrap_or_default();
    let errors =
        std::iter::once(first).chain(lines.filter(|l| {
            l.contains("ERROR:") || l.starts_with("error: ") || l.starts_with("FATAL:")
        }));
    if let Some(object) = superuser_only_object(command) {
        // Refused for want of a superuser, or (comment, alter) missing because it was.
        let denied = |l: &&str| {
            l.contains("permission denied to create")
                || l.contains("must be superuser")
                || ((l.contains("event trigger \"") || l.contains("subscription \""))
                    && l.contains("does not exist"))
        };
        if errors.clone().all(|l| denied(&l)) {
            return Entry::NeedsSuperuser(object);
        }
        return Entry::Error;
    }
    let mut not_created = None;
    for line in errors {
        if line.contains("role \"") && line.contains("does not exist") {
            match role_bound_object(command) {
                Some(object) => not_created = Some(object),
                None => return Entry::Error,
            }
        } else if !is_harmless_line(line, command) {
            return Entry::Error;
        }
    }
    not_created.map_or(Entry::Harmless, Entry::NotCreated)
}

fn is_harmless_line(line: &str, command: &str) -> bool {
    (line.contains("extension \"") && line.contains("already exists"))
        || (line.contains("schema \"") && line.contains("already exists"))
        || line.contains("must be owner of extension")
        || line.contains("must be owner of schema")
        || (line.contains("unrecognized configuration parameter") && command.starts_with("SET "))
}

/// `EVENT TRIGGER t` or `SUBSCRIPTION s` for the statements that create one
/// (or comment on, alter it: those fail when it was not created): the objects
/// only a superuser may create. None for anything else.
fn superuser_only_object(command: &str) -> Option<String> {
    let words: Vec<&str> = command.split_whitespace().collect();
    let (kind, name) = match words.as_slice() {
        ["CREATE" | "ALTER", "EVENT", "TRIGGER", name, ..]
        | ["COMMENT", "ON", "EVENT", "TRIGGER", name, ..] => ("EVENT TRIGGER", *name),
        ["CREATE" | "ALTER", "SUBSCRIPTION", name, ..]
        | ["COMMENT", "ON", "SUBSCRIPTION", name, ..] => ("SUBSCRIPTION", *name),
        _ => return None,
    };
    Some(format!("{kind} {}", name.trim_end_matches(';')))
}

/// `POLICY p ON public.t` for a `CREATE POLICY`, `USER MAPPING FOR r SERVER s`
/// for a `CREATE USER MAPPING`: the statements that name a role and that
/// `--no-owner --no-privileges` cannot skip. None for anything else.
fn role_bound_object(command: &str) -> Option<String> {
    let words: Vec<&str> = command.split_whitespace().collect();
    match words.as_slice() {
        ["CREATE", "POLICY", name, "ON", table, ..] => Some(format!("POLICY {name} ON {table}")),
        ["CREATE", "USER", "MAPPING", "FOR", role, "SERVER", server, ..] => Some(format!(
            "USER MAPPING FOR {role} SERVER {}",
            server.trim_end_matches(';')
        )),
        _ => None,
    }
}

/// Distinct messages, each once, with how often it came (`... (x4)`).
pub fn distinct(messages: &[String]) -> Vec<String> {
    let mut seen: Vec<(String, usize)> = Vec::new();
    for message in messages {
        let line = one_line(message);
        match seen.iter_mut().find(|(m, _)| *m == line) {
            Some((_, n)) => *n += 1,
            None => seen.push((line, 1)),
        }
    }
    seen.into_iter()
        .map(|(m, n)| if n > 1 { format!("{m} (x{n})") } else { m })
        .collect()
}

/// pg_restore's stderr on one line, for a check's detail.
pub fn one_line(text: &str) -> String {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" | ")
}

/// The error for a restore that failed: the real errors, quoted.
pub fn failure(outcome: &PgRestoreVerdict) -> anyhow::Error {
    let shown: Vec<String> = outcome.errors.iter().take(5).map(|e| one_line(e)).collect();
    let more = outcome.errors.len().saturating_sub(shown.len());
    let mut text = format!(
        "pg_restore reported {} error(s): {}",
        outcome.errors.len(),
        shown.join(" || ")
    );
    if more > 0 {
        text.push_str(&format!(" (and {more} more)"));
    }
    anyhow!(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PG17_INTO_16: &str = "\
pg_restore: error: could not execute query: ERROR:  unrecognized configuration parameter \"transaction_timeout\"
Command was: SET transaction_timeout = 0;
pg_restore: while PROCESSING TOC:
pg_restore: from TOC entry 3456; 0 16500 POLICY public users tenant_isolation postgres
pg_restore: error: could not execute query: ERROR:  role \"app\" does not exist
Command was: CREATE POLICY tenant_isolation ON public.users TO app USING (true);
pg_restore: error: could not execute query: ERROR:  extension \"vector\" already exists
Command was: CREATE EXTENSION vector;
pg_restore: warning: errors ignored on restore: 3
";

    #[test]
    fn a_prefix_glued_without_its_space_still_starts_an_entry() {
        let stderr = "pg_restore: error: could not execute query: ERROR:  must be owner of extension vector\n\
Command was: COMMENT ON EXTENSION vector IS 'vector data type';\n\
pg_restore:pg_restore: error: could not execute query: ERROR:  unrecognized configuration parameter \"transaction_timeout\"\n\
Command was: SET transaction_timeout = 0;\n\
error: could not execute query: ERROR:  unrecognized configuration parameter \"transaction_timeout\"\n\
Command was: SET transaction_timeout = 0;\n\
pg_restore: warning: errors ignored on restore: 3\n";
        let outcome = judge(stderr, Some(1), None, false, 1);
        assert!(outcome.succeeded(), "{outcome:?}");
        assert_eq!(outcome.error_entries, 3, "{outcome:?}");
    }

    #[test]
    fn superuser_only_objects_are_named_not_failed_and_nothing_else_is() {
        let stderr = "pg_restore: error: could not execute query: ERROR:  permission denied to create event trigger \"audit_ddl\"\n\
HINT:  Must be superuser to create an event trigger.\n\
Command was: CREATE EVENT TRIGGER audit_ddl ON ddl_command_end\n   EXECUTE FUNCTION public.log_ddl();\n\
pg_restore: error: could not execute query: ERROR:  event trigger \"audit_ddl\" does not exist\n\
Command was: COMMENT ON EVENT TRIGGER audit_ddl IS 'x';\n\
pg_restore: error: could not execute query: ERROR:  permission denied to create subscription\n\
DETAIL:  Only roles with privileges of the \"pg_create_subscription\" role may create subscriptions.\n\
Command was: CREATE SUBSCRIPTION sub1 CONNECTION 'host=x' PUBLICATION p WITH (connect = false, slot_name = 'sub1');\n\
pg_restore: warning: errors ignored on restore: 3\n";
        let outcome = judge(stderr, Some(1), None, false, 1);
        assert!(outcome.succeeded(), "{outcome:?}");
        assert_eq!(
            outcome.needs_superuser,
            vec![
                "EVENT TRIGGER audit_ddl".to_owned(),
                "SUBSCRIPTION sub1".to_owned()
            ]
        );
        // An event trigger whose function is missing is a real error.
        let broken = "pg_restore: error: could not execute query: ERROR:  function public.nope() does not exist\n\
Command was: CREATE EVENT TRIGGER t ON ddl_command_end EXECUTE FUNCTION public.nope();\n\
pg_restore: warning: errors ignored on restore: 1\n";
        let outcome = judge(broken, Some(1), None, false, 1);
        assert_eq!(outcome.errors.len(), 1, "{outcome:?}");
        // Anything else a superuser alone may do stays an error (an untrusted language).
        let untrusted = "pg_restore: error: could not execute query: ERROR:  permission denied for language plpython3u\n\
Command was: CREATE FUNCTION public.f() RETURNS integer LANGUAGE plpython3u AS 'return 1';\n\
pg_restore: warning: errors ignored on restore: 1\n";
        assert_eq!(judge(untrusted, Some(1), None, false, 1).errors.len(), 1);
    }

    #[test]
    fn harmless_complaints_are_warnings() {
        let outcome = judge(PG17_INTO_16, Some(1), None, false, 1);
        assert!(outcome.succeeded(), "{outcome:?}");
        assert_eq!(outcome.warnings.len(), 3);
        assert!(outcome.warnings[1].contains("TOC entry 3456"));
        assert_eq!(
            outcome.not_created,
            vec!["POLICY tenant_isolation ON public.users".to_owned()],
            "a policy for a missing role is harmless for the data, and named"
        );
    }

    #[test]
    fn a_missing_role_is_an_error_where_no_owner_should_have_skipped_it() {
        let stderr =
            "pg_restore: error: could not execute query: ERROR:  role \"app\" does not exist\n\
                      Command was: ALTER TABLE public.users OWNER TO app;\n\
                      pg_restore: warning: errors ignored on restore: 1\n";
        let outcome = judge(stderr, Some(1), None, false, 1);
        assert_eq!(outcome.errors.len(), 1, "{outcome:?}");
        assert_eq!(
            role_bound_object("CREATE USER MAPPING FOR app SERVER files OPTIONS (user 'x');")
                .as_deref(),
            Some("USER MAPPING FOR app SERVER files")
        );
    }

    #[test]
    fn every_error_line_of_an_entry_is_classified() {
        // A harmless first line does not cover a real error later in the same entry.
        let stderr = "pg_restore: error: could not execute query: ERROR:  extension \"vector\" already exists\n\
                      could not execute query: ERROR:  relation \"users\" already exists\n\
                      Command was: CREATE EXTENSION vector;\n\
                      pg_restore: warning: errors ignored on restore: 1\n";
        let outcome = judge(stderr, Some(1), None, false, 1);
        assert_eq!(outcome.errors.len(), 1, "{outcome:?}");
    }

    #[test]
    fn the_exit_status_and_the_error_count_decide_too() {
        // Killed by a signal after only harmless output: a failure.
        let harmless =
            PG17_INTO_16.replace("pg_restore: warning: errors ignored on restore: 3\n", "");
        let outcome = judge(&harmless, None, Some(9), false, 1);
        assert!(
            !outcome.succeeded() && outcome.errors[0].contains("signal 9"),
            "{outcome:?}"
        );
        // Exit 1 without the closing count: output pgbak did not see.
        let outcome = judge(&harmless, Some(1), None, false, 1);
        assert!(
            outcome.errors[0].contains("errors ignored on restore"),
            "{outcome:?}"
        );
        // A count above the entries read: errors pgbak never saw.
        let more = PG17_INTO_16.replace("restore: 3", "restore: 4");
        let outcome = judge(&more, Some(1), None, false, 1);
        assert!(outcome.errors[0].contains("counted 4"), "{outcome:?}");
        // Below: parallel workers' session errors are not in pg_restore's count.
        let fewer = PG17_INTO_16.replace("restore: 3", "restore: 2");
        assert!(judge(&fewer, Some(1), None, false, 1).succeeded());
        // Output beyond the cap was not read.
        let outcome = judge(PG17_INTO_16, Some(1), None, true, 1);
        assert!(!outcome.succeeded());
        // Any other exit code.
        assert!(!judge("", Some(2), None, false, 1).succeeded());
        assert!(judge("", Some(0), None, false, 1).succeeded());
        assert!(judge(PG17_INTO_16, Some(0), None, false, 1).succeeded());
    }

    #[test]
    fn the_verdict_does_not_depend_on_jobs() {
        // pg_restore 16 with --jobs 4: one policy for a missing role, printed once,
        // counted twice (by its worker and by the leader).
        let stderr = "pg_restore: while PROCESSING TOC:\n\
                      pg_restore: from TOC entry 3456; 0 16500 POLICY public users tenant_isolation postgres\n\
                      pg_restore: error: could not execute query: ERROR:  role \"app\" does not exist\n\
                      Command was: CREATE POLICY tenant_isolation ON public.users TO app USING (true);\n\
                      pg_restore: warning: errors ignored on restore: 2\n";
        let parallel = judge(stderr, Some(1), None, false, 4);
        assert!(parallel.succeeded(), "{parallel:?}");
        let serial = judge(
            &stderr.replace("restore: 2", "restore: 1"),
            Some(1),
            None,
            false,
            1,
        );
        assert_eq!(parallel, serial);
        // One job never double counts: a count above the entries is output not read.
        assert!(!judge(stderr, Some(1), None, false, 1).succeeded());
        // Nor can a parallel count exceed what the entries read can explain.
        let more = stderr.replace("restore: 2", "restore: 3");
        assert!(!judge(&more, Some(1), None, false, 4).succeeded());
    }

    #[test]
    fn real_errors_fail_and_keep_their_detail() {
        let stderr = format!(
            "{PG17_INTO_16}pg_restore: error: could not execute query: ERROR:  relation \"users\" already exists\n\
             Command was: CREATE TABLE public.users (\n    id bigint NOT NULL\n);\n\n\n\
             pg_restore: error: could not execute query: ERROR:  insert or update on table \"conversations\" violates foreign key constraint \"c_fkey\"\n\
             DETAIL:  Key (user_id)=(10) is not present in table \"users\".\n"
        );
        let stderr = stderr.replace("restore: 3", "restore: 5");
        let outcome = judge(&stderr, Some(1), None, false, 1);
        assert_eq!(outcome.errors.len(), 2, "{outcome:?}");
        assert!(outcome.errors[0].contains("CREATE TABLE public.users"));
        assert!(outcome.errors[1].contains("DETAIL"));
        let err = failure(&outcome).to_string();
        assert!(err.contains("2 error(s)") && !err.contains('\n'), "{err}");
    }

    #[test]
    fn interleaved_worker_output_is_split_into_entries() {
        let stderr = "pg_restore: pg_restore: error: could not execute query: ERROR:  unrecognized configuration parameter \"transaction_timeout\"\n\
                      error: could not execute query: ERROR:  unrecognized configuration parameter \"transaction_timeout\"\n\
                      Command was: SET transaction_timeout = 0;\n";
        let outcome = classify(stderr, false);
        assert_eq!(outcome.errors.len(), 1, "{outcome:?}");
        assert_eq!(outcome.warnings.len(), 1, "{outcome:?}");
        let shown = distinct(&["a\nb".to_owned(), "a\nb".to_owned(), "c".to_owned()]);
        assert_eq!(shown, vec!["a | b (x2)".to_owned(), "c".to_owned()]);
    }

    /// Two workers' prefixes land on one line and their (atomic) messages on
    /// the next ones: each message is its own entry with its own command.
    #[test]
    fn prefixes_of_two_workers_on_one_line_still_give_two_entries() {
        let stderr = "pg_restore: pg_restore: error: error: could not execute query: ERROR:  role \"r1\" does not exist\n\
                      Command was: CREATE POLICY p1 ON public.t TO r1 USING (true);\n\
                      could not execute query: ERROR:  role \"r2\" does not exist\n\
                      Command was: CREATE POLICY p2 ON public.u TO r2 USING (true);\n\
                      pg_restore: warning: errors ignored on restore: 2\n";
        let outcome = judge(stderr, Some(1), None, false, 1);
        assert_eq!(outcome.error_entries, 2, "{outcome:?}");
        assert!(outcome.succeeded(), "{outcome:?}");
        assert_eq!(
            outcome.not_created,
            vec![
                "POLICY p1 ON public.t".to_owned(),
                "POLICY p2 ON public.u".to_owned()
            ]
        );
        // A real failure that lost its prefixes the same way is still a failure.
        let stderr = stderr.replace(
            "role \"r2\" does not exist\nCommand was: CREATE POLICY p2 ON public.u TO r2 USING (true);",
            "could not create unique index \"u_pkey\"\nCommand was: ALTER TABLE ONLY public.u ADD CONSTRAINT u_pkey PRIMARY KEY (id);",
        );
        let outcome = judge(&stderr, Some(1), None, false, 1);
        assert_eq!(outcome.error_entries, 2, "{outcome:?}");
        assert_eq!(outcome.errors.len(), 1, "{outcome:?}");
        assert!(outcome.errors[0].contains("u_pkey"), "{outcome:?}");
    }

    #[test]
    fn a_set_other_than_a_setting_is_not_harmless() {
        let e = "could not execute query: ERROR:  unrecognized configuration parameter \"x\"\nCommand was: SELECT set_config('x', '1', false);";
        assert_eq!(judge_entry(e), Entry::Error);
    }

    #[test]
    fn missing_pgvector_is_recognised() {
        let stderr = "pg_restore: from TOC entry 2; 3079 16385 EXTENSION vector (no owner)\n\
                      pg_restore: error: could not execute query: ERROR:  extension \"vector\" is not available\n\
                      DETAIL:  Could not open extension control file \"/usr/share/postgresql/17/extension/vector.control\": No such file or directory.\n";
        let outcome = classify(stderr, false);
        assert_eq!(outcome.missing_extension().as_deref(), Some("vector"));
        assert_eq!(
            missing_extension(
                "ERROR:  could not open extension control file \"/x/share/extension/vector.control\": No such file"
            )
            .as_deref(),
            Some("vector")
        );
    }
}
