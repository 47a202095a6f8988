//! Unit tests of the metrics file ([`super`]).
use super::*;
use chrono::TimeZone;

fn group(mode: &str) -> GroupLabels {
    GroupLabels {
        database: "enterprise_agents".into(),
        mode: mode.into(),
        label: String::new(),
        server: "db-host-01:5432".into(),
    }
}

fn run(mode: &str, day: u32, success: bool) -> RunMetrics {
    RunMetrics {
        group: group(mode),
        started: Utc.with_ymd_and_hms(2026, 11, day, 2, 0, 0).unwrap(),
        duration: Duration::from_millis(12_500),
        success,
        exit_code: if success { 0 } else { 1 },
        backup_size: success.then_some(151_015_999),
        restore_seconds: None,
        steps: vec![
            StepMetric {
                step: "backup",
                success: true,
                duration: Duration::from_secs(5),
            },
            StepMetric {
                step: "verify",
                success,
                duration: Duration::from_millis(7_250),
            },
        ],
        destinations: Vec::new(),
    }
}

fn value(samples: &[Sample], name: &str, mode: &str) -> Option<f64> {
    samples
        .iter()
        .find(|s| s.name == name && s.label("mode") == mode && s.label("step").is_empty())
        .map(|s| s.value)
}

#[test]
fn render_is_the_exposition_format() {
    let text = render(&merge(Vec::new(), &Update::Finished(run("full", 25, true))));
    let labels =
        "database=\"enterprise_agents\",mode=\"full\",label=\"\",server=\"db-host-01:5432\"";
    let want = [
        "# TYPE pgbak_last_run_success gauge".to_owned(),
        format!("pgbak_last_run_start_timestamp_seconds{{{labels}}} 1795572000"),
        format!("pgbak_last_run_success{{{labels}}} 1"),
        format!("pgbak_last_run_exit_code{{{labels}}} 0"),
        format!("pgbak_last_run_duration_seconds{{{labels}}} 12.500"),
        format!("pgbak_last_backup_size_bytes{{{labels}}} 151015999"),
        format!("pgbak_step_success{{{labels},step=\"verify\"}} 1"),
        format!("pgbak_step_duration_seconds{{{labels},step=\"verify\"}} 7.250"),
        format!("pgbak_last_success_timestamp_seconds{{{labels}}} 1795572000"),
    ];
    for line in want {
        assert!(
            text.lines().any(|l| l == line),
            "missing {line:?} in\n{text}"
        );
    }
    assert!(text.ends_with('\n'));
    assert_eq!(parse(&text).len(), 10);
}

#[test]
fn label_values_are_escaped_and_read_back() {
    assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    let mut r = run("full", 25, true);
    r.group.database = "we\"ird,db\\x\ny} 1".into();
    let samples = merge(Vec::new(), &Update::Finished(r.clone()));
    let back = parse(&render(&samples));
    assert_eq!(back.len(), samples.len());
    assert!(back.iter().all(|s| s.group() == r.group), "{back:?}");
}

#[test]
fn groups_are_carried_forward_and_never_mixed() {
    // The sequence: full ok, schema fails, full fails, schema ok, full fails.
    let mut samples = Vec::new();
    let steps = [
        ("full", 20, true),
        ("schema", 21, false),
        ("full", 22, false),
        ("schema", 23, true),
        ("full", 24, false),
    ];
    for (mode, day, ok) in steps {
        let text = render(&merge(samples, &Update::Finished(run(mode, day, ok))));
        samples = parse(&text);
    }
    let at = |day: u32| seconds(Utc.with_ymd_and_hms(2026, 11, day, 2, 0, 0).unwrap());
    assert_eq!(value(&samples, LAST_SUCCESS, "full"), Some(at(20)));
    assert_eq!(value(&samples, LAST_SUCCESS, "schema"), Some(at(23)));
    assert_eq!(value(&samples, "pgbak_last_run_success", "full"), Some(0.0));
    assert_eq!(
        value(&samples, "pgbak_last_run_success", "schema"),
        Some(1.0)
    );
    assert_eq!(
        value(&samples, "pgbak_last_run_start_timestamp_seconds", "full"),
        Some(at(24))
    );
    assert_eq!(
        value(&samples, "pgbak_last_backup_size_bytes", "full"),
        None
    );
    assert_eq!(
        value(&samples, "pgbak_last_backup_size_bytes", "schema"),
        Some(151_015_999.0)
    );
}

#[test]
fn a_skip_counts_and_keeps_the_last_result() {
    let first = merge(Vec::new(), &Update::Finished(run("full", 20, true)));
    let at = Utc.with_ymd_and_hms(2026, 11, 21, 2, 0, 0).unwrap();
    let skip = Update::Skipped {
        group: group("full"),
        at,
    };
    let once = merge(first, &skip);
    let twice = merge(once, &skip);
    assert_eq!(value(&twice, SKIPPED, "full"), Some(2.0));
    assert_eq!(value(&twice, LAST_SKIP, "full"), Some(seconds(at)));
    assert_eq!(value(&twice, "pgbak_last_run_success", "full"), Some(1.0));
    // The next run keeps the count.
    let after = merge(twice, &Update::Finished(run("full", 22, false)));
    assert_eq!(value(&after, SKIPPED, "full"), Some(2.0));
    let text = render(&after);
    assert!(
        text.contains("# TYPE pgbak_runs_skipped_total counter"),
        "{text}"
    );
}

