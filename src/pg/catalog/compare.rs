//! Comparing the schema objects a backup recorded with a restored copy's: a
//! pure function, so every rule (missing, different, behind) is table-tested.

use std::collections::BTreeMap;

use super::{Catalog, Sequence};

/// The kinds of object verify compares, one check each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    Index,
    Constraint,
    Trigger,
    /// Policies and the tables' row-security switches.
    Policy,
    Sequence,
}

impl Kind {
    pub const ALL: [Kind; 5] = [
        Kind::Index,
        Kind::Constraint,
        Kind::Trigger,
        Kind::Policy,
        Kind::Sequence,
    ];

    /// The plural the report uses ("3 indexes").
    pub fn plural(self) -> &'static str {
        match self {
            Kind::Index => "indexes",
            Kind::Constraint => "constraints",
            Kind::Trigger => "triggers",
            Kind::Policy => "policies and row-security switches",
            Kind::Sequence => "sequences",
        }
    }
}

/// How definitions are compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Depth {
    /// Same server major version: definitions must be equal.
    Definitions,
    /// Different majors print definitions differently: presence, kind and
    /// the version-independent states only.
    Presence,
}

/// The outcome for one kind: how many recorded objects were checked, and
/// what is missing or different in the copy (one phrase per object).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Compared {
    pub recorded: usize,
    pub problems: Vec<String>,
    /// The same problems without definitions or states (expressions, role
    /// names): what is said of an encrypted backup, whose definitions are
    /// sealed, in logs, reports and alerts.
    pub sealed_problems: Vec<String>,
}

/// One recorded or restored object reduced to what is compared.
struct Fact {
    /// How the report names it: `index public.users_email_key on public.users`.
    label: String,
    /// Compared at every depth.
    state: String,
    /// Compared only at [`Depth::Definitions`].
    definition: String,
    /// The state an object absent from the copy has, when absence is a state
    /// (row security off) rather than a missing object.
    absent: Option<&'static str>,
}

/// Compares what the backup recorded with the restored copy: every recorded
/// object must be in the copy (extra objects in the copy are fine), with the
/// same definition at [`Depth::Definitions`]; a sequence must not be behind
/// its recorded value.
pub fn compare(recorded: &Catalog, copy: &Catalog, depth: Depth) -> BTreeMap<Kind, Compared> {
    let mut out = BTreeMap::new();
    for kind in Kind::ALL {
        let want = facts(recorded, kind);
        let have = facts(copy, kind);
        let mut outcome = Compared {
            recorded: want.len(),
            ..Compared::default()
        };
        for (key, fact) in &want {
            let (told, sealed) = match have.get(key) {
                None => match fact.absent {
                    Some(absent) => (
                        format!(
                            "{}: {} in the backup, {absent} in the copy",
                            fact.label, fact.state
                        ),
                        format!("{}: {absent} in the copy, not in the backup", fact.label),
                    ),
                    None => (
                        format!("{} missing", fact.label),
                        format!("{} missing", fact.label),
                    ),
                },
                Some(got) if got.state != fact.state => (
                    format!(
                        "{}: {} in the backup, {} in the copy",
                        fact.label, fact.state, got.state
                    ),
                    format!("{}: not as in the backup", fact.label),
                ),
                Some(got) if depth == Depth::Definitions && got.definition != fact.definition => (
                    format!(
                        "{}: defined as {:?} in the backup, {:?} in the copy",
                        fact.label, fact.definition, got.definition
                    ),
                    format!("{}: defined otherwise than in the backup", fact.label),
                ),
                Some(_) => continue,
            };
            outcome.problems.push(told);
            outcome.sealed_problems.push(sealed);
        }
        if kind == Kind::Sequence {
            let behind = sequences_behind(recorded, copy);
            outcome.sealed_problems.extend(behind.iter().cloned());
            outcome.problems.extend(behind);
        }
        out.insert(kind, outcome);
    }
    out
}

