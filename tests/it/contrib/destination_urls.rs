//! The `PGBAK_TO` examples of contrib/ (the environment file and the Kubernetes ConfigMap):
//! local + two buckets, one with Object Lock, each URL one pgbak accepts, with no secret in it.

use pgbak::settings::destinations::{parse, Target};

use crate::support::repo_dir;

/// The URLs of the commented `#PGBAK_TO="..."` line of the environment example.
fn env_example_urls() -> Vec<String> {
    let text = std::fs::read_to_string(repo_dir().join("contrib/pgbak.env.example")).unwrap();
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix("#PGBAK_TO="))
        .expect("a PGBAK_TO example in contrib/pgbak.env.example");
    line.trim_matches('"')
        .split_whitespace()
        .map(str::to_owned)
        .collect()
}

/// The URLs of the ConfigMap's folded `PGBAK_TO: >-` block.
fn configmap_urls() -> Vec<String> {
    let text =
        std::fs::read_to_string(repo_dir().join("contrib/kubernetes/configmap.yaml")).unwrap();
    text.lines()
        .skip_while(|l| l.trim() != "PGBAK_TO: >-")
        .skip(1)
        .take_while(|l| l.starts_with("    "))
        .flat_map(|l| l.split_whitespace())
        .map(str::to_owned)
        .collect()
}

#[test]
fn contrib_destination_examples_are_two_buckets_one_locked() {
    for (what, urls) in [
        ("env example", env_example_urls()),
        ("ConfigMap", configmap_urls()),
    ] {
        assert_eq!(urls.len(), 2, "{what}: {urls:?}");
        let parsed: Vec<_> = urls
            .iter()
            .map(|u| parse(u).unwrap_or_else(|e| panic!("{what}: {u}: {e:#}")))
            .collect();
        assert!(
            parsed.iter().all(|p| matches!(
                &p.target,
                Target::S3 {
                    profile: Some(_),
                    ..
                }
            )),
            "{what}: every bucket names a profile for its keys"
        );
        assert!(
            parsed.iter().any(|p| p.rules.object_lock_days.is_some()),
            "{what}: one bucket has Object Lock"
        );
        let names: Vec<&str> = parsed.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["offsite", "vault"], "{what}");
    }
}
