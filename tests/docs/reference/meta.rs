//! docs/reference/meta-json.md: a sample meta.json and verdict object made
//! from the structs pgbak serializes, and a check that the page documents
//! every key they can hold (and no key they cannot).
//!
//! [`every_key`] is written as struct literals on purpose: a field added to
//! `Meta` does not compile here until it is given a value, and with a value
//! its key must be documented.

use std::collections::BTreeMap;

use pgbak::meta::{
    DatabaseGrant, DatabaseProperties, DatabaseSetting, Encryption, GlobalsInfo, Meta, Pin,
    S3Location, ServerIdentity, TableRows, Verification, VerifyTiming,
};
use pgbak::mode::Mode;
use pgbak::pg::catalog::{Catalog, Constraint, Index, Policy, RowSecurity, Sequence, Trigger};
use pgbak::storage::verdict::VerdictFile;

use super::{assert_documented, documented_keys, json_block, key_paths};

/// Keys whose objects are keyed by data (extension names), not by pgbak.
const OPAQUE: &[&str] = &["extensions"];

fn s(text: &str) -> String {
    text.to_owned()
}

fn verification() -> Verification {
    Verification {
        verified_at: s("2026-11-25T02:05:53Z"),
        passed: false,
        pgbak_version: s("0.1.0"),
        failed_checks: vec![s("indexes match")],
        timing: Some(VerifyTiming {
            restore_seconds: 412.5,
            verify_seconds: 8.2,
            jobs: 4,
            bytes: 1_073_741_824,
        }),
    }
}

fn catalog() -> Catalog {
    let (schema, table) = (s("public"), s("documents"));
    Catalog {
        indexes: vec![Index {
            schema: schema.clone(),
            table: s("vector_chunks"),
            name: s("vector_chunks_embedding_idx"),
            definition: s("CREATE INDEX vector_chunks_embedding_idx ON public.vector_chunks USING hnsw (embedding public.vector_cosine_ops)"),
        }],
        constraints: vec![Constraint {
            schema: schema.clone(),
            table: s("messages"),
            name: s("messages_conversation_id_fkey"),
            kind: s("foreign key"),
            definition: s("FOREIGN KEY (conversation_id) REFERENCES public.conversations(id) ON DELETE CASCADE"),
            validated: true,
        }],
        triggers: vec![Trigger {
            schema: schema.clone(),
            table: table.clone(),
            name: s("documents_touch"),
            definition: s("CREATE TRIGGER documents_touch BEFORE UPDATE ON public.documents FOR EACH ROW EXECUTE FUNCTION public.touch()"),
            enabled: s("enabled"),
        }],
        policies: vec![Policy {
            schema: schema.clone(),
            table: table.clone(),
            name: s("tenant_documents"),
            command: s("ALL"),
            permissive: true,
            roles: vec![s("app")],
            using: Some(s("(tenant_id = (current_setting('app.tenant_id'::text))::uuid)")),
            with_check: Some(s("(tenant_id = (current_setting('app.tenant_id'::text))::uuid)")),
        }],
        row_security: vec![RowSecurity {
            schema: schema.clone(),
            table,
            enabled: true,
            forced: false,
        }],
        sequences: vec![Sequence {
            schema,
            name: s("audit_logs_id_seq"),
            last_value: Some(1500),
            increment: 1,
        }],
    }
}

fn database_properties() -> DatabaseProperties {
    DatabaseProperties {
        owner: s("app"),
        encoding: s("UTF8"),
        collate: s("en_US.UTF-8"),
        ctype: s("en_US.UTF-8"),
        locale_provider: s("libc"),
        locale: None,
        settings: vec![DatabaseSetting {
            role: Some(s("app")),
            name: s("statement_timeout"),
            value: s("30s"),
        }],
        acl: Some(vec![DatabaseGrant {
            grantee: s("readonly"),
            privilege: s("CONNECT"),
            grantable: false,
        }]),
        comment: Some(s("the agents' platform")),
        connection_limit: Some(-1),
        tablespace: Some(s("pg_default")),
    }
}

