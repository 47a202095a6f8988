//! The secrets of a run and the one way text is cleaned of them: a
//! [`Redactor`] is built once, at dispatch, from the settings
//! (`settings::secrets`), and never grows afterwards. The log lines use the
//! one installed with the ui; what builds text that leaves the machine
//! (alert and heartbeat bodies) is handed it explicitly.

/// Secrets shorter than this are replaced only where they stand as a whole
/// token: replacing every `ab` inside other words would mangle the text.
const SHORT_SECRET: usize = 4;

/// What a secret becomes in any text pgbak prints or sends.
pub const MASK: &str = "***";

/// An immutable set of values that must never be printed or sent
/// (passwords, keys, tokens, webhook URLs), whatever their length.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Redactor {
    /// Longest first, so a secret containing another is replaced whole.
    secrets: Vec<String>,
}

// Debug must not print what it hides.
impl std::fmt::Debug for Redactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Redactor({} secrets)", self.secrets.len())
    }
}

impl Redactor {
    /// A redactor that hides nothing (before the settings are read, and in tests).
    pub const fn none() -> Redactor {
        Redactor {
            secrets: Vec::new(),
        }
    }

    /// A redactor for `secrets` (empty values and repeats are dropped).
    pub fn new<S: Into<String>>(secrets: impl IntoIterator<Item = S>) -> Redactor {
        let mut secrets: Vec<String> = secrets
            .into_iter()
            .map(Into::into)
            .filter(|s| !s.is_empty())
            .collect();
        secrets.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
        secrets.dedup();
        Redactor { secrets }
    }

    /// Whether `secret` is one this redactor hides.
    pub fn hides(&self, secret: &str) -> bool {
        self.secrets.iter().any(|s| s == secret)
    }

    /// `text` with every secret replaced by `***`.
    pub fn scrub(&self, text: &str) -> String {
        let mut out = text.to_owned();
        for secret in &self.secrets {
            if !out.contains(secret.as_str()) {
                continue;
            }
            out = if secret.chars().count() >= SHORT_SECRET {
                out.replace(secret.as_str(), MASK)
            } else {
                replace_tokens(&out, secret)
            };
        }
        out
    }
}

/// Replaces `secret` where neither neighbour is alphanumeric.
fn replace_tokens(text: &str, secret: &str) -> String {
    let is_word = |c: Option<char>| c.is_some_and(char::is_alphanumeric);
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    let mut before: Option<char> = None;
    while let Some(at) = rest.find(secret) {
        let (head, tail) = rest.split_at(at);
        out.push_str(head);
        let prev = head.chars().last().or(before);
        let after = tail[secret.len()..].chars().next();
        if is_word(prev) || is_word(after) {
            out.push_str(secret);
        } else {
            out.push_str(MASK);
        }
        before = secret.chars().last();
        rest = &tail[secret.len()..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scrub_replaces_registered_secrets_longest_first() {
        let long = Redactor::new(["hunter2-long", "hunter2-long-er"]);
        assert_eq!(
            long.scrub("key=hunter2-long-er and hunter2-long"),
            "key=*** and ***"
        );
        let short = Redactor::new(["hunter2-long", "ab", "Zq", ""]);
        assert_eq!(short.scrub("ab"), "***");
        assert_eq!(
            short.scrub("postgresql://app:ab@db/x"),
            "postgresql://app:***@db/x"
        );
        assert_eq!(
            short.scrub("PGPASSWORD=ab, tab, abc, ab"),
            "PGPASSWORD=***, tab, abc, ***"
        );
        assert_eq!(
            short.scrub("password Zq in Zqylophone"),
            "password *** in Zqylophone"
        );
        assert!(!short.hides(""));
        assert_eq!(format!("{short:?}"), "Redactor(3 secrets)");
        assert_eq!(Redactor::none().scrub("hunter2-long"), "hunter2-long");
    }
}
