//! Connection settings from `DATABASE_URL` in every form people paste, or from
//! the libpq `PG*` variables. Parsing is pure (the environment is passed in),
//! and the password only ever leaves as `PGPASSWORD` in a child's environment.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use anyhow::Result;
use percent_encoding::percent_decode_str;

use crate::error::usage;

/// Where the server listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Host {
    Tcp(String),
    /// A directory holding `.s.PGSQL.<port>`.
    Socket(PathBuf),
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Tcp(name) => f.write_str(name),
            Host::Socket(dir) => write!(f, "{}", dir.display()),
        }
    }
}

/// libpq's `sslmode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    Disable,
    Allow,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl SslMode {
    pub fn parse(text: &str) -> Result<SslMode> {
        Ok(match text {
            "disable" => SslMode::Disable,
            "allow" => SslMode::Allow,
            "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            other => {
                return Err(usage(format!(
                    "invalid sslmode {other:?}: expected disable, allow, prefer, require, verify-ca or verify-full"
                )))
            }
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Allow => "allow",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }
}

/// Stands in for an empty host while the url crate parses (never a real name: it has an underscore).
const EMPTY_HOST: &str = "pgbak_empty_host";

/// Query parameters passed on to the client tools as their libpq variables.
const PASSTHROUGH: &[(&str, &str)] = &[
    ("sslrootcert", "PGSSLROOTCERT"),
    ("sslcert", "PGSSLCERT"),
    ("sslkey", "PGSSLKEY"),
    ("sslcrl", "PGSSLCRL"),
    ("application_name", "PGAPPNAME"),
    ("connect_timeout", "PGCONNECT_TIMEOUT"),
    ("options", "PGOPTIONS"),
    ("target_session_attrs", "PGTARGETSESSIONATTRS"),
    ("gssencmode", "PGGSSENCMODE"),
    ("channel_binding", "PGCHANNELBINDING"),
];

/// Everything needed to connect, resolved once.
#[derive(Clone, PartialEq, Eq)]
pub struct ConnSettings {
    pub host: Host,
    pub port: u16,
    pub user: String,
    pub password: Option<String>,
    pub dbname: String,
    pub sslmode: SslMode,
    /// Other libpq parameters, keyed by their URL name (see `PASSTHROUGH`).
    pub params: BTreeMap<String, String>,
}

// Debug must never show the password.
impl fmt::Debug for ConnSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnSettings")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field("dbname", &self.dbname)
            .field("sslmode", &self.sslmode)
            .field("params", &self.params)
            .finish()
    }
}

/// Reads one environment variable: [`crate::settings::Env::lookup`] of this
/// run's environment, or a map in tests.
pub type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

impl ConnSettings {
    /// `DATABASE_URL` when set, else the `PG*` variables.
    pub fn resolve(env: Env) -> Result<ConnSettings> {
        match env("DATABASE_URL") {
            Some(url) => ConnSettings::from_url(&url, env),
            None => ConnSettings::from_pg_env(env),
        }
    }

    /// Parses a URL such as `postgresql+asyncpg://app:p%40ss@db:5432/app?sslmode=require`.
    /// Errors never repeat the URL, since it may hold a password.
    pub fn from_url(text: &str, env: Env) -> Result<ConnSettings> {
        let text = text.trim();
        let (scheme, _) = text.split_once("://").ok_or_else(|| {
            usage(
                "DATABASE_URL is not a URL: expected postgresql://user:password@host:port/database",
            )
        })?;
        let base = scheme.split('+').next().unwrap_or_default();
        if base != "postgresql" && base != "postgres" {
            return Err(usage(format!(
                "DATABASE_URL has the scheme {scheme:?}; pgbak speaks PostgreSQL only \
                 (postgresql://, postgres://, postgresql+asyncpg://, postgresql+psycopg://)"
            )));
        }
        // The url crate knows no driver suffixes; give it a plain scheme.
        let normalized = format!("postgresql{}", &text[scheme.len()..]);
        // `postgresql://user@/db?host=/socket`: libpq allows an empty host with a
        // user, the url crate does not; parse it with a placeholder host.
        let (url, empty_host) = match url::Url::parse(&normalized) {
            Err(url::ParseError::EmptyHost) => {
                let patched = normalized.replacen("@/", &format!("@{EMPTY_HOST}/"), 1);
                (url::Url::parse(&patched), true)
            }
            other => (other, false),
        };
        let url = url.map_err(|e| usage(format!("DATABASE_URL cannot be parsed: {e}")))?;

        let decode = |s: &str| percent_decode_str(s).decode_utf8_lossy().into_owned();
        let mut host = match url.host() {
            Some(url::Host::Domain(name)) if empty_host && name == EMPTY_HOST => None,
            Some(url::Host::Domain(name)) if !name.is_empty() => Some(decode(name)),
            Some(url::Host::Ipv4(ip)) => Some(ip.to_string()),
            Some(url::Host::Ipv6(ip)) => Some(ip.to_string()),
            _ => None,
        };
        let mut port = url.port().map(|p| p.to_string());
        let mut user = (!url.username().is_empty()).then(|| decode(url.username()));
        let mut password = url.password().map(decode);
        let path = url.path().trim_start_matches('/');
        let mut dbname = (!path.is_empty()).then(|| decode(path));
        let mut sslmode = None;
        let mut params = BTreeMap::new();

        for (key, value) in query_pairs(url.query().unwrap_or_default()) {
            match key.as_str() {
                "host" => host = Some(value),
                "port" => port = Some(value),
                "user" => user = Some(value),
                "password" => password = Some(value),
                "dbname" => dbname = Some(value),
                "sslmode" => sslmode = Some(SslMode::parse(&value)?),
                // asyncpg spells it `ssl=`.
                "ssl" => {
                    sslmode = Some(match value.as_str() {
                        "true" | "1" | "on" => SslMode::Require,
                        "false" | "0" | "off" => SslMode::Disable,
                        other => SslMode::parse(other)?,
                    })
                }
                other if PASSTHROUGH.iter().any(|(name, _)| *name == other) => {
                    params.insert(other.to_owned(), value);
                }
                other => crate::ui::debug(&format!(
                    "ignoring the DATABASE_URL parameter {other:?} (not a libpq setting)"
                )),
            }
        }
        // Like libpq, the environment fills what the URL leaves out.
        let password = password.or_else(|| env("PGPASSWORD"));
        let sslmode = match sslmode {
            Some(mode) => mode,
            None => env_sslmode(env)?,
        };
        ConnSettings::finish(host, port, user, password, dbname, sslmode, params, env)
    }

