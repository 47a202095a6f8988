//! pgbak's own connection to the server (tokio-postgres), the catalog queries
//! every command needs, and connection errors an operator can act on.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use tokio_postgres::config::SslMode as PgSslMode;
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, Config};

pub use super::relations::{
    alembic_revision, count_rows, counts, relation_verdict, row_counts, Count,
};
use super::url::{ConnSettings, Host, SslMode};

/// Opens a connection; the connection task lives until the client is dropped.
pub async fn connect(settings: &ConnSettings) -> Result<Client> {
    let mut config = Config::new();
    match &settings.host {
        Host::Tcp(name) => config.host(name),
        Host::Socket(dir) => config.host_path(dir),
    };
    config
        .port(settings.port)
        .user(&settings.user)
        .dbname(&settings.dbname)
        .application_name("pgbak");
    if let Some(password) = &settings.password {
        config.password(password);
    }
    let timeout = settings
        .params
        .get("connect_timeout")
        .and_then(|t| t.parse::<u64>().ok())
        .filter(|t| *t > 0)
        .unwrap_or(15);
    config.connect_timeout(Duration::from_secs(timeout));
    // A half-open link (a firewall dropping state, a host gone) is noticed in
    // about two minutes instead of the kernel's two hours.
    config
        .keepalives(true)
        .keepalives_idle(KEEPALIVE_IDLE)
        .keepalives_interval(KEEPALIVE_INTERVAL)
        .keepalives_retries(KEEPALIVE_COUNT);
    config.ssl_mode(match settings.sslmode {
        SslMode::Disable => PgSslMode::Disable,
        SslMode::Allow | SslMode::Prefer => PgSslMode::Prefer,
        SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => PgSslMode::Require,
    });
    config.options(session_options(
        settings.params.get("options").map(String::as_str),
    ));

    // Like libpq, never TLS over a unix socket.
    let tls = match settings.host {
        Host::Socket(_) => None,
        Host::Tcp(_) => super::tls::client_config(settings)?,
    };
    if tls.is_none() {
        config.ssl_mode(PgSslMode::Disable);
    }
    let client = match tls {
        None => {
            let (client, connection) = config
                .connect(tokio_postgres::NoTls)
                .await
                .map_err(|e| connect_error(settings, e))?;
            tokio::spawn(connection);
            client
        }
        Some(tls) => {
            let tls = tokio_postgres_rustls::MakeRustlsConnect::new(tls);
            let (client, connection) = config
                .connect(tls)
                .await
                .map_err(|e| connect_error(settings, e))?;
            tokio::spawn(connection);
            client
        }
    };
    // transaction_timeout exists from PostgreSQL 17 on: set where it exists,
    // not even named elsewhere (the version gate is evaluated first). Not
    // through pg_settings, whose every row a cold session builds (a millisecond).
    client
        .batch_execute(
            "SELECT set_config('transaction_timeout', '0', false)
              WHERE current_setting('server_version_num')::int >= 170000",
        )
        .await
        .context("setting transaction_timeout for pgbak's session")?;
    Ok(client)
}

/// TCP keepalive timing of every connection pgbak and its children open.
pub const KEEPALIVE_IDLE: Duration = Duration::from_secs(60);
pub const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);
pub const KEEPALIVE_COUNT: u32 = 6;

/// The startup `options` of pgbak's own sessions: the operator's options
/// first, then the timeouts a backup needs, as pg_dump sets them for its own
/// sessions, then what keeps a database user's code out of them. Startup
/// options outrank `ALTER ROLE/DATABASE ... SET` (and come after the
/// operator's, so they win over them too), so an application role's
/// `statement_timeout` or `idle_in_transaction_session_timeout` cannot cancel
/// a row count or end the session that holds the exported snapshot while
/// pg_dump runs, and:
/// - `search_path=pg_catalog,pg_temp`: every unqualified name pgbak writes
///   (`count`, `=`, `pg_class`, ...) is the built-in one; a function,
///   operator or table a database user creates in `public` shadows nothing;
/// - `row_security=off`: a row-level security policy (user code) never runs
///   inside pgbak's row counts; a table it would filter fails the count
///   instead, as pg_dump fails on it.
pub fn session_options(user_options: Option<&str>) -> String {
    let [statement, lock, idle] = NO_TIMEOUTS;
    startup_options(
        user_options,
        &[
            statement,
            lock,
            idle,
            SAFE_SEARCH_PATH,
            "-c row_security=off",
        ],
    )
}

