//! The operator's typed confirmation, the last step before a restore changes
//! anything (one database, or with `--all-databases` a whole server): what is
//! about to happen, then a name typed back (the database's, or the host's).
//! One prompt for both, so both behave alike: reading the answer races the
//! stop signals (SIGINT at the prompt, a `kill`, `--timeout`), which end the
//! run with exit 130/143 (or 1) and nothing changed; a wrong name is exit 2.

use anyhow::{Context, Result};

use crate::error::usage;
use crate::signals::Signals;

/// Prints `about` (the plan, ending in a newline), asks for `name` (the
/// `what`: "database name", "host name") and reads the answer from stdin.
/// Ok only when the answer is exactly `name`.
pub(super) async fn typed(
    about: &str,
    what: &str,
    name: &str,
    signals: &mut Signals,
) -> Result<()> {
    eprint!("{about}Type the {what} ({name}) to continue: ");
    let answer = signals
        .guard(async {
            tokio::task::spawn_blocking(|| {
                let mut line = String::new();
                std::io::stdin().read_line(&mut line).map(|_| line)
            })
            .await
            .context("reading the confirmation stopped unexpectedly")?
            .context("reading the confirmation")
        })
        .await?;
    if !matches_name(&answer, name) {
        return Err(usage(format!(
            "the name typed does not match the {what}: nothing was restored"
        )));
    }
    Ok(())
}

/// The answer is the name, as typed: its line ending aside, nothing else.
fn matches_name(answer: &str, name: &str) -> bool {
    answer.trim_end_matches(['\n', '\r']) == name
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_exact_name_confirms() {
        for (answer, ok) in [
            ("app\n", true),
            ("app\r\n", true),
            ("app", true),
            (" app\n", false),
            ("App\n", false),
            ("\n", false),
            ("", false),
            ("app2\n", false),
        ] {
            assert_eq!(matches_name(answer, "app"), ok, "{answer:?}");
        }
    }
}