/// Sequences whose value in the copy is behind the recorded one (or unset).
fn sequences_behind(recorded: &Catalog, copy: &Catalog) -> Vec<String> {
    let have: BTreeMap<(&str, &str), &Sequence> = copy
        .sequences
        .iter()
        .map(|s| ((s.schema.as_str(), s.name.as_str()), s))
        .collect();
    let mut behind = Vec::new();
    for want in &recorded.sequences {
        let Some(value) = want.last_value else {
            continue;
        };
        let Some(got) = have.get(&(want.schema.as_str(), want.name.as_str())) else {
            continue; // reported as missing
        };
        let ok = match got.last_value {
            None => false,
            Some(v) if want.increment < 0 => v <= value,
            Some(v) => v >= value,
        };
        if !ok {
            behind.push(format!(
                "sequence {}.{} is behind: last value {value} in the backup, {} in the copy",
                want.schema,
                want.name,
                got.last_value
                    .map_or_else(|| "never used".to_owned(), |v| v.to_string())
            ));
        }
    }
    behind
}

/// The objects of one kind, keyed by what identifies them.
fn facts(catalog: &Catalog, kind: Kind) -> BTreeMap<String, Fact> {
    let mut facts = BTreeMap::new();
    let mut add = |key: String, label: String, state: String, definition: String| {
        facts.insert(
            key,
            Fact {
                label,
                state,
                definition,
                absent: None,
            },
        );
    };
    match kind {
        Kind::Index => {
            for i in &catalog.indexes {
                add(
                    format!("{}.{}", i.schema, i.name),
                    format!("index {}.{} on {}.{}", i.schema, i.name, i.schema, i.table),
                    format!("on {}.{}", i.schema, i.table),
                    i.definition.clone(),
                );
            }
        }
        Kind::Constraint => {
            for c in &catalog.constraints {
                add(
                    format!("{}.{}.{}", c.schema, c.table, c.name),
                    format!(
                        "{} constraint {} on {}.{}",
                        c.kind, c.name, c.schema, c.table
                    ),
                    format!(
                        "{}{}",
                        c.kind,
                        if c.validated { "" } else { " (not valid)" }
                    ),
                    c.definition.clone(),
                );
            }
        }
        Kind::Trigger => {
            for t in &catalog.triggers {
                add(
                    format!("{}.{}.{}", t.schema, t.table, t.name),
                    format!("trigger {} on {}.{}", t.name, t.schema, t.table),
                    t.enabled.clone(),
                    t.definition.clone(),
                );
            }
        }
        Kind::Policy => {
            for p in &catalog.policies {
                add(
                    format!("policy {}.{}.{}", p.schema, p.table, p.name),
                    format!("policy {} on {}.{}", p.name, p.schema, p.table),
                    format!(
                        "{} {} to {}",
                        if p.permissive {
                            "permissive"
                        } else {
                            "restrictive"
                        },
                        p.command,
                        p.roles.join(", ")
                    ),
                    format!(
                        "USING ({}) WITH CHECK ({})",
                        p.using.as_deref().unwrap_or(""),
                        p.with_check.as_deref().unwrap_or("")
                    ),
                );
            }
            for r in &catalog.row_security {
                facts.insert(
                    format!("rls {}.{}", r.schema, r.table),
                    Fact {
                        label: format!("row-level security of {}.{}", r.schema, r.table),
                        state: row_security_state(r.enabled, r.forced).to_owned(),
                        definition: String::new(),
                        absent: Some("disabled"),
                    },
                );
            }
        }
        Kind::Sequence => {
            for s in &catalog.sequences {
                add(
                    format!("{}.{}", s.schema, s.name),
                    format!("sequence {}.{}", s.schema, s.name),
                    String::new(),
                    String::new(),
                );
            }
        }
    }
    facts
}

