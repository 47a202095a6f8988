//! What `pgbak --version` says beyond the crate version, as pure functions:
//! build.rs runs them, and the unit tests in src/version.rs include this file
//! (a build script has no test harness of its own).

/// The commit recorded by `cargo package` in `.cargo_vcs_info.json`
/// (`{"git": {"sha1": "..."}}`), for a build from a source tarball without git.
pub fn vcs_info_commit(json: &str) -> Option<String> {
    let rest = &json[json.find("\"sha1\"")? + "\"sha1\"".len()..];
    let rest = rest
        .trim_start()
        .strip_prefix(':')?
        .trim_start()
        .strip_prefix('"')?;
    let sha = &rest[..rest.find('"')?];
    is_commit(sha).then(|| sha.to_owned())
}

/// A full or abbreviated hexadecimal git object id.
pub fn is_commit(text: &str) -> bool {
    (7..=64).contains(&text.len()) && text.bytes().all(|b| b.is_ascii_hexdigit())
}

/// `YYYY-MM-DD` (UTC) of a Unix time, without a date library in the build.
pub fn utc_date(epoch_seconds: u64) -> String {
    // Howard Hinnant's days-to-civil algorithm.
    let days = (epoch_seconds / 86_400) as i64 + 719_468;
    let era = days.div_euclid(146_097);
    let doe = days.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}

/// The version line: `0.1.0 (commit 1a2b3c4d5e6f, built 2026-12-07)`, or
/// without the commit when the source had none.
pub fn version_line(package: &str, commit: Option<&str>, date: &str) -> String {
    match commit {
        Some(commit) => format!("{package} (commit {}, built {date})", short(commit)),
        None => format!("{package} (built {date})"),
    }
}

/// The first 12 hex digits, as `git log --abbrev=12` shows them.
pub fn short(commit: &str) -> &str {
    &commit[..commit.len().min(12)]
}
