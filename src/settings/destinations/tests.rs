use super::*;
use crate::retention::Policy;
use crate::storage::object_lock::LockPolicy;

fn s3(bucket: &str, prefix: &str) -> Target {
    Target::S3 {
        bucket: bucket.into(),
        prefix: prefix.into(),
        endpoint: None,
        region: None,
        profile: None,
    }
}

#[test]
fn urls_parse_into_a_name_a_place_and_rules() {
    // (URL, name, target)
    let cases: [(&str, &str, Target); 7] = [
        (
            "file:///srv/backups",
            "backups",
            Target::Dir("/srv/backups".into()),
        ),
        (
            "file://localhost/srv/b/",
            "b",
            Target::Dir("/srv/b/".into()),
        ),
        (
            "file:///mnt/nas?name=nas",
            "nas",
            Target::Dir("/mnt/nas".into()),
        ),
        ("s3://my.bucket", "my-bucket", s3("my.bucket", "")),
        ("s3://Offsite/db/prod", "offsite", s3("Offsite", "db/prod/")),
        ("s3://b/p/?name=cold_1", "cold_1", s3("b", "p/")),
        (
            "s3://b/x?endpoint=http://127.0.0.1:9000&region=eu-west-1&profile=wasabi",
            "b",
            Target::S3 {
                bucket: "b".into(),
                prefix: "x/".into(),
                endpoint: Some("http://127.0.0.1:9000".into()),
                region: Some("eu-west-1".into()),
                profile: Some("wasabi".into()),
            },
        ),
    ];
    for (url, name, target) in cases {
        let parsed = parse(url).unwrap_or_else(|e| panic!("{url}: {e}"));
        assert_eq!(
            (parsed.name.as_str(), &parsed.target),
            (name, &target),
            "{url}"
        );
        assert_eq!(parsed.rules, Rules::default(), "{url}");
    }
}

#[test]
fn every_rule_a_url_may_override() {
    let parsed = parse(
        "s3://b/p?keep-last=2&keep-hourly=3&keep-daily=30&keep-weekly=4&keep-monthly=12\
         &keep-yearly=5&keep-within=14d&object-lock-days=30&object-lock-mode=compliance\
         &storage-class=GLACIER_IR&sse=aws:kms&sse-kms-key-id=alias/backups",
    )
    .unwrap();
    let rules = parsed.rules;
    assert_eq!(
        rules.retention,
        RetentionRules {
            last: Some(2),
            hourly: Some(3),
            daily: Some(30),
            weekly: Some(4),
            monthly: Some(12),
            yearly: Some(5),
            within: Some("14d".into()),
        }
    );
    assert_eq!(rules.object_lock_days, Some(30));
    assert_eq!(rules.object_lock_mode, Some(LockMode::Compliance));
    assert_eq!(rules.storage_class.unwrap().as_str(), "GLACIER_IR");
    assert_eq!(rules.sse, Some(SseAlgorithm::Kms));
    assert_eq!(rules.sse_kms_key_id.as_deref(), Some("alias/backups"));
    // `keep` is --keep-last's alias, as on the command line.
    let parsed = parse("file:///x?keep=4").unwrap();
    assert_eq!(parsed.rules.retention.last, Some(4));
}

/// The message of a refused URL (all are usage errors).
fn refused(url: &str) -> String {
    let err = parse(url).expect_err(url);
    assert_eq!(crate::error::exit_code(&err), crate::error::USAGE, "{url}");
    crate::error::one_line(&err)
}

#[test]
fn bad_urls_are_usage_errors_naming_what_is_wrong() {
    // (URL, words the message must hold)
    let cases = [
        ("s3://b/p?colour=blue", "unknown parameter \"colour\""),
        (
            "file:///x?region=eu",
            "region applies to s3:// destinations only",
        ),
        (
            "file:///x?object-lock-days=3",
            "object-lock-days applies to s3://",
        ),
        (
            "s3://b?keep-last=two",
            "keep-last=\"two\" is not a whole number",
        ),
        ("s3://b?keep-within=forever", "keep-within"),
        ("s3://b?object-lock-mode=strict", "governance or compliance"),
        ("s3://b?storage-class=cheap", "storage-class"),
        ("s3://b?sse=rot13", "AES256 or aws:kms"),
        ("s3://b?endpoint=minio:9000", "not an http(s) URL"),
        ("s3://b?name=Off%20Site", "name=\"Off Site\""),
        ("s3://b?keep-last=1&keep-last=2", "given twice"),
        ("s3:///prefix", "no bucket"),
        ("ftp://host/dir", "scheme \"ftp\""),
        ("/srv/backups", "not a URL"),
        ("file://nas/share", "three slashes"),
        ("file:///", "not a directory path"),
    ];
    for (url, words) in cases {
        let message = refused(url);
        assert!(message.contains(words), "{url}: {message}");
    }
}