    /// The libpq variables, with libpq's defaults.
    pub fn from_pg_env(env: Env) -> Result<ConnSettings> {
        let mut params = BTreeMap::new();
        for (name, var) in PASSTHROUGH {
            if let Some(value) = env(var) {
                params.insert((*name).to_owned(), value);
            }
        }
        ConnSettings::finish(
            env("PGHOST"),
            env("PGPORT"),
            env("PGUSER"),
            env("PGPASSWORD"),
            env("PGDATABASE"),
            env_sslmode(env)?,
            params,
            env,
        )
    }

    #[allow(clippy::too_many_arguments)]
    fn finish(
        host: Option<String>,
        port: Option<String>,
        user: Option<String>,
        password: Option<String>,
        dbname: Option<String>,
        sslmode: SslMode,
        params: BTreeMap<String, String>,
        env: Env,
    ) -> Result<ConnSettings> {
        let port = match port {
            None => 5432,
            Some(text) => match text.parse::<u16>() {
                Ok(port) if port > 0 => port,
                _ => return Err(usage(format!("invalid port {text:?}: expected 1-65535"))),
            },
        };
        let host = match host {
            Some(h) if h.starts_with('/') => Host::Socket(PathBuf::from(h)),
            Some(h) => Host::Tcp(h),
            None => default_host(port),
        };
        let user = user
            .or_else(|| env("USER"))
            .or_else(|| env("LOGNAME"))
            .unwrap_or_else(|| "postgres".to_owned());
        let dbname = dbname.unwrap_or_else(|| user.clone());
        let mut settings = ConnSettings {
            host,
            port,
            user,
            password,
            dbname,
            sslmode,
            params,
        };
        if settings.password.is_none() {
            settings.password = pgpass_lookup(&settings, env);
        }
        Ok(settings)
    }

    /// The same server and credentials, another database.
    pub fn with_dbname(&self, dbname: &str) -> ConnSettings {
        ConnSettings {
            dbname: dbname.to_owned(),
            ..self.clone()
        }
    }

    /// `host:port` as people say it (a socket as `/dir:port`).
    pub fn endpoint(&self) -> String {
        match &self.host {
            Host::Tcp(name) if name.contains(':') => format!("[{name}]:{}", self.port),
            host => format!("{host}:{}", self.port),
        }
    }

    /// The libpq environment for pg_dump, pg_restore and psql. Callers remove
    /// any inherited `PG*` first, so these are the only ones the child sees.
    pub fn child_env(&self) -> Vec<(String, String)> {
        let mut vars = vec![
            ("PGHOST".to_owned(), self.host.to_string()),
            ("PGPORT".to_owned(), self.port.to_string()),
            ("PGUSER".to_owned(), self.user.clone()),
            ("PGDATABASE".to_owned(), self.dbname.clone()),
            ("PGSSLMODE".to_owned(), self.sslmode.as_str().to_owned()),
        ];
        if let Some(password) = &self.password {
            vars.push(("PGPASSWORD".to_owned(), password.clone()));
        }
        for (name, var) in PASSTHROUGH {
            if let Some(value) = self.params.get(*name) {
                vars.push(((*var).to_owned(), value.clone()));
            }
        }
        vars
    }
}