/// A meta.json with every key pgbak can write: every `Option` is `Some`,
/// every list has an item. (No real backup has all of them at once.)
pub fn every_key() -> Meta {
    Meta {
        format_version: pgbak::meta::FORMAT_VERSION,
        database: s("enterprise_agents"),
        mode: Mode::Full,
        label: Some(s("pre-migration")),
        file: s("enterprise_agents_full_pre-migration_srv-1a2b3c4d_20261125T020000.dump.age"),
        size_bytes: 151_015_999,
        sha256: s("9f2c5e0c1d4b7a8e3f6a9b2c5d8e1f4a7b0c3d6e9f2a5b8c1d4e7f0a3b6c9d2e"),
        started_at: s("2026-11-25T02:00:00Z"),
        finished_at: s("2026-11-25T02:00:05Z"),
        duration_seconds: 4.8,
        compression: s("zstd:1"),
        server_version: s("16.14"),
        pg_dump_version: s("17.10"),
        alembic_revision: Some(s("013")),
        extensions: BTreeMap::from([(s("plpgsql"), s("1.0")), (s("vector"), s("0.8.5"))]),
        tables: vec![TableRows {
            schema: s("public"),
            name: s("vector_chunks"),
            rows: Some(20_000),
        }],
        host: s("db-host-01"),
        pgbak_version: s("0.1.0"),
        s3: Some(S3Location {
            bucket: s("acme-backups"),
            key: s("enterprise-agents/postgres/enterprise_agents_full_srv-1a2b3c4d_20261125T020000.dump"),
            storage_class: s("STANDARD_IA"),
        }),
        verification: Some(verification()),
        standby: true,
        unlogged_tables_skipped: vec![s("public.scratch")],
        pinned: Some(Pin {
            pinned_at: s("2026-11-26T02:00:07Z"),
            reason: s("compared with enterprise_agents_full_srv-1a2b3c4d_20261126T020000: total rows 120000 -> 400; tables collapsed: public.messages 119600 -> 0"),
        }),
        database_properties: Some(database_properties()),
        roles: Some(vec![s("app"), s("readonly")]),
        cluster_run: Some(s("20261125T020000")),
        globals: Some(GlobalsInfo {
            role_passwords: false,
            note: Some(s("the server refused to show role passwords (pg_authid): roles restore without them")),
            databases: vec![s("enterprise_agents"), s("postgres")],
        }),
        encryption: Some(Encryption {
            format: s("age"),
            recipients: vec![s("age1qyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqs5z9qg8")],
            plaintext_sha256: s("d7cf3ce0614907d6b0e3a1f2c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f7"),
            plaintext_size_bytes: 150_994_211,
        }),
        schema_objects: Some(catalog()),
        server: Some(ServerIdentity {
            name: s("db-eu-1:5432"),
            system_identifier: Some(s("7441092365517412350")),
        }),
        signature: Some(s("-----BEGIN SSH SIGNATURE-----\nU1NIU0lH...\n-----END SSH SIGNATURE-----\n")),
        sealed: Some(s("-----BEGIN AGE ENCRYPTED FILE-----\nYWdlLWVuY3J5cHRpb24ub3JnL3YxCi0+...\n-----END AGE ENCRYPTED FILE-----\n")),
    }
}

/// What an ordinary signed, uploaded full backup writes.
fn ordinary() -> Meta {
    let mut catalog = catalog();
    catalog.constraints[0].definition =
        s("FOREIGN KEY (conversation_id) REFERENCES public.conversations(id)");
    Meta {
        label: None,
        standby: false,
        unlogged_tables_skipped: vec![],
        pinned: None,
        verification: Some(Verification {
            passed: true,
            failed_checks: vec![],
            ..verification()
        }),
        cluster_run: None,
        globals: None,
        encryption: None,
        sealed: None,
        schema_objects: Some(catalog),
        file: s("enterprise_agents_full_srv-1a2b3c4d_20261125T020000.dump"),
        ..every_key()
    }
}

pub fn example() -> String {
    json_block(&serde_json::to_value(ordinary()).expect("a Meta serializes"))
}

/// A `verify --checksum-only` proof.
fn proof() -> pgbak::storage::verdict::ChecksumProof {
    pgbak::storage::verdict::ChecksumProof {
        checked_at: s("2026-12-02T04:00:00Z"),
        passed: true,
        pgbak_version: s("0.1.0"),
    }
}

pub fn verdict_example() -> String {
    let verdict = VerdictFile {
        format_version: 1,
        file: s("enterprise_agents_full_srv-1a2b3c4d_20261125T020000.dump"),
        verification: Some(verification()),
        checksum: Some(proof()),
    };
    json_block(&serde_json::to_value(verdict).expect("a verdict serializes"))
}

fn page() -> String {
    crate::read(&crate::root().join("docs/reference/meta-json.md"))
}

#[test]
fn every_meta_json_key_is_documented() {
    let json = serde_json::to_value(every_key()).unwrap();
    assert_documented(
        "meta.json",
        &key_paths(&json, OPAQUE),
        &documented_keys(&page(), "Every key"),
    );
}

#[test]
fn every_verdict_key_is_documented() {
    let verdict = VerdictFile {
        format_version: 1,
        file: s("x.dump"),
        verification: Some(verification()),
        checksum: Some(proof()),
    };
    let json = serde_json::to_value(verdict).unwrap();
    assert_documented(
        "<stem>.verify.json",
        &key_paths(&json, &[]),
        &documented_keys(&page(), "The verdict object"),
    );
}

/// The example on the page reads back as a meta.json (pgbak would accept it).
#[test]
fn the_example_reads_back() {
    let text = serde_json::to_string(&ordinary()).unwrap();
    let meta = Meta::parse(&text).expect("the page's example parses");
    assert_eq!(meta, ordinary());
}
