//! What this build is, for `pgbak --version` and the man pages: the crate
//! version, the git commit and the build date that build.rs recorded, and
//! the meta.json formats this version writes and reads. An operator holding a
//! year-old backup (meta.json's `pgbak_version`) can tell which build made it.

/// The crate version (`0.1.0`): what meta.json's `pgbak_version` records.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
/// `0.1.0 (commit 1a2b3c4d5e6f, built 2026-12-07)`: `pgbak -V`.
pub const LINE: &str = env!("PGBAK_VERSION_LINE");
/// The full git commit; empty when the source had none.
pub const COMMIT: &str = env!("PGBAK_COMMIT");
/// `YYYY-MM-DD` (UTC): SOURCE_DATE_EPOCH's date when the build set it.
pub const BUILD_DATE: &str = env!("PGBAK_BUILD_DATE");
/// The target triple the binary was built for.
pub const TARGET: &str = env!("PGBAK_TARGET");

/// `pgbak --version`: the line, then the full commit, the target and the
/// meta.json formats.
pub fn long() -> String {
    use crate::meta::{FORMAT_VERSION, OLDEST_READABLE_FORMAT};
    let commit = if COMMIT.is_empty() { "unknown" } else { COMMIT };
    let reads = if OLDEST_READABLE_FORMAT == FORMAT_VERSION {
        format!("{FORMAT_VERSION}")
    } else {
        format!("{OLDEST_READABLE_FORMAT} to {FORMAT_VERSION}")
    };
    format!(
        "{LINE}\ncommit: {commit}\ntarget: {TARGET}\nmeta.json format: writes {FORMAT_VERSION}, reads {reads}"
    )
}

/// build.rs's pure functions, tested here (a build script has no tests of its own).
#[cfg(test)]
#[path = "../build/version.rs"]
mod build_script;

#[cfg(test)]
mod tests {
    use super::build_script as build;

    #[test]
    fn dates_from_unix_time() {
        for (epoch, date) in [
            (0, "1970-01-01"),
            (951_782_400, "2000-02-29"),
            (1_764_547_199, "2025-11-30"),
            (1_796_601_600, "2026-12-07"),
            (4_107_542_400, "2100-03-01"),
        ] {
            assert_eq!(build::utc_date(epoch), date, "{epoch}");
        }
    }

    #[test]
    fn the_commit_from_cargo_package_vcs_info() {
        let sha = "b6f0510c1a2b3c4d5e6f708192a3b4c5d6e7f809";
        let json = format!(
            "{{\n  \"git\": {{\n    \"sha1\": \"{sha}\"\n  }},\n  \"path_in_vcs\": \"\"\n}}"
        );
        assert_eq!(build::vcs_info_commit(&json).as_deref(), Some(sha));
        for bad in [
            "{}",
            r#"{"git":{"sha1":"not hex"}}"#,
            r#"{"git":{"sha1": 5}}"#,
            "",
        ] {
            assert_eq!(build::vcs_info_commit(bad), None, "{bad}");
        }
    }

    #[test]
    fn the_version_line_with_and_without_a_commit() {
        let sha = "b6f0510c1a2b3c4d5e6f708192a3b4c5d6e7f809";
        assert_eq!(
            build::version_line("0.1.0", Some(sha), "2026-12-07"),
            "0.1.0 (commit b6f0510c1a2b, built 2026-12-07)"
        );
        assert_eq!(
            build::version_line("0.1.0", None, "2026-12-07"),
            "0.1.0 (built 2026-12-07)"
        );
        assert!(super::LINE.starts_with(super::VERSION));
        assert!(super::long().contains("meta.json format: writes 1, reads 1"));
    }
}