/// Startup `options`: the operator's own first, then `ours`, which so win.
pub fn startup_options(user_options: Option<&str>, ours: &[&str]) -> String {
    let mut options: Vec<&str> = user_options.into_iter().filter(|o| !o.is_empty()).collect();
    options.extend(ours);
    options.join(" ")
}

/// The startup options that turn a role's or database's timeouts off.
pub const NO_TIMEOUTS: [&str; 3] = [
    "-c statement_timeout=0",
    "-c lock_timeout=0",
    "-c idle_in_transaction_session_timeout=0",
];

/// The search_path of every pgbak session: built-in names first, temporary
/// relations only when named, and nothing a database user can create.
pub const SAFE_SEARCH_PATH: &str = "-c search_path=pg_catalog,pg_temp";

/// Bounds how long this session waits for any lock (pgbak's catalog reads
/// during a backup): `--lock-wait-timeout`.
pub async fn set_lock_timeout(client: &Client, timeout: Duration) -> Result<()> {
    client
        .batch_execute(&format!(
            "SET lock_timeout = {}",
            timeout.as_millis().max(1)
        ))
        .await
        .context("setting lock_timeout")
}

/// One line that says what failed and what to check, never the password.
fn connect_error(settings: &ConnSettings, err: tokio_postgres::Error) -> anyhow::Error {
    let at = format!(
        "PostgreSQL at {} (database {:?}, user {:?})",
        settings.endpoint(),
        settings.dbname,
        settings.user
    );
    if let Some(db) = err.as_db_error() {
        let code = db.code();
        let hint = if *code == SqlState::INVALID_PASSWORD
            || *code == SqlState::INVALID_AUTHORIZATION_SPECIFICATION
        {
            "authentication failed: check the user and password in DATABASE_URL or PGPASSWORD/~/.pgpass"
        } else if *code == SqlState::INVALID_CATALOG_NAME {
            "the database does not exist: check the database name in DATABASE_URL or PGDATABASE"
        } else if *code == SqlState::TOO_MANY_CONNECTIONS {
            "the server has no free connection slots"
        } else {
            "the server refused the connection"
        };
        return anyhow!("connecting to {at}: {hint} (server said: {})", db.message());
    }
    let detail = crate::error::one_line(&anyhow::Error::new(err));
    let hint = if detail.contains("password missing") {
        "the server asks for a password and none was given: set it in DATABASE_URL, PGPASSWORD or ~/.pgpass"
    } else if detail.contains("timed out") || detail.contains("timeout") {
        "timed out: check host, port and firewall"
    } else if detail.to_lowercase().contains("tls") || detail.contains("certificate") {
        "TLS failed: check sslmode, sslrootcert and the server's certificate"
    } else {
        "is the server running and accepting connections there? Check host, port, listen_addresses and pg_hba.conf"
    };
    anyhow!("cannot connect to {at}: {hint} ({detail})")
}

/// Quotes an SQL identifier (`odd "name"` -> `"odd ""name"""`).
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Quotes an SQL string literal the way PostgreSQL's `quote_literal` does:
/// quotes doubled, and an `E''` literal with doubled backslashes when there is one.
pub fn quote_literal(text: &str) -> String {
    let body = text.replace('\'', "''");
    if text.contains('\\') {
        format!("E'{}'", body.replace('\\', "\\\\"))
    } else {
        format!("'{body}'")
    }
}

/// `schema.table` with both parts quoted.
pub fn qualified(schema: &str, table: &str) -> String {
    format!("{}.{}", quote_ident(schema), quote_ident(table))
}