/// `enabled`, `enabled and forced`, ... as the report says it.
fn row_security_state(enabled: bool, forced: bool) -> &'static str {
    match (enabled, forced) {
        (true, true) => "enabled and forced",
        (true, false) => "enabled",
        (false, true) => "forced but not enabled",
        (false, false) => "disabled",
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Constraint, Index, Policy, RowSecurity, Trigger};
    use super::*;

    fn sample() -> Catalog {
        Catalog {
            indexes: vec![Index {
                schema: "public".into(),
                table: "users".into(),
                name: "users_email_key".into(),
                definition: "CREATE UNIQUE INDEX users_email_key ON public.users USING btree (email)"
                    .into(),
            }],
            constraints: vec![Constraint {
                schema: "public".into(),
                table: "users".into(),
                name: "users_tenant_id_fkey".into(),
                kind: "foreign key".into(),
                definition: "FOREIGN KEY (tenant_id) REFERENCES public.tenants(id)".into(),
                validated: true,
            }],
            triggers: vec![Trigger {
                schema: "public".into(),
                table: "users".into(),
                name: "users_audit".into(),
                definition: "CREATE TRIGGER users_audit AFTER INSERT ON public.users FOR EACH ROW EXECUTE FUNCTION public.audit()".into(),
                enabled: "enabled".into(),
            }],
            policies: vec![Policy {
                schema: "public".into(),
                table: "documents".into(),
                name: "tenant_isolation".into(),
                command: "SELECT".into(),
                permissive: true,
                roles: vec!["public".into()],
                using: Some("(tenant_id = 1)".into()),
                with_check: None,
            }],
            row_security: vec![RowSecurity {
                schema: "public".into(),
                table: "documents".into(),
                enabled: true,
                forced: false,
            }],
            sequences: vec![Sequence {
                schema: "public".into(),
                name: "users_id_seq".into(),
                last_value: Some(200),
                increment: 1,
            }],
        }
    }

    fn problems(copy: &Catalog, depth: Depth) -> BTreeMap<Kind, Vec<String>> {
        compare(&sample(), copy, depth)
            .into_iter()
            .filter(|(_, o)| !o.problems.is_empty())
            .map(|(k, o)| (k, o.problems))
            .collect()
    }

    #[test]
    fn the_sealed_problems_name_the_object_but_not_its_definition() {
        let mut copy = sample();
        copy.policies[0].using = Some("(tenant_id = 2)".into());
        copy.policies[0].roles = vec!["app_reader".into()];
        copy.constraints.clear();
        let outcome = compare(&sample(), &copy, Depth::Definitions);
        let policy = &outcome[&Kind::Policy];
        assert!(
            policy.problems[0].contains("app_reader"),
            "{:?}",
            policy.problems
        );
        assert_eq!(
            policy.sealed_problems,
            vec!["policy tenant_isolation on public.documents: not as in the backup"]
        );
        copy = sample();
        copy.policies[0].using = Some("(tenant_id = 2)".into());
        let outcome = compare(&sample(), &copy, Depth::Definitions);
        let policy = &outcome[&Kind::Policy];
        assert!(policy.problems[0].contains("tenant_id = 1"));
        assert!(
            !policy.sealed_problems[0].contains("tenant_id"),
            "{:?}",
            policy.sealed_problems
        );
        let constraint = &compare(
            &sample(),
            &Catalog {
                constraints: vec![],
                ..sample()
            },
            Depth::Definitions,
        )[&Kind::Constraint];
        assert_eq!(
            constraint.problems, constraint.sealed_problems,
            "a missing object is named alike"
        );
    }

    #[test]
    fn an_identical_copy_or_one_with_extra_objects_passes() {
        assert!(problems(&sample(), Depth::Definitions).is_empty());
        let mut extra = sample();
        extra.indexes.push(Index {
            name: "extra".into(),
            ..sample().indexes[0].clone()
        });
        extra.sequences[0].last_value = Some(250);
        let outcome = compare(&sample(), &extra, Depth::Definitions);
        assert!(outcome.values().all(|o| o.problems.is_empty()));
        assert_eq!(outcome[&Kind::Index].recorded, 1);
        assert_eq!(
            outcome[&Kind::Policy].recorded,
            2,
            "policy and the RLS switch"
        );
    }

    #[test]
    fn what_is_missing_or_different_is_named_per_kind() {
        type Change = fn(&mut Catalog);
        let cases: [(Change, Depth, Kind, &str); 11] = [
            (|c| c.indexes.clear(), Depth::Presence, Kind::Index,
             "index public.users_email_key on public.users missing"),
            (|c| c.indexes[0].definition = "CREATE INDEX users_email_key ON public.users USING btree (email)".into(),
             Depth::Definitions, Kind::Index, "index public.users_email_key on public.users: defined as"),
            (|c| c.constraints.clear(), Depth::Presence, Kind::Constraint,
             "foreign key constraint users_tenant_id_fkey on public.users missing"),
            (|c| c.constraints[0].validated = false, Depth::Presence, Kind::Constraint,
             "foreign key in the backup, foreign key (not valid) in the copy"),
            (|c| c.triggers.clear(), Depth::Presence, Kind::Trigger,
             "trigger users_audit on public.users missing"),
            (|c| c.triggers[0].enabled = "disabled".into(), Depth::Presence, Kind::Trigger,
             "trigger users_audit on public.users: enabled in the backup, disabled in the copy"),
            (|c| c.policies.clear(), Depth::Presence, Kind::Policy,
             "policy tenant_isolation on public.documents missing"),
            (|c| c.policies[0].roles = vec!["app".into()], Depth::Presence, Kind::Policy,
             "permissive SELECT to public in the backup, permissive SELECT to app in the copy"),
            (|c| c.row_security.clear(), Depth::Presence, Kind::Policy,
             "row-level security of public.documents: enabled in the backup, disabled in the copy"),
            (|c| c.sequences.clear(), Depth::Presence, Kind::Sequence,
             "sequence public.users_id_seq missing"),
            (|c| c.sequences[0].last_value = Some(199), Depth::Presence, Kind::Sequence,
             "sequence public.users_id_seq is behind: last value 200 in the backup, 199 in the copy"),
        ];
        for (change, depth, kind, want) in cases {
            let mut copy = sample();
            change(&mut copy);
            let found = problems(&copy, depth);
            assert_eq!(found.len(), 1, "{want}: {found:?}");
            let said = &found[&kind];
            assert!(
                said.len() == 1 && said[0].contains(want),
                "{want}: {said:?}"
            );
        }
    }

    #[test]
    fn across_major_versions_definitions_are_not_compared() {
        let mut copy = sample();
        copy.indexes[0].definition =
            "CREATE UNIQUE INDEX users_email_key ON public.users (email)".into();
        copy.policies[0].using = Some("tenant_id = 1".into());
        assert!(problems(&copy, Depth::Presence).is_empty());
        let found = problems(&copy, Depth::Definitions);
        assert_eq!(
            found.keys().copied().collect::<Vec<_>>(),
            [Kind::Index, Kind::Policy]
        );
    }

    #[test]
    fn sequences_are_compared_by_direction_and_unrecorded_values_are_not() {
        let mut recorded = sample();
        recorded.sequences[0].increment = -1;
        let mut copy = recorded.clone();
        copy.sequences[0].last_value = Some(150);
        assert!(
            compare(&recorded, &copy, Depth::Definitions)[&Kind::Sequence]
                .problems
                .is_empty(),
            "a descending sequence further down is ahead"
        );
        copy.sequences[0].last_value = None;
        assert_eq!(
            compare(&recorded, &copy, Depth::Definitions)[&Kind::Sequence]
                .problems
                .len(),
            1,
            "a copy whose sequence was never used is behind"
        );
        recorded.sequences[0].last_value = None;
        assert!(
            compare(&recorded, &copy, Depth::Definitions)[&Kind::Sequence]
                .problems
                .is_empty(),
            "a schema-only backup records no value"
        );
    }
}
