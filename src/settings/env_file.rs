//! The environment file of `pgbak cron --env-file` (systemd `EnvironmentFile=`
//! syntax), parsed as a pure function; [`super::env`] loads it.

/// Parses a systemd `EnvironmentFile=`: `KEY=value` lines; `#` and `;`
/// comments; values taken literally (`&`, `$`, `;` are not special) unless
/// wholly quoted in '...' or "..." (where `\"`, `\\` are escapes); a trailing
/// backslash continues the line. Returns the pairs, and the line numbers
/// that are not assignments (never their text: it may hold a password).
pub fn parse_env_file(text: &str) -> (Vec<(String, String)>, Vec<usize>) {
    let mut pairs = Vec::new();
    let mut bad = Vec::new();
    let mut lines = text.lines().enumerate();
    while let Some((index, line)) = lines.next() {
        let mut line = line.to_owned();
        while line.ends_with('\\') && !line.ends_with("\\\\") {
            line.pop();
            match lines.next() {
                Some((_, next)) => line.push_str(next),
                None => break,
            }
        }
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') || trimmed.starts_with(';') {
            continue;
        }
        let Some((key, value)) = trimmed.split_once('=') else {
            bad.push(index + 1);
            continue;
        };
        let key = key.trim();
        let valid_key = key
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid_key {
            bad.push(index + 1);
            continue;
        }
        pairs.push((key.to_owned(), unquote(value.trim())));
    }
    (pairs, bad)
}

fn unquote(value: &str) -> String {
    let quoted = |q: char| value.len() >= 2 && value.starts_with(q) && value.ends_with(q);
    if quoted('\'') {
        return value[1..value.len() - 1].to_owned();
    }
    if quoted('"') {
        let mut out = String::new();
        let mut chars = value[1..value.len() - 1].chars();
        while let Some(c) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    Some(e @ ('"' | '\\' | '$' | '`')) => out.push(e),
                    Some(other) => {
                        out.push('\\');
                        out.push(other);
                    }
                    None => out.push('\\'),
                },
                other => out.push(other),
            }
        }
        return out;
    }
    value.to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_file_is_systemd_syntax_not_shell() {
        let text = "# comment\n; also a comment\n\nDATABASE_URL=postgresql://app:p&ss$word@db:5432/app?sslmode=require&application_name=x\n\
                    BACKUP_KEEP = 14\nQUOTED=\"a \\\"b\\\" c\"\nSINGLE='x y $z'\nEMPTY=\n\
                    LONG=one \\\ntwo\nexport BAD=1\nnot an assignment\n";
        let (pairs, bad) = parse_env_file(text);
        let get = |k: &str| {
            pairs
                .iter()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(
            get("DATABASE_URL"),
            Some("postgresql://app:p&ss$word@db:5432/app?sslmode=require&application_name=x")
        );
        assert_eq!(get("BACKUP_KEEP"), Some("14"));
        assert_eq!(get("QUOTED"), Some("a \"b\" c"));
        assert_eq!(get("SINGLE"), Some("x y $z"));
        assert_eq!(get("EMPTY"), Some(""));
        assert_eq!(get("LONG"), Some("one two"));
        assert_eq!(bad, vec![11, 12]);
    }
}