/// The server's version: the number (160014) and the text ("16.14").
#[derive(Debug, Clone)]
pub struct ServerVersion {
    pub num: u32,
    pub text: String,
}

impl ServerVersion {
    pub fn major(&self) -> u32 {
        self.num / 10_000
    }
}

/// The server's permanent identity: `pg_control_system().system_identifier`,
/// which every cluster gets at initdb and its physical standbys share. None
/// where this user may not call the function (it needs `pg_read_all_settings`
/// or a superuser on some managed services): the name then stands alone.
pub async fn system_identifier(client: &Client) -> Option<String> {
    match client
        .query_typed_one(
            "SELECT system_identifier::text FROM pg_catalog.pg_control_system()",
            &[],
        )
        .await
    {
        Ok(row) => row.try_get::<_, String>(0).ok(),
        Err(err) => {
            crate::ui::debug(&format!("reading the system identifier: {err}"));
            None
        }
    }
}

pub async fn server_version(client: &Client) -> Result<ServerVersion> {
    let row = client
        .query_typed_one(
            "SELECT current_setting('server_version_num')::int, current_setting('server_version')",
            &[],
        )
        .await
        .context("reading the server version")?;
    let num: i32 = row.get(0);
    let text: String = row.get(1);
    Ok(ServerVersion {
        num: u32::try_from(num).unwrap_or_default(),
        text: text
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .to_owned(),
    })
}

/// Installed extensions and their versions.
pub async fn extensions(client: &Client) -> Result<BTreeMap<String, String>> {
    let rows = client
        .query(
            "SELECT extname::text, extversion FROM pg_extension ORDER BY 1",
            &[],
        )
        .await
        .context("listing extensions")?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

/// User tables whose rows pg_dump writes: ordinary tables (partitions included,
/// partitioned parents excluded so no row is counted twice), not in system
/// schemas, not owned by an extension.
pub async fn user_tables(client: &Client) -> Result<Vec<(String, String)>> {
    let rows = client
        .query(
            "SELECT n.nspname::text, c.relname::text
               FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
              WHERE c.relkind = 'r'
                AND n.nspname NOT IN ('pg_catalog', 'information_schema')
                AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp\\_%'
                AND NOT EXISTS (SELECT 1 FROM pg_depend d
                                 WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid
                                   AND d.deptype = 'e')
              ORDER BY 1, 2",
            &[],
        )
        .await
        .context("listing tables")?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

/// Sessions holding an ACCESS EXCLUSIVE lock on a table of `conn`'s database,
/// as `schema.table (pid N, application A, since T)`, read on a fresh session.
pub async fn lock_holders(conn: &ConnSettings) -> Result<Vec<String>> {
    let client = connect(conn).await?;
    let rows = client
        .query(
            "SELECT format('%s (pid %s%s%s)', l.relation::regclass, l.pid,
                           coalesce(', application ' || nullif(a.application_name, ''), ''),
                           coalesce(', in a transaction since ' || date_trunc('second', a.xact_start)::text, ''))
               FROM pg_locks l LEFT JOIN pg_stat_activity a ON a.pid = l.pid
              WHERE l.locktype = 'relation' AND l.granted AND l.mode = 'AccessExclusiveLock'
                AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
                AND l.pid <> pg_backend_pid()
              ORDER BY l.pid, 1",
            &[],
        )
        .await
        .context("listing the sessions that hold table locks")?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// True on a hot standby (`pg_is_in_recovery()`).
pub async fn in_recovery(client: &Client) -> Result<bool> {
    Ok(client
        .query_typed_one("SELECT pg_is_in_recovery()", &[])
        .await
        .context("asking whether the server is a standby")?
        .get(0))
}

/// Unlogged user tables (pg_dump skips their rows on a standby, where they
/// cannot be read).
pub async fn unlogged_tables(client: &Client) -> Result<Vec<(String, String)>> {
    let rows = client
        .query(
            "SELECT n.nspname::text, c.relname::text
               FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
              WHERE c.relkind IN ('r', 'p') AND c.relpersistence = 'u'
                AND n.nspname NOT IN ('pg_catalog', 'information_schema')
              ORDER BY 1, 2",
            &[],
        )
        .await
        .context("listing unlogged tables")?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

/// The extensions of `wanted` that the server cannot install (not in
/// `pg_available_extensions`); None when it has them all.
pub async fn missing_extensions(
    client: &Client,
    wanted: &std::collections::BTreeSet<String>,
    server_major: u32,
) -> Result<Option<MissingExtensions>> {
    let rows = client
        .query("SELECT name::text FROM pg_available_extensions", &[])
        .await
        .context("listing the server's available extensions")?;
    let available: std::collections::BTreeSet<String> = rows.iter().map(|r| r.get(0)).collect();
    let names: Vec<String> = wanted.difference(&available).cloned().collect();
    Ok((!names.is_empty()).then_some(MissingExtensions {
        names,
        server_major,
    }))
}

/// Extensions a server lacks, and what to install there. Displayed as
/// "lacks the extension(s) …: install …"; each command adds where else the
/// backup could go (verify: another target, restore: another server).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MissingExtensions {
    pub names: Vec<String>,
    pub server_major: u32,
}

impl MissingExtensions {
    /// What to install (pgvector's package is named after it).
    pub fn install_hint(&self) -> String {
        let major = self.server_major;
        let packages: Vec<String> = self
            .names
            .iter()
            .map(|e| match e.as_str() {
                "vector" => format!("postgresql-{major}-pgvector"),
                other => format!("the package providing {other} for PostgreSQL {major}"),
            })
            .collect();
        format!(
            "install {} on that server (Debian/Ubuntu, PGDG repository)",
            packages.join(", ")
        )
    }
}

impl std::fmt::Display for MissingExtensions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "lacks the extension(s) {}: {}",
            self.names.join(", "),
            self.install_hint()
        )
    }
}

