//! Settings that send backups or secrets over the network in clear text: an
//! `http://` S3 endpoint (the dump, the keys' signatures, the object names)
//! or an `http://` webhook or heartbeat URL (its token, the alert) to another
//! host. Allowed (a MinIO on a private network, a local relay), but said once
//! per run, when the setting is resolved; loopback addresses are exempt.

use crate::ui;

/// Whether `url` is plain `http://` to a host that is not this one
/// (`localhost`, 127.0.0.0/8, `::1`). Anything unparsable is left to the
/// setting's own check. Pure.
pub fn cleartext_remote(url: &str) -> bool {
    let Ok(url) = url::Url::parse(url) else {
        return false;
    };
    if url.scheme() != "http" {
        return false;
    }
    match url.host() {
        Some(url::Host::Domain(name)) => !name.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => !ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => !ip.is_loopback(),
        None => false,
    }
}

/// One warning line when the setting `name`'s `url` is [`cleartext_remote`].
/// The URL itself is not printed: it may hold a token.
pub fn warn_if_cleartext(name: &str, url: &str, carries: &str) {
    if cleartext_remote(url) {
        ui::warn(&format!(
            "{name} is plain http:// to another host: {carries} cross the network unencrypted; \
             use https://"
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_http_to_another_host_is_cleartext() {
        for (url, want) in [
            ("http://minio.internal:9000", true),
            ("http://10.0.0.5/hook", true),
            ("http://[2001:db8::1]:9000", true),
            ("HTTP://Example.com/x", true),
            ("https://minio.internal:9000", false),
            ("http://localhost:9000", false),
            ("http://LOCALHOST/hook", false),
            ("http://127.0.0.1:9000", false),
            ("http://127.8.9.10/x", false),
            ("http://[::1]:9000", false),
            ("not a url", false),
        ] {
            assert_eq!(cleartext_remote(url), want, "{url}");
        }
    }
}
