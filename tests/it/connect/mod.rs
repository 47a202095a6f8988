//! How pgbak reaches the server: DATABASE_URL and the PG* variables, the Unix socket, wrong
//! passwords and a server that is down, role settings that would break a session, and TLS.

mod tls;
mod urls;