/// The query's `key=value` pairs, percent-decoded as libpq decodes them: a
/// `+` stays a `+` (form encoding's "+ is a space" is not URI syntax, and a
/// password or a path such as `sslrootcert=/etc/ssl/a+b.pem` may hold one).
pub fn query_pairs(query: &str) -> Vec<(String, String)> {
    let decode = |s: &str| percent_decode_str(s).decode_utf8_lossy().into_owned();
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| match pair.split_once('=') {
            Some((key, value)) => (decode(key), decode(value)),
            None => (decode(pair), String::new()),
        })
        .collect()
}

fn env_sslmode(env: Env) -> Result<SslMode> {
    match env("PGSSLMODE") {
        Some(mode) => SslMode::parse(&mode),
        None => Ok(SslMode::Prefer),
    }
}

/// libpq's compiled-in default differs by distribution: look for the socket.
fn default_host(port: u16) -> Host {
    for dir in ["/var/run/postgresql", "/run/postgresql", "/tmp"] {
        if Path::new(dir).join(format!(".s.PGSQL.{port}")).exists() {
            return Host::Socket(PathBuf::from(dir));
        }
    }
    Host::Tcp("localhost".to_owned())
}

/// The password from `PGPASSFILE` or `~/.pgpass`, as libpq would find it, so the
/// server connection pgbak opens itself works where the client tools do.
fn pgpass_lookup(settings: &ConnSettings, env: Env) -> Option<String> {
    let path = env("PGPASSFILE")
        .map(PathBuf::from)
        .or_else(|| env("HOME").map(|home| Path::new(&home).join(".pgpass")))?;
    let text = std::fs::read_to_string(path).ok()?;
    let host = match &settings.host {
        Host::Tcp(name) => name.clone(),
        Host::Socket(_) => "localhost".to_owned(),
    };
    pgpass_find(
        &text,
        &host,
        &settings.port.to_string(),
        &settings.dbname,
        &settings.user,
    )
}