#[test]
fn a_secret_in_a_url_is_refused_by_name_and_never_echoed() {
    let value = "wJalrXUtnFEMI-K7MDENG-bPxRfiCYEXAMPLEKEY";
    // (the parameter or part that carries `value`, the name the message gives)
    let cases = [
        (format!("s3://b/p?secret-key={value}"), "secret-key"),
        (format!("s3://b/p?access-key={value}"), "access-key"),
        (
            format!("s3://b/p?aws_secret_access_key={value}"),
            "aws_secret_access_key",
        ),
        (
            format!("s3://b/p?AWS_ACCESS_KEY_ID={value}"),
            "AWS_ACCESS_KEY_ID",
        ),
        (format!("s3://b/p?session-token={value}"), "session-token"),
        (format!("s3://b/p?password={value}"), "password"),
        (format!("s3://b/p?token={value}"), "token"),
        (
            format!("s3://b/p?X-Amz-Credential={value}"),
            "X-Amz-Credential",
        ),
        (format!("file:///x?api_key={value}"), "api_key"),
        // Before anything else is looked at: an unknown one after it does not hide it.
        (format!("s3://b/p?colour=x&secret={value}"), "secret"),
        (
            format!("s3://user:{value}@b/p"),
            "password (user:password@)",
        ),
        (format!("s3://{value}@b/p"), "user name (user@)"),
    ];
    for (url, name) in cases {
        let message = refused(&url);
        assert!(message.contains(name), "{url}: {message}");
        assert!(!message.contains(value), "{url} echoed: {message}");
        assert!(!message.contains("EXAMPLE"), "{url} echoed: {message}");
    }
}

#[test]
fn unknown_parameters_are_named_without_their_value() {
    let message = refused("s3://b/p?k=AKIAIOSFODNN7EXAMPLE");
    assert!(message.contains("unknown parameter \"k\""), "{message}");
    assert!(!message.contains("AKIA"), "{message}");
}

fn globals<'a>(s3: &'a S3Args, retention: &'a RetentionArgs) -> Globals<'a> {
    Globals {
        s3,
        retention: Some(retention),
        object_lock: None,
        local: Some(Path::new("/var/backups/pg")),
        bucket: None,
    }
}

fn s3_args() -> S3Args {
    S3Args {
        max_parts: 10_000,
        concurrency: 3,
        endpoint_url: Some("http://global.example:9000".into()),
        region: Some("global-region".into()),
        ..Default::default()
    }
}

fn to(urls: &[&str]) -> ToArgs {
    ToArgs {
        to: urls.iter().map(|u| u.to_string()).collect(),
    }
}

#[test]
fn names_and_places_are_unique_across_all_destinations() {
    let s3 = s3_args();
    let retention = RetentionArgs::default();
    let g = globals(&s3, &retention);
    // PGBAK_TO's whitespace-separated list reads as repeated --to.
    let ok = resolve(&to(&["s3://a/p file:///mnt/nas", "s3://b"]), &g).unwrap();
    let names: Vec<&str> = ok.iter().map(|d| d.name.as_str()).collect();
    assert_eq!(names, ["a", "nas", "b"]);
    // (URLs, words of the refusal)
    let cases: [(&[&str], &str); 5] = [
        (
            &["s3://a/p", "s3://a/q"],
            "two destinations are named \"a\"",
        ),
        (
            &["s3://a/p", "s3://a/p?name=other"],
            "the same place as destination \"a\"",
        ),
        (
            &["file:///var/backups/pg/?name=again"],
            "same place as destination \"local\"",
        ),
        (
            &["file:///var/backups/x/../pg?name=again"],
            "same place as destination \"local\"",
        ),
        (
            &["file:///srv/local"],
            "two destinations are named \"local\"",
        ),
    ];
    for (urls, words) in cases {
        let err = resolve(&to(urls), &g).expect_err(urls[0]);
        assert_eq!(crate::error::exit_code(&err), crate::error::USAGE);
        let message = crate::error::one_line(&err);
        assert!(message.contains(words), "{urls:?}: {message}");
    }
}

