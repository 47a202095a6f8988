//! What `pgbak sync` copies, decided without touching any store (table
//! tests): for each destination, every complete backup another destination
//! holds and it lacks, from the first destination (in order) that holds it,
//! as far as the destination's own retention rules would keep it beside
//! what it holds (so a sync never copies what the next prune there deletes).

use chrono::{DateTime, Utc};

use crate::retention::apply::Marks;
use crate::retention::{plan, Candidate, Policy};
use crate::storage::{BackupName, Listed};

/// One copy to make: `name` from destination `from` to destination `to`
/// (indexes into the destinations, in order).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Copy {
    pub name: BackupName,
    pub from: usize,
    pub to: usize,
}

/// What one destination is owed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Owed {
    pub copies: Vec<Copy>,
    /// Backups it lacks that its retention would delete: not copied.
    pub not_kept: Vec<String>,
}

/// The copies for every destination whose listing could be read
/// (`held[i]` None: unreachable, neither copied to nor from). `policies[i]`
/// is destination i's retention; `marks` the verdicts and pins every
/// destination records (a backup verified or pinned at one is so for all).
pub fn copies(
    held: &[Option<&[Listed]>],
    policies: &[&Policy],
    marks: &Marks,
    now: DateTime<Utc>,
) -> Vec<Owed> {
    (0..held.len())
        .map(|to| match held[to] {
            None => Owed::default(),
            Some(own) => owed(to, own, held, policies[to], marks, now),
        })
        .collect()
}

fn complete(backups: &[Listed]) -> impl Iterator<Item = &Listed> {
    backups.iter().filter(|b| b.has_dump && b.has_meta)
}

/// What destination `to` (holding `own`) lacks, and keeps.
fn owed(
    to: usize,
    own: &[Listed],
    held: &[Option<&[Listed]>],
    policy: &Policy,
    marks: &Marks,
    now: DateTime<Utc>,
) -> Owed {
    let mut missing: Vec<Copy> = Vec::new();
    for (from, backups) in held.iter().enumerate() {
        let Some(backups) = backups.filter(|_| from != to) else {
            continue;
        };
        for b in complete(backups) {
            let here = complete(own).any(|o| o.name == b.name);
            if !here && !missing.iter().any(|m| m.name == b.name) {
                missing.push(Copy {
                    name: b.name.clone(),
                    from,
                    to,
                });
            }
        }
    }
    let candidate = |name: &BackupName| Candidate {
        verified: marks.verified.contains(&name.stem()),
        pinned: marks.pinned.contains(&name.stem()),
        ..Candidate::plain(name.clone())
    };
    let candidates: Vec<Candidate> = complete(own)
        .map(|b| candidate(&b.name))
        .chain(missing.iter().map(|m| candidate(&m.name)))
        .collect();
    let decisions = plan(&candidates, policy, None, now);
    let mut owed = Owed::default();
    for copy in missing {
        let kept = decisions.iter().any(|d| d.name == copy.name && d.keep);
        if kept {
            owed.copies.push(copy);
        } else {
            owed.not_kept.push(copy.name.stem());
        }
    }
    owed.copies.sort_by(|a, b| {
        (a.name.group(), a.name.timestamp).cmp(&(b.name.group(), b.name.timestamp))
    });
    owed
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mode::Mode;
    use chrono::TimeZone;

    fn name(day: u32) -> BackupName {
        BackupName::new(
            "app",
            Mode::Full,
            None,
            Utc.with_ymd_and_hms(2026, 11, day, 2, 0, 0).unwrap(),
        )
    }

    fn listed(day: u32) -> Listed {
        Listed {
            name: name(day),
            has_dump: true,
            has_meta: true,
            size: 1,
            has_verdict: false,
            storage_class: None,
        }
    }

    /// What a case is, what each destination holds, their rules, and the copies wanted.
    type Case<'a> = (
        &'a str,
        Vec<Option<&'a [Listed]>>,
        Vec<&'a Policy>,
        Vec<Vec<(u32, usize, usize)>>,
    );

    fn days(owed: &Owed) -> Vec<(u32, usize, usize)> {
        use chrono::Datelike;
        owed.copies
            .iter()
            .map(|c| (c.name.timestamp.day(), c.from, c.to))
            .collect()
    }

    #[test]
    fn each_destination_gets_what_it_lacks_and_keeps() {
        let now = Utc.with_ymd_and_hms(2026, 11, 30, 0, 0, 0).unwrap();
        let all = Policy::default();
        let last2 = Policy::last(2);
        let a = vec![listed(1), listed(2), listed(3)];
        let b = vec![listed(1)];
        let c = vec![listed(3), listed(4)];
        let mut dump_only = listed(5);
        dump_only.has_meta = false;
        let with_partial = vec![dump_only];
        let marks = Marks::default();
        let cases: Vec<Case> = vec![
            (
                "keep all: everything everywhere, each from the first holder",
                vec![Some(&a), Some(&b), Some(&c)],
                vec![&all, &all, &all],
                vec![
                    vec![(4, 2, 0)],
                    vec![(2, 0, 1), (3, 0, 1), (4, 2, 1)],
                    vec![(1, 0, 2), (2, 0, 2)],
                ],
            ),
            (
                "keep-last 2 at b: only the two newest",
                vec![Some(&a), Some(&b), Some(&c)],
                vec![&all, &last2, &all],
                vec![
                    vec![(4, 2, 0)],
                    vec![(3, 0, 1), (4, 2, 1)],
                    vec![(1, 0, 2), (2, 0, 2)],
                ],
            ),
            (
                "an unreachable destination is neither a source nor a target",
                vec![Some(&a), None, Some(&c)],
                vec![&all, &all, &all],
                vec![vec![(4, 2, 0)], vec![], vec![(1, 0, 2), (2, 0, 2)]],
            ),
            (
                "a dump without meta.json is not a backup: never copied",
                vec![Some(&with_partial), Some(&b)],
                vec![&all, &all],
                vec![vec![(1, 1, 0)], vec![]],
            ),
        ];
        for (what, held, policies, want) in cases {
            let got: Vec<_> = copies(&held, &policies, &marks, now)
                .iter()
                .map(days)
                .collect();
            assert_eq!(got, want, "{what}");
        }
    }

    #[test]
    fn what_retention_would_delete_is_named_not_copied() {
        let now = Utc.with_ymd_and_hms(2026, 11, 30, 0, 0, 0).unwrap();
        let a = vec![listed(1), listed(2), listed(3)];
        let b: Vec<Listed> = Vec::new();
        let last1 = Policy::last(1);
        let all = Policy::default();
        let mut marks = Marks::default();
        // A pinned backup is kept by every destination's retention: it is copied.
        marks.pinned.insert(name(1).stem());
        let owed = copies(&[Some(&a), Some(&b)], &[&all, &last1], &marks, now);
        assert_eq!(days(&owed[1]), vec![(1, 0, 1), (3, 0, 1)]);
        assert_eq!(owed[1].not_kept, vec![name(2).stem()]);
    }
}
