//! Everything PostgreSQL: connection settings, pgbak's own connection and
//! catalog queries, TLS, and the client tools (pg_dump, pg_restore, ...).

pub mod client;
pub mod ephemeral;
pub mod restore;
pub mod selection;
pub mod tls;
pub mod tools;
pub mod url;