#[test]
fn a_bucket_destination_names_its_own_place_and_takes_the_rest_of_the_s3_flags() {
    let s3 = s3_args();
    let retention = RetentionArgs::default();
    let g = globals(&s3, &retention);
    let resolved = resolve(
        &to(&["s3://off/site?profile=wasabi&storage-class=STANDARD&sse=AES256"]),
        &g,
    )
    .unwrap();
    let Place::S3(settings) = &resolved[0].place else {
        panic!("a bucket")
    };
    assert_eq!(
        (settings.bucket.as_str(), settings.prefix.as_str()),
        ("off", "site/")
    );
    // The S3_* endpoint and region are the S3_* bucket's, not this one's.
    assert_eq!(settings.endpoint_url, None);
    assert_ne!(settings.region.as_deref(), Some("global-region"));
    assert_eq!(settings.storage_class.as_str(), "STANDARD");
    assert_eq!(settings.sse, Some(crate::storage::s3::Sse::Aes256));
    assert_eq!(settings.max_parts, 10_000);
    // With a profile, the run's own keys are not used for it.
    assert!(settings.sdk.credentials.is_none());
    assert_eq!(settings.sdk.profile.as_deref(), Some("wasabi"));
    // Without, the storage class is the global one.
    let plain = resolve(&to(&["s3://plain"]), &g).unwrap();
    let Place::S3(settings) = &plain[0].place else {
        panic!("a bucket")
    };
    assert_eq!(settings.storage_class, StorageClass::default());
}

#[test]
fn url_rules_override_the_global_ones_rule_by_rule() {
    let s3 = s3_args();
    let global = RetentionArgs {
        keep_last: Some(2),
        ..Default::default()
    };
    let lock = ObjectLockArgs {
        object_lock_days: Some(7),
        object_lock_mode: None,
    };
    let mut g = globals(&s3, &global);
    g.object_lock = Some(&lock);
    // (URL, its retention, its Object Lock)
    type Case<'a> = (&'a str, Option<Policy>, Option<Option<LockPolicy>>);
    let cases: [Case; 5] = [
        ("s3://a", None, None),
        (
            "s3://a?keep-daily=30",
            Some(Policy {
                last: 2,
                daily: 30,
                ..Policy::default()
            }),
            None,
        ),
        (
            "file:///d?keep-last=0&keep-daily=30",
            Some(Policy {
                daily: 30,
                ..Policy::default()
            }),
            None,
        ),
        (
            "s3://a?object-lock-mode=compliance",
            None,
            Some(Some(LockPolicy {
                days: 7,
                mode: LockMode::Compliance,
            })),
        ),
        ("s3://a?object-lock-days=0", None, Some(None)),
    ];
    for (url, retention, object_lock) in cases {
        let d = resolve(&to(&[url]), &g).unwrap().remove(0);
        assert_eq!(
            d.overrides,
            Overrides {
                retention,
                object_lock
            },
            "{url}"
        );
    }
    // With no global rule at all, keep-last's default of 7 stays off when the URL sets another.
    let none = RetentionArgs::default();
    let g = globals(&s3, &none);
    let d = resolve(&to(&["s3://a?keep-daily=30"]), &g)
        .unwrap()
        .remove(0);
    assert_eq!(d.overrides.retention.unwrap().to_string(), "daily 30");
}

#[test]
fn stores_keep_the_destinations_in_order_and_name_the_authoritative_one() {
    let flags = |urls: &[&str]| ToFlags::new(&to(urls), &s3_args(), None, None);
    let names = |stores: &Stores| -> Vec<String> {
        stores
            .destinations()
            .iter()
            .map(|d| d.name.clone())
            .collect()
    };
    let local = Path::new("/var/backups/pg");
    // Without --to, nothing changes: the directory, then the S3_* bucket, which decides.
    let main = S3Settings::from_args(&s3_args(), Some("main")).unwrap();
    let today = flags(&[]).stores(Some(local), Some(&main)).unwrap();
    assert_eq!(names(&today), ["local", "s3"]);
    assert!(today.added().is_empty());
    assert_eq!(today.authoritative().unwrap().describe(), "s3://main/");
    // --to ones follow; the S3_* bucket stays authoritative.
    let urls = ["file:///mnt/nas", "s3://off/p"];
    let more = flags(&urls).stores(Some(local), Some(&main)).unwrap();
    assert_eq!(names(&more), ["local", "s3", "nas", "off"]);
    let added: Vec<&str> = more.added().iter().map(|d| d.name.as_str()).collect();
    assert_eq!(added, ["nas", "off"]);
    assert_eq!(more.authoritative().unwrap().describe(), "s3://main/");
    // Without an S3_* bucket the first bucket destination decides, not the directory.
    let no_bucket = flags(&urls).stores(Some(local), None).unwrap();
    assert_eq!(names(&no_bucket), ["local", "nas", "off"]);
    assert_eq!(no_bucket.authoritative().unwrap().describe(), "s3://off/p/");
    assert_eq!(no_bucket.named("nas").unwrap().store.describe(), "/mnt/nas");
    // Without any bucket, the directory.
    let dirs = flags(&urls[..1]).stores(Some(local), None).unwrap();
    assert_eq!(dirs.authoritative().unwrap().describe(), "/var/backups/pg");
}