#[test]
fn series_without_a_server_are_carried_on_under_the_servers_name() {
    let old = "pgbak_last_success_timestamp_seconds{database=\"enterprise_agents\",mode=\"full\",label=\"\"} 12.5\n\
               pgbak_last_success_timestamp_seconds{database=\"other\",mode=\"full\",label=\"\"} 7\n";
    let merged = merge(parse(old), &Update::Finished(run("full", 20, false)));
    let last: Vec<&Sample> = merged.iter().filter(|s| s.name == LAST_SUCCESS).collect();
    assert_eq!(last.len(), 2, "{last:?}");
    assert!(last
        .iter()
        .any(|s| s.label("server") == "db-host-01:5432" && s.value == 12.5));
    assert!(last
        .iter()
        .any(|s| s.label("database") == "other" && s.label("server").is_empty()));
    // Two servers of one database stay two series.
    let mut two = run("full", 21, true);
    two.group.server = "db-host-02:5432".into();
    let both = merge(merged, &Update::Finished(two));
    assert_eq!(both.iter().filter(|s| s.name == LAST_SUCCESS).count(), 3);
}

#[test]
fn old_files_without_the_label_label_are_read() {
    let old = "pgbak_last_success_timestamp_seconds{database=\"enterprise_agents\",mode=\"full\"} 12.5\n\
               pgbak_unknown{database=\"x\"} 3\n# HELP x y\ngarbage\npgbak_last_run_success{} NaN\n";
    let samples = parse(old);
    assert_eq!(samples.len(), 2);
    let merged = merge(samples, &Update::Finished(run("full", 20, false)));
    assert_eq!(value(&merged, LAST_SUCCESS, "full"), Some(12.5));
    assert!(!merged.iter().any(|s| s.name == "pgbak_unknown"));
}

#[test]
fn write_makes_the_file_and_directory_readable_by_others() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sub/pgbak.prom");
    write(&path, &Update::Finished(run("full", 20, true))).unwrap();
    write(&path, &Update::Finished(run("schema", 21, false))).unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    let samples = parse(&text);
    assert!(value(&samples, LAST_SUCCESS, "full").is_some());
    assert!(value(&samples, "pgbak_last_run_success", "schema").is_some());
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&path), 0o644);
    assert_eq!(mode(path.parent().unwrap()), 0o755);
    let leftovers = std::fs::read_dir(path.parent().unwrap()).unwrap().count();
    assert_eq!(leftovers, 1, "no temporary file left");
}

#[test]
fn the_restore_time_is_replaced_by_a_new_measure_and_kept_otherwise() {
    let restore = |samples: &[Sample]| value(samples, RESTORE, "full");
    let measured = RunMetrics {
        restore_seconds: Some(41.5),
        ..run("full", 24, true)
    };
    let samples = merge(Vec::new(), &Update::Finished(measured));
    assert_eq!(restore(&samples), Some(41.5));
    // A run that did not verify keeps the last measure; the other series are its own.
    let samples = merge(samples, &Update::Finished(run("full", 25, false)));
    assert_eq!(restore(&samples), Some(41.5));
    assert_eq!(value(&samples, "pgbak_last_run_success", "full"), Some(0.0));
    // `pgbak verify` replaces only the restore time.
    let update = Update::Restored {
        group: group("full"),
        seconds: 12.25,
    };
    let after = merge(samples.clone(), &update);
    assert_eq!(restore(&after), Some(12.25));
    assert_eq!(after.len(), samples.len());
    let text = render(&after);
    assert!(
        text.contains("# TYPE pgbak_restore_duration_seconds gauge"),
        "{text}"
    );
}

#[test]
fn each_destination_has_its_series_and_one_that_failed_keeps_its_last_success() {
    let names: Vec<String> = ["local", "s3", "offsite"].map(String::from).into();
    let at = |samples: &[Sample], name: &str, destination: &str| {
        samples
            .iter()
            .find(|s| s.name == name && s.label("destination") == destination)
            .map(|s| s.value)
    };
    let with = |day: u32, held: &[&str]| RunMetrics {
        destinations: destinations::of_run(
            &names,
            &held.iter().map(|h| h.to_string()).collect::<Vec<_>>(),
            1000 + u64::from(day),
        ),
        ..run("full", day, held.len() == 3)
    };
    let first = merge(
        Vec::new(),
        &Update::Finished(with(24, &["local", "s3", "offsite"])),
    );
    let second = merge(first.clone(), &Update::Finished(with(25, &["local", "s3"])));
    let (copied, last, size) = (
        destinations::COPIED,
        destinations::LAST_SUCCESS,
        destinations::SIZE,
    );
    assert_eq!(at(&second, copied, "offsite"), Some(0.0));
    assert_eq!(at(&second, copied, "s3"), Some(1.0));
    assert_eq!(at(&second, last, "offsite"), at(&first, last, "offsite"));
    assert!(at(&second, last, "s3") > at(&first, last, "s3"));
    assert_eq!(at(&second, size, "offsite"), Some(1024.0));
    assert_eq!(at(&second, size, "local"), Some(1025.0));
    // A run that never knew its destinations carries them on; the group's series say 0.
    let failed = merge(second.clone(), &Update::Finished(run("full", 26, false)));
    assert_eq!(at(&failed, last, "s3"), at(&second, last, "s3"));
    // A destination no longer configured loses its series.
    let names_now: Vec<String> = ["local".to_owned()].into();
    let fewer = RunMetrics {
        destinations: destinations::of_run(&names_now, &names_now, 1),
        ..run("full", 27, true)
    };
    let after = merge(failed, &Update::Finished(fewer));
    assert_eq!(at(&after, copied, "offsite"), None);
    let text = render(&after);
    assert!(
        text.contains("pgbak_destination_last_copy_success{database=\"enterprise_agents\""),
        "{text}"
    );
    assert!(text.contains(",destination=\"local\"} 1"), "{text}");
}