/// The current database's owner, locale, settings, ACL and comment.
pub async fn database_properties(
    client: &Client,
    server: &ServerVersion,
) -> Result<crate::meta::DatabaseProperties> {
    use crate::meta::{DatabaseGrant, DatabaseProperties, DatabaseSetting};
    let provider = if server.num >= 150_000 {
        "CASE d.datlocprovider WHEN 'i' THEN 'icu' WHEN 'b' THEN 'builtin' ELSE 'libc' END"
    } else {
        "'libc'"
    };
    let locale = match server.num {
        n if n >= 170_000 => "d.datlocale",
        n if n >= 150_000 => "d.daticulocale",
        _ => "NULL::text",
    };
    let row = client
        .query_one(
            &format!(
                "SELECT pg_get_userbyid(d.datdba)::text, pg_encoding_to_char(d.encoding)::text,
                        d.datcollate::text, d.datctype::text, {provider}, {locale}::text,
                        d.datacl IS NULL, shobj_description(d.oid, 'pg_database'),
                        d.datconnlimit, t.spcname::text
                   FROM pg_database d LEFT JOIN pg_tablespace t ON t.oid = d.dattablespace
                  WHERE d.datname = current_database()"
            ),
            &[],
        )
        .await
        .context("reading the database's properties")?;
    let acl_is_default: bool = row.get(6);
    let acl = if acl_is_default {
        None
    } else {
        let rows = client
            .query(
                "SELECT CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE pg_get_userbyid(a.grantee)::text END,
                        a.privilege_type, a.is_grantable
                   FROM pg_database d, aclexplode(d.datacl) a
                  WHERE d.datname = current_database() ORDER BY 1, 2",
                &[],
            )
            .await
            .context("reading the database's privileges")?;
        Some(
            rows.iter()
                .map(|r| DatabaseGrant {
                    grantee: r.get(0),
                    privilege: r.get(1),
                    grantable: r.get(2),
                })
                .collect(),
        )
    };
    let rows = client
        .query(
            "SELECT CASE WHEN s.setrole = 0 THEN NULL ELSE pg_get_userbyid(s.setrole)::text END, c.setting
               FROM pg_db_role_setting s JOIN pg_database d ON d.oid = s.setdatabase,
                    unnest(s.setconfig) WITH ORDINALITY AS c(setting, n)
              WHERE d.datname = current_database() ORDER BY 1 NULLS FIRST, c.n",
            &[],
        )
        .await
        .context("reading the database's settings")?;
    let settings = rows
        .iter()
        .filter_map(|r| {
            let setting: String = r.get(1);
            let (name, value) = setting.split_once('=')?;
            Some(DatabaseSetting {
                role: r.get(0),
                name: name.to_owned(),
                value: value.to_owned(),
            })
        })
        .collect();
    Ok(DatabaseProperties {
        owner: row.get(0),
        encoding: row.get(1),
        collate: row.get(2),
        ctype: row.get(3),
        locale_provider: row.get(4),
        locale: row.get(5),
        settings,
        acl,
        comment: row.get(7),
        connection_limit: Some(row.get(8)),
        tablespace: row.get(9),
    })
}

