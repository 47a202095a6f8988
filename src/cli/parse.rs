//! The value parsers of durations given on the command line or in the environment.

use std::time::Duration;

/// `90s`, `10m`, `1h30m`, `2h` (humantime), or plain seconds; never zero.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let parsed = match text.parse::<u64>() {
        Ok(secs) => Ok(Duration::from_secs(secs)),
        Err(_) => humantime::parse_duration(text).map_err(|e| e.to_string()),
    };
    match parsed {
        Ok(d) if d.is_zero() => Err("must be more than zero".to_owned()),
        Ok(d) => Ok(d),
        Err(e) => Err(format!("{e} (expected e.g. 90s, 10m, 2h)")),
    }
}

/// A `check` limit: `26h`, `8d`, `90m`, `1w` (humantime's syntax), or `0` for "off".
pub fn parse_limit(text: &str) -> Result<std::time::Duration, String> {
    if text.trim() == "0" {
        return Ok(std::time::Duration::ZERO);
    }
    humantime::parse_duration(text.trim()).map_err(|e| format!("{e} (examples: 26h, 90m, 8d, 1w)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        for (text, want) in [
            ("90", Some(90)),
            ("90s", Some(90)),
            ("10m", Some(600)),
            ("1h30m", Some(5400)),
            ("2h", Some(7200)),
            ("0", None),
            ("0s", None),
            ("ten minutes", None),
            ("", None),
        ] {
            assert_eq!(
                parse_duration(text).ok().map(|d| d.as_secs()),
                want,
                "{text:?}"
            );
        }
    }

    #[test]
    fn check_limits_parse() {
        let cases = [
            ("26h", Some(26 * 3600)),
            ("8d", Some(8 * 86_400)),
            ("90m", Some(5400)),
            ("1w", Some(7 * 86_400)),
            ("1h 30m", Some(5400)),
            ("0", Some(0)),
            ("", None),
            ("26", None),
            ("-1h", None),
            ("soon", None),
        ];
        for (text, want) in cases {
            assert_eq!(
                parse_limit(text).ok().map(|d| d.as_secs()),
                want,
                "{text:?}"
            );
        }
    }
}