/// Finds the first matching `host:port:db:user:password` line (`*` matches all,
/// `\:` and `\\` are escapes).
pub fn pgpass_find(text: &str, host: &str, port: &str, db: &str, user: &str) -> Option<String> {
    for line in text.lines() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let mut fields = Vec::new();
        let mut field = String::new();
        let mut chars = line.chars();
        while let Some(c) = chars.next() {
            match c {
                '\\' => field.extend(chars.next()),
                ':' if fields.len() < 4 => fields.push(std::mem::take(&mut field)),
                c => field.push(c),
            }
        }
        fields.push(field);
        if fields.len() != 5 {
            continue;
        }
        let wanted = [host, port, db, user];
        if fields[..4]
            .iter()
            .zip(wanted)
            .all(|(have, want)| have == "*" || have == want)
        {
            return Some(fields[4].clone());
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    fn parse(url: &str) -> Result<ConnSettings> {
        ConnSettings::from_url(url, &no_env)
    }

    #[test]
    fn sqlalchemy_asyncpg_url_with_encoded_password() {
        let s = parse("postgresql+asyncpg://app:p%40ss%3Aw%2Fd@db.internal:6543/enterprise_agents")
            .unwrap();
        assert_eq!(s.host, Host::Tcp("db.internal".into()));
        assert_eq!(s.port, 6543);
        assert_eq!(s.user, "app");
        assert_eq!(s.password.as_deref(), Some("p@ss:w/d"));
        assert_eq!(s.dbname, "enterprise_agents");
        assert_eq!(s.sslmode, SslMode::Prefer);
    }

    #[test]
    fn every_accepted_scheme() {
        for scheme in [
            "postgres",
            "postgresql",
            "postgresql+psycopg",
            "postgresql+psycopg2",
            "postgres+asyncpg",
        ] {
            let s = parse(&format!("{scheme}://u@h/d")).unwrap();
            assert_eq!((s.user.as_str(), s.dbname.as_str()), ("u", "d"));
        }
    }

    #[test]
    fn sslmode_and_libpq_params() {
        let s = parse("postgresql://u:pw@h/d?sslmode=verify-full&sslrootcert=/ca.pem&application_name=x&prepared_statement_cache_size=0").unwrap();
        assert_eq!(s.sslmode, SslMode::VerifyFull);
        assert_eq!(s.params.get("sslrootcert").unwrap(), "/ca.pem");
        let env = s.child_env();
        assert!(env.contains(&("PGSSLMODE".into(), "verify-full".into())));
        assert!(env.contains(&("PGSSLROOTCERT".into(), "/ca.pem".into())));
        assert!(env.contains(&("PGAPPNAME".into(), "x".into())));
        assert!(env.contains(&("PGPASSWORD".into(), "pw".into())));
    }

    #[test]
    fn asyncpg_ssl_parameter() {
        assert_eq!(
            parse("postgresql+asyncpg://u@h/d?ssl=require")
                .unwrap()
                .sslmode,
            SslMode::Require
        );
    }

    #[test]
    fn query_values_keep_plus_signs() {
        for (query, want) in [
            ("password=a+b", vec![("password", "a+b")]),
            ("password=a%2Bb", vec![("password", "a+b")]),
            ("password=a%20b", vec![("password", "a b")]),
            (
                "sslmode=require&sslrootcert=/etc/ssl/a+b.pem",
                vec![("sslmode", "require"), ("sslrootcert", "/etc/ssl/a+b.pem")],
            ),
            (
                "options=-c%20x=1&&flag",
                vec![("options", "-c x=1"), ("flag", "")],
            ),
            ("", vec![]),
        ] {
            let got = query_pairs(query);
            let got: Vec<(&str, &str)> =
                got.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            assert_eq!(got, want, "{query:?}");
        }
        let settings = parse("postgresql://app@db/app?password=p+w&application_name=a+b").unwrap();
        assert_eq!(settings.password.as_deref(), Some("p+w"));
        assert_eq!(
            settings.params.get("application_name").map(String::as_str),
            Some("a+b")
        );
    }

    #[test]
    fn socket_hosts() {
        let s = parse("postgresql:///appdb?host=/var/run/postgresql&user=app").unwrap();
        assert_eq!(s.host, Host::Socket("/var/run/postgresql".into()));
        assert_eq!(s.user, "app");
        assert_eq!(s.dbname, "appdb");
        let s = parse("postgresql://app@%2Ftmp%2Fsock:5433/appdb").unwrap();
        assert_eq!(s.host, Host::Socket("/tmp/sock".into()));
        assert_eq!(s.endpoint(), "/tmp/sock:5433");
    }

    #[test]
    fn user_with_an_empty_host_means_the_default_socket() {
        let s = parse("postgresql://postgres@/appdb?host=/tmp/sock").unwrap();
        assert_eq!(s.host, Host::Socket("/tmp/sock".into()));
        assert_eq!((s.user.as_str(), s.dbname.as_str()), ("postgres", "appdb"));
        let s = parse("postgresql://app:pw@/appdb").unwrap();
        assert_eq!(s.password.as_deref(), Some("pw"));
        assert!(!matches!(s.host, Host::Tcp(ref h) if h == EMPTY_HOST));
    }

    #[test]
    fn ipv6_host() {
        let s = parse("postgresql://u@[::1]:5433/d").unwrap();
        assert_eq!(s.host, Host::Tcp("::1".into()));
        assert_eq!(s.endpoint(), "[::1]:5433");
    }

    #[test]
    fn bad_urls_are_usage_errors_without_the_password() {
        for url in [
            "garbage",
            "mysql://u:topsecret@h/d",
            "postgresql://u:topsecret@h:99999/d",
            "postgresql://u:topsecret@h:abc/d",
            "postgresql://u:topsecret@h/d?sslmode=sometimes",
        ] {
            let err = parse(url).unwrap_err();
            assert_eq!(crate::error::exit_code(&err), crate::error::USAGE, "{url}");
            assert!(!format!("{err:#}").contains("topsecret"), "{url}: {err:#}");
        }
    }

    #[test]
    fn pg_env_fallback_and_password_from_env() {
        let env = |name: &str| -> Option<String> {
            match name {
                "PGHOST" => Some("db".into()),
                "PGPORT" => Some("5499".into()),
                "PGUSER" => Some("ops".into()),
                "PGPASSWORD" => Some("pw-from-env".into()),
                "PGSSLMODE" => Some("require".into()),
                _ => None,
            }
        };
        let s = ConnSettings::resolve(&env).unwrap();
        assert_eq!(s.endpoint(), "db:5499");
        assert_eq!(s.dbname, "ops");
        assert_eq!(s.sslmode, SslMode::Require);
        assert_eq!(s.password.as_deref(), Some("pw-from-env"));
        assert!(!format!("{s:?}").contains("pw-from-env"));
    }

    #[test]
    fn pgpass_matching() {
        let text = "# comment\nother:5432:*:*:nope\ndb:*:app:ops:pa\\:ss\n*:*:*:*:fallback\n";
        assert_eq!(
            pgpass_find(text, "db", "5432", "app", "ops").as_deref(),
            Some("pa:ss")
        );
        assert_eq!(
            pgpass_find(text, "x", "1", "y", "z").as_deref(),
            Some("fallback")
        );
        assert_eq!(pgpass_find("a:b:c", "a", "b", "c", "d"), None);
    }
}