/// Roles the current database's objects depend on: owners, grantees, policy
/// roles (pg_shdepend), the database's owner, and the bootstrap superuser
/// when it owns user objects (pinned roles are not in pg_shdepend).
pub async fn dependent_roles(client: &Client) -> Result<Vec<String>> {
    let rows = client
        .query(
            "SELECT DISTINCT pg_get_userbyid(s.refobjid)::text
               FROM pg_shdepend s JOIN pg_database d ON d.oid = s.dbid
              WHERE d.datname = current_database() AND s.refclassid = 'pg_authid'::regclass
             UNION
             SELECT pg_get_userbyid(datdba)::text FROM pg_database WHERE datname = current_database()
             UNION
             SELECT pg_get_userbyid(10)::text
              WHERE EXISTS (SELECT 1 FROM pg_namespace n
                             WHERE n.nspowner = 10 AND n.nspname NOT LIKE 'pg\\_%'
                               AND n.nspname <> 'information_schema')
                 OR EXISTS (SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                             WHERE c.relowner = 10 AND n.nspname NOT LIKE 'pg\\_%'
                               AND n.nspname <> 'information_schema')
             ORDER BY 1",
            &[],
        )
        .await
        .context("listing the roles the database depends on")?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// Every role name on the server.
pub async fn role_names(client: &Client) -> Result<std::collections::BTreeSet<String>> {
    let rows = client
        .query("SELECT rolname::text FROM pg_roles", &[])
        .await
        .context("listing the server's roles")?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_options_override_role_defaults_after_the_operators_own() {
        let pinned =
            "-c statement_timeout=0 -c lock_timeout=0 -c idle_in_transaction_session_timeout=0 \
                      -c search_path=pg_catalog,pg_temp -c row_security=off";
        for (given, want) in [
            (None, pinned.to_owned()),
            (
                Some("-c search_path=app"),
                format!("-c search_path=app {pinned}"),
            ),
            (Some(""), pinned.to_owned()),
        ] {
            assert_eq!(session_options(given), want, "{given:?}");
        }
    }

    #[test]
    fn pgvector_hint_names_the_package_for_the_server() {
        let missing = MissingExtensions {
            names: vec!["vector".to_owned(), "postgis".to_owned()],
            server_major: 16,
        };
        assert_eq!(
            missing.to_string(),
            "lacks the extension(s) vector, postgis: install postgresql-16-pgvector, the \
             package providing postgis for PostgreSQL 16 on that server (Debian/Ubuntu, PGDG \
             repository)"
        );
    }

    #[test]
    fn literals_are_quoted() {
        assert_eq!(quote_literal("it's"), "'it''s'");
        assert_eq!(quote_literal(r"a\b'c"), r"E'a\\b''c'");
    }

    #[test]
    fn identifiers_are_quoted() {
        assert_eq!(quote_ident("odd db \"name\""), "\"odd db \"\"name\"\"\"");
        assert_eq!(qualified("public", "a;b"), "\"public\".\"a;b\"");
    }
}
