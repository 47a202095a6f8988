//! contrib/kubernetes/: every manifest passes `kubernetes-validate` (offline schemas of a
//! current Kubernetes, strict: unknown fields fail), every CronJob has the fields that keep a
//! backup job honest (Forbid, deadlines, retries, non-root, requests), no credential is an
//! argument, and pgbak itself accepts each CronJob's command line with the settings the
//! manifests give it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use clap::Parser;
use serde_json::Value;

use crate::support::{self, output_text, repo_dir};

/// The Kubernetes version whose schemas the manifests are checked against.
const KUBERNETES_VERSION: &str = "1.37.0";

fn tool(name: &str) -> PathBuf {
    let path = repo_dir().join(".tools/k8s/bin").join(name);
    assert!(
        path.exists(),
        "{} is missing: run scripts/setup.sh",
        path.display()
    );
    path
}

fn manifests() -> Vec<PathBuf> {
    let dir = repo_dir().join("contrib/kubernetes");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    files
}

fn validate(files: &[PathBuf]) -> std::process::Output {
    Command::new(tool("kubernetes-validate"))
        .args(["--kubernetes-version", KUBERNETES_VERSION, "--strict"])
        .args(files)
        .output()
        .expect("running kubernetes-validate")
}

/// Every document of a YAML file, as JSON (PyYAML from the validator's venv).
fn load(path: &Path) -> Vec<Value> {
    let out = Command::new(tool("python"))
        .args([
            "-c",
            "import json, sys, yaml; print(json.dumps([d for d in yaml.safe_load_all(open(sys.argv[1])) if d]))",
        ])
        .arg(path)
        .output()
        .expect("running python");
    assert!(out.status.success(), "{}", output_text(&out));
    serde_json::from_slice::<Vec<Value>>(&out.stdout).expect("JSON from PyYAML")
}

/// The environment a container gets: its ConfigMaps (envFrom) and its env entries, values
/// from the example Secrets and the ConfigMap.
fn container_env(
    container: &Value,
    configmaps: &BTreeMap<String, BTreeMap<String, String>>,
    secrets: &BTreeMap<String, BTreeMap<String, String>>,
) -> BTreeMap<String, String> {
    let mut env = BTreeMap::new();
    for from in container["envFrom"].as_array().into_iter().flatten() {
        let name = from["configMapRef"]["name"].as_str().expect("configMapRef");
        env.extend(configmaps[name].clone());
    }
    for var in container["env"].as_array().into_iter().flatten() {
        let name = var["name"].as_str().unwrap().to_owned();
        let value = if let Some(v) = var["value"].as_str() {
            Some(v.to_owned())
        } else if let Some(r) = var["valueFrom"]["secretKeyRef"].as_object() {
            secrets[r["name"].as_str().unwrap()]
                .get(r["key"].as_str().unwrap())
                .cloned()
        } else if let Some(r) = var["valueFrom"]["configMapKeyRef"].as_object() {
            configmaps[r["name"].as_str().unwrap()]
                .get(r["key"].as_str().unwrap())
                .cloned()
        } else {
            panic!("unexpected env entry {var}");
        };
        env.insert(name, value.expect("the referenced key exists"));
    }
    env
}

fn string_map(value: &Value) -> BTreeMap<String, String> {
    value
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
                .collect()
        })
        .unwrap_or_default()
}

