//! Everything PostgreSQL: connection settings, pgbak's own connection and
//! catalog queries, TLS, and the client tools (pg_dump, pg_restore, ...); a
//! database's own properties and the server's globals, which no dump carries.

pub mod cancel;
pub mod catalog;
pub mod client;
pub mod dbprops;
pub mod dump;
pub mod ephemeral;
pub mod globals;
pub mod journal;
pub mod meta_values;
pub mod probe;
pub mod relations;
pub mod replay;
pub mod restore;
pub mod selection;
pub mod snapshot;
pub mod table_toc;
pub mod tempdb;
pub mod tls;
pub mod tools;
pub mod url;
pub mod verify_role;
