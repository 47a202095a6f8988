//! Heartbeats: the dead man's switch a run pings, so a run that never happens
//! (or never ends) is noticed by someone else.
//!
//! Two conventions. `plain`: one GET of `HEARTBEAT_URL` after a fully
//! successful run (Uptime Kuma push, Cronitor, Better Stack, any "URL must be
//! hit every N hours" monitor). `healthchecks` (healthchecks.io and its
//! self-hosted servers): `<url>/start` when the run begins (so a run that hangs
//! is noticed and durations are measured), `<url>` on success with the run's
//! summary as the body, `<url>/fail` with the error as the body (an immediate
//! alert instead of waiting out the grace time). `auto` picks `healthchecks`
//! for `hc-ping.com` URLs and `plain` for anything else.
//!
//! A heartbeat never changes a run's outcome: failures are logged. Its URL
//! is a secret (the only credential a ping needs), hidden by the run's
//! redactor (`settings::secrets`), which also scrubs every body sent.

use anyhow::Result;

use crate::settings::choices::HeartbeatKind;
use crate::ui::{self, Redactor};
use crate::{alert, error};

/// Bodies are cut to this (healthchecks.io keeps the first 100 kB of a ping body).
const MAX_BODY: usize = 10_000;

/// The convention a heartbeat URL speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Plain,
    Healthchecks,
}

/// What a ping says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ping {
    Start,
    Success,
    Fail,
}

impl Kind {
    /// `setting` is `HEARTBEAT_KIND`; `auto` looks at the host.
    pub fn resolve(url: &str, setting: HeartbeatKind) -> Kind {
        match setting {
            HeartbeatKind::Plain => Kind::Plain,
            HeartbeatKind::Healthchecks => Kind::Healthchecks,
            HeartbeatKind::Auto => {
                match url::Url::parse(url)
                    .ok()
                    .and_then(|u| u.host_str().map(str::to_owned))
                {
                    Some(host) if host == "hc-ping.com" || host.ends_with(".hc-ping.com") => {
                        Kind::Healthchecks
                    }
                    _ => Kind::Plain,
                }
            }
        }
    }
}

/// The URL a ping goes to, and whether it carries a body (POST) or not
/// (GET); None when the convention sends nothing for it. Query strings stay
/// at the end (`.../uuid/fail?rid=...`).
pub fn ping_url(base: &str, kind: Kind, ping: Ping) -> Option<(String, bool)> {
    let suffix = match (kind, ping) {
        (Kind::Plain, Ping::Success) => return Some((base.to_owned(), false)),
        (Kind::Plain, _) => return None,
        (Kind::Healthchecks, Ping::Success) => return Some((base.to_owned(), true)),
        (Kind::Healthchecks, Ping::Start) => "start",
        (Kind::Healthchecks, Ping::Fail) => "fail",
    };
    let mut url = url::Url::parse(base).ok()?;
    url.path_segments_mut().ok()?.pop_if_empty().push(suffix);
    Some((url.to_string(), ping != Ping::Start))
}

/// A configured heartbeat.
#[derive(Debug, Clone)]
pub struct Heartbeat {
    url: String,
    kind: Kind,
}

impl Heartbeat {
    /// Checks the URL (http or https, never printed) and the kind.
    pub fn new(url: &str, kind: HeartbeatKind) -> Result<Heartbeat> {
        alert::check_url(url)?;
        Ok(Heartbeat {
            url: url.to_owned(),
            kind: Kind::resolve(url, kind),
        })
    }

    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// Sends one ping (bounded retries, as alerts), its body scrubbed by
    /// `redactor`; logs the outcome, never fails.
    pub async fn send(&self, ping: Ping, body: &str, redactor: &Redactor) {
        let Some((url, with_body)) = ping_url(&self.url, self.kind, ping) else {
            return;
        };
        let what = match ping {
            Ping::Start => "start",
            Ping::Success => "success",
            Ping::Fail => "failure",
        };
        let result = async {
            let client = alert::client()?;
            if with_body {
                let body = ping_body(body, redactor);
                alert::post_text(&client, &url, body).await
            } else {
                alert::get(&client, &url).await
            }
        }
        .await;
        match result {
            Ok(attempts) => ui::info(&format!("heartbeat sent: {what} ({attempts} attempt(s))")),
            Err(err) => ui::warn(&format!(
                "the {what} heartbeat failed: {}",
                error::one_line(&err)
            )),
        }
    }
}

/// What a ping with a body sends: `text` scrubbed, then cut to [`MAX_BODY`]
/// characters (cut after scrubbing, so no secret is left half-shown).
fn ping_body(text: &str, redactor: &Redactor) -> String {
    redactor.scrub(text).chars().take(MAX_BODY).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ping_bodies_are_scrubbed_then_cut() {
        let redactor = Redactor::new(["postgresql://u:pw-secret@h/d", "pw-secret"]);
        let body = ping_body(
            "failed: postgresql://u:pw-secret@h/d refused pw-secret",
            &redactor,
        );
        assert_eq!(body, "failed: *** refused ***");
        let long = format!("pw-secret{}", "x".repeat(MAX_BODY));
        let body = ping_body(&long, &redactor);
        assert_eq!(body.chars().count(), MAX_BODY);
        assert!(body.starts_with("***x"), "{}", &body[..20]);
        let cut = format!("{}pw-secret", "x".repeat(MAX_BODY - 4));
        let body = ping_body(&cut, &redactor);
        assert!(
            !body.contains("pw-s"),
            "a secret cut in half shows its start"
        );
    }

    #[test]
    fn kinds_resolve() {
        use HeartbeatKind::*;
        let cases = [
            ("https://hc-ping.com/u-u-i-d", Auto, Kind::Healthchecks),
            ("https://hc-ping.com/u-u-i-d", Plain, Kind::Plain),
            (
                "https://kuma.example/api/push/x?status=up",
                Auto,
                Kind::Plain,
            ),
            (
                "https://hc.example/ping/x",
                Healthchecks,
                Kind::Healthchecks,
            ),
            ("https://hc.example/ping/x", Auto, Kind::Plain),
        ];
        for (url, setting, want) in cases {
            assert_eq!(Kind::resolve(url, setting), want, "{url} {setting:?}");
        }
    }

    #[test]
    fn healthchecks_urls_get_their_suffix_before_the_query() {
        let base = "https://hc-ping.com/u-u-i-d";
        let hc = Kind::Healthchecks;
        let cases = [
            (
                base,
                hc,
                Ping::Start,
                Some(("https://hc-ping.com/u-u-i-d/start", false)),
            ),
            (base, hc, Ping::Success, Some((base, true))),
            (
                base,
                hc,
                Ping::Fail,
                Some(("https://hc-ping.com/u-u-i-d/fail", true)),
            ),
            (
                "https://hc.example/ping/key/slug/?create=1",
                hc,
                Ping::Fail,
                Some(("https://hc.example/ping/key/slug/fail?create=1", true)),
            ),
            (base, Kind::Plain, Ping::Start, None),
            (base, Kind::Plain, Ping::Success, Some((base, false))),
            (base, Kind::Plain, Ping::Fail, None),
        ];
        for (base, kind, ping, want) in cases {
            let got = ping_url(base, kind, ping);
            assert_eq!(
                got.as_ref().map(|(u, b)| (u.as_str(), *b)),
                want,
                "{base} {kind:?} {ping:?}"
            );
        }
    }
}