/// Each CronJob's command line, with the environment the manifests give it, through the
/// real binary with `--check-config` (`cron`, `check` and `verify` have it: settings resolved and
/// checked, nothing connected, read or sent): exit 0. The files the pods mount (the age
/// identity) and their writable directories are made here; the URLs keep their cluster
/// names, which `--check-config` never resolves. A broken value in the same environment
/// exits 2 and names its variable, so the test can fail.
fn check_configs(commands: &[(String, Vec<String>, BTreeMap<String, String>)]) {
    let dir = support::scratch_dir("k8s-check-config");
    let identity = dir.join("identity.txt");
    let out = support::pgbak_bare()
        .args(["keygen", "--output"])
        .arg(&identity)
        .output()
        .expect("running pgbak keygen");
    assert!(out.status.success(), "{}", output_text(&out));
    let recipient = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    assert!(recipient.starts_with("age1"), "{recipient}");
    let local = |key: &str, value: &str| -> String {
        match key {
            // The Secret volume's file, and the ConfigMap's matching public key.
            "PGBAK_AGE_IDENTITY_FILE" => identity.display().to_string(),
            "PGBAK_AGE_RECIPIENTS" => recipient.clone(),
            // The pod's emptyDir mounts.
            "BACKUP_DIR" | "LOG_DIR" | "TMPDIR"
                if value.starts_with("/var/lib/pgbak") || value == "/tmp" =>
            {
                let path = dir.join(value.trim_start_matches('/'));
                std::fs::create_dir_all(&path).unwrap();
                path.display().to_string()
            }
            _ => value.to_owned(),
        }
    };
    let mut checked = Vec::new();
    for (name, args, env) in commands {
        let env: BTreeMap<String, String> =
            env.iter().map(|(k, v)| (k.clone(), local(k, v))).collect();
        let run = |extra: &[(&str, &str)]| {
            let mut cmd = support::pgbak_bare();
            cmd.args(args).arg("--check-config").envs(&env);
            for (key, value) in extra {
                cmd.env(key, value);
            }
            cmd.output().expect("running pgbak")
        };
        let out = run(&[]);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{name}: pgbak {args:?} --check-config: {}",
            output_text(&out)
        );
        let broken = match args[0].as_str() {
            "cron" => ("BACKUP_KEEP", "abc"),
            // (its limits are flags in the manifest, which win over their variables)
            "check" | "verify" => ("S3_SSE", "rot13"),
            other => panic!("{name}: no dry run known for `pgbak {other}`"),
        };
        let out = run(&[broken]);
        assert_eq!(out.status.code(), Some(2), "{name}: {}", output_text(&out));
        assert!(
            String::from_utf8_lossy(&out.stderr).contains(broken.0),
            "{name}: the error names {}: {}",
            broken.0,
            output_text(&out)
        );
        checked.push(args[0].clone());
    }
    for command in ["cron", "check", "verify"] {
        assert!(checked.contains(&command.to_owned()), "{checked:?}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn kubernetes_manifests_validate_and_pgbak_accepts_their_command_lines() {
    let files = manifests();
    assert!(files.len() >= 4, "{files:?}");
    let out = validate(&files);
    assert!(out.status.success(), "{}", output_text(&out));

    // The validator is not vacuous: a misspelt field fails.
    let broken_dir = support::scratch_dir("k8s-broken");
    let broken = broken_dir.join("broken.yaml");
    let text = std::fs::read_to_string(repo_dir().join("contrib/kubernetes/cronjob-check.yaml"))
        .unwrap()
        .replace("concurrencyPolicy:", "concurencyPolicy:");
    std::fs::write(&broken, text).unwrap();
    assert!(!validate(&[broken]).status.success());
    let _ = std::fs::remove_dir_all(&broken_dir);

    let docs: Vec<Value> = files.iter().flat_map(|f| load(f)).collect();
    let by_kind =
        |kind: &str| -> Vec<&Value> { docs.iter().filter(|d| d["kind"] == kind).collect() };
    let configmaps: BTreeMap<String, BTreeMap<String, String>> = by_kind("ConfigMap")
        .into_iter()
        .map(|d| {
            (
                d["metadata"]["name"].as_str().unwrap().to_owned(),
                string_map(&d["data"]),
            )
        })
        .collect();
    let secrets: BTreeMap<String, BTreeMap<String, String>> = by_kind("Secret")
        .into_iter()
        .map(|d| {
            (
                d["metadata"]["name"].as_str().unwrap().to_owned(),
                string_map(&d["stringData"]),
            )
        })
        .collect();
    let secret_values: Vec<&String> = secrets.values().flat_map(|s| s.values()).collect();

    let cronjobs = by_kind("CronJob");
    assert!(cronjobs.len() >= 2, "a backup CronJob and a check CronJob");
    let mut commands = Vec::new();
    for cj in cronjobs {
        let name = cj["metadata"]["name"].as_str().unwrap();
        let spec = &cj["spec"];
        assert_eq!(spec["concurrencyPolicy"], "Forbid", "{name}");
        assert!(spec["startingDeadlineSeconds"].as_u64().is_some(), "{name}");
        let job = &spec["jobTemplate"]["spec"];
        let deadline = job["activeDeadlineSeconds"]
            .as_u64()
            .expect("activeDeadlineSeconds");
        assert!(job["backoffLimit"].as_u64().is_some(), "{name}");
        let pod = &job["template"]["spec"];
        assert_eq!(pod["securityContext"]["runAsNonRoot"], true, "{name}");
        let containers = pod["containers"].as_array().unwrap();
        assert_eq!(containers.len(), 1, "{name}");
        let c = &containers[0];
        assert!(
            c["command"].is_null(),
            "{name}: the image's ENTRYPOINT is pgbak"
        );
        assert!(c["resources"]["requests"]["memory"].is_string(), "{name}");
        assert!(c["resources"]["limits"]["memory"].is_string(), "{name}");
        let args: Vec<String> = c["args"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap().to_owned())
            .collect();
        // No credential on the command line: not a URL, not a secret's value.
        for arg in &args {
            assert!(!arg.contains("://"), "{name}: {arg}");
            assert!(
                !secret_values.iter().any(|s| arg.contains(s.as_str())),
                "{name}: {arg}"
            );
        }
        // Credentials come from Secrets, never inline values.
        for var in c["env"].as_array().into_iter().flatten() {
            let var_name = var["name"].as_str().unwrap();
            if [
                "DATABASE_URL",
                "PGPASSWORD",
                "AWS_SECRET_ACCESS_KEY",
                "ALERT_WEBHOOK_URL",
                "HEARTBEAT_URL",
                "PGBAK_VERIFY_TARGET_URL",
                "PGBAK_CHECK_HEARTBEAT_URL",
            ]
            .contains(&var_name)
            {
                assert!(
                    var["valueFrom"]["secretKeyRef"].is_object(),
                    "{name}: {var_name}"
                );
            }
        }
        let env = container_env(c, &configmaps, &secrets);
        // pgbak's own timeout ends a hung run (with an alert) before Kubernetes kills it.
        if let Some(timeout) = env.get("PGBAK_TIMEOUT") {
            let timeout = pgbak::cli::parse_duration(timeout).expect("PGBAK_TIMEOUT");
            assert!(
                deadline >= timeout.as_secs() + 300,
                "{name}: activeDeadlineSeconds {deadline} must exceed PGBAK_TIMEOUT by minutes"
            );
        }
        // The age identity is only where verify runs: a job that does not verify
        // (--all-databases, check) neither names nor mounts it (issue 22).
        let verifies = (args.first().is_some_and(|a| a == "cron")
            && !args.iter().any(|a| a == "--all-databases")
            && env.get("VERIFY_ON_BACKUP").is_some_and(|v| v == "true"))
            || args.first().is_some_and(|a| a == "verify");
        let mounts_identity = pod["volumes"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|v| v["secret"]["secretName"] == "pgbak-age-identity");
        if !verifies {
            assert!(
                !mounts_identity && !env.contains_key("PGBAK_AGE_IDENTITY_FILE"),
                "{name}: holds the age identity but never decrypts"
            );
        }
        // The age identity, when mounted, comes from a Secret volume, read-only.
        if let Some(path) = env.get("PGBAK_AGE_IDENTITY_FILE") {
            let mount = c["volumeMounts"]
                .as_array()
                .unwrap()
                .iter()
                .find(|m| path.starts_with(m["mountPath"].as_str().unwrap()))
                .expect("the identity file is on a mount");
            assert_eq!(mount["readOnly"], true);
            let volume = pod["volumes"]
                .as_array()
                .unwrap()
                .iter()
                .find(|v| v["name"] == mount["name"])
                .unwrap();
            assert!(volume["secret"]["secretName"].is_string(), "{name}");
        }
        let mut argv = vec!["pgbak".to_owned()];
        argv.extend(args.iter().cloned());
        if let Err(err) = pgbak::cli::Cli::try_parse_from(&argv) {
            panic!("{name}: pgbak rejects {args:?}: {err}");
        }
        commands.push((name.to_owned(), args, env));
    }
    check_configs(&commands);
}
