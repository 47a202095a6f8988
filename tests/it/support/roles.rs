//! Roles a test creates on the shared cluster (a login superuser with a password of its own) and
//! drops again.

use std::io::BufRead;

use super::{Pg, PASSWORD};
use crate::support::cluster::quote_ident;

/// Whether the role `role` exists on `pg`.
pub(crate) fn has_role(pg: &Pg, role: &str) -> bool {
    let sql = format!("SELECT count(*) FROM pg_roles WHERE rolname = '{role}'");
    pg.psql("postgres", &sql) == "1"
}

/// A superuser that logs in with `password`, named after `db` (dropped with [`drop_role`]).
pub(crate) fn login_superuser(pg: &Pg, prefix: &str, db: &str, password: &str) -> String {
    let role = format!("{prefix}_{db}");
    pg.psql(
        "postgres",
        &format!(
            "CREATE ROLE {} LOGIN SUPERUSER PASSWORD '{password}'",
            quote_ident(&role)
        ),
    );
    role
}

pub(crate) fn drop_role(pg: &Pg, role: &str) {
    pg.psql("postgres", &format!("DROP ROLE {}", quote_ident(role)));
}
