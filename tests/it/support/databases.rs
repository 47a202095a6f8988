//! A fresh database ready for a test in one step: the fixture loaded at a scale, or the
//! tables a few statements create. Most tests start from one of the two.

use super::{Pg, TestDb};

impl Pg {
    /// A fresh database (as [`Pg::fresh_db`]) with the fixture loaded at `scale`.
    pub fn fixture_db(&self, hint: &str, scale: f64) -> TestDb<'_> {
        let db = self.fresh_db(hint);
        db.load_fixture(scale);
        db
    }

    /// A fresh database (as [`Pg::fresh_db`]) in which `sql` has run.
    pub fn db_with(&self, hint: &str, sql: &str) -> TestDb<'_> {
        let db = self.fresh_db(hint);
        db.psql(sql);
        db
    }

    /// A fresh database with one table, `t`, whose column `g` holds 1 to `rows`.
    pub fn db_with_rows(&self, hint: &str, rows: u32) -> TestDb<'_> {
        let sql = format!("CREATE TABLE t AS SELECT g FROM generate_series(1, {rows}) g");
        self.db_with(hint, &sql)
    }
}
