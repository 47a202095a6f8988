//! The .deb and .rpm `scripts/package.sh` builds, from this test build's binary: their files,
//! modes, owners, configuration files, maintainer scripts and metadata; the .deb extracted
//! (`dpkg-deb -x`), its binary's `--version` and a backup of the test server with it, its units
//! through `systemd-analyze verify`, and lintian clean but for the justified overrides.
//! Skipped (said on stderr) where `scripts/setup.sh` could not install the packaging tools;
//! the GitHub release workflow installs, upgrades and removes the .deb on a clean Debian.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use crate::support::{self, backup_cmd, output_text, pg16, repo_dir, scratch_dir};

/// A program from .tools/cargo/bin or PATH.
fn tool(name: &str) -> Option<PathBuf> {
    let local = repo_dir().join(".tools/cargo/bin").join(name);
    if local.is_file() {
        return Some(local);
    }
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

fn ok(out: Output, what: &str) -> String {
    assert!(out.status.success(), "{what}: {}", output_text(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn cmd(program: impl AsRef<std::ffi::OsStr>, args: &[&str]) -> Command {
    let mut cmd = Command::new(program);
    cmd.args(args);
    cmd
}

/// The packages, built once per test run (package.sh stages its files in one place, so the
/// two tests must not build at the same time).
struct Built {
    deb: Option<PathBuf>,
    rpm: Option<PathBuf>,
    tarball: Option<PathBuf>,
}

fn built() -> &'static Built {
    static BUILT: OnceLock<Built> = OnceLock::new();
    BUILT.get_or_init(|| {
        let deb = tool("cargo-deb").is_some() && tool("dpkg-deb").is_some();
        let rpm = ["cargo-generate-rpm", "rpm", "rpm2cpio", "cpio"]
            .iter()
            .all(|t| tool(t).is_some());
        if !deb && !rpm {
            return Built {
                deb: None,
                rpm: None,
                tarball: None,
            };
        }
        let out_dir = scratch_dir("packages");
        let mut package = Command::new(repo_dir().join("scripts/package.sh"));
        package
            .args(["--binary", env!("CARGO_BIN_EXE_pgbak"), "--fast", "--out"])
            .arg(&out_dir);
        if !rpm {
            package.arg("--deb-only");
        }
        if !deb {
            package.arg("--rpm-only");
        }
        ok(
            package.output().expect("running scripts/package.sh"),
            "package.sh",
        );
        let find = |ext: &str| {
            std::fs::read_dir(&out_dir)
                .unwrap()
                .map(|e| e.unwrap().path())
                .find(|p| p.to_string_lossy().ends_with(ext))
        };
        Built {
            deb: find(".deb").filter(|_| deb),
            rpm: find(".rpm").filter(|_| rpm),
            tarball: find(".tar.gz"),
        }
    })
}

/// Every file a package installs (man pages per subcommand included), without the leading `/`.
fn expected_files(rpm: bool) -> BTreeSet<String> {
    let zsh = if rpm {
        "usr/share/zsh/site-functions/_pgbak"
    } else {
        "usr/share/zsh/vendor-completions/_pgbak"
    };
    let mut files: BTreeSet<String> = [
        "usr/bin/pgbak",
        "etc/pgbak/pgbak.env",
        "usr/lib/systemd/system/pgbak.service",
        "usr/lib/systemd/system/pgbak.timer",
        "usr/lib/systemd/system/pgbak-drill.service",
        "usr/lib/systemd/system/pgbak-drill.timer",
        "usr/share/bash-completion/completions/pgbak",
        zsh,
        "usr/share/fish/vendor_completions.d/pgbak.fish",
        "usr/share/doc/pgbak/examples/pgbak.crontab",
    ]
    .into_iter()
    .map(str::to_owned)
    .collect();
    let man = if rpm { "1" } else { "1.gz" };
    files.insert(format!("usr/share/man/man1/pgbak.{man}"));
    for sub in support::SUBCOMMANDS {
        files.insert(format!("usr/share/man/man1/pgbak-{sub}.{man}"));
    }
    let docs: &[&str] = if rpm {
        &["README.md", "CHANGELOG.md"]
    } else {
        &[
            "README.md.gz",
            "changelog.gz",
            "changelog.Debian.gz",
            "copyright",
        ]
    };
    for doc in docs {
        files.insert(format!("usr/share/doc/pgbak/{doc}"));
    }
    if !rpm {
        files.insert("usr/share/lintian/overrides/pgbak".into());
    }
    files
}

/// What the packaged units and env file must say (contrib/'s, with the packaged paths).
fn assert_packaged_configuration(service: &str, timer: &str, drill: &str, env: &str) {
    assert!(
        service.contains("\nExecStart=/usr/bin/pgbak cron --verify\n"),
        "{service}"
    );
    assert!(
        service.contains("\nReadWritePaths=/var/lib/pgbak\n"),
        "{service}"
    );
    assert!(
        service.contains("\nEnvironmentFile=/etc/pgbak/pgbak.env\n"),
        "{service}"
    );
    assert!(service.contains("\nUser=pgbak\n") && service.contains("\nUMask=0077\n"));
    assert!(!service.contains("/usr/local/bin") && !service.contains("useradd"));
    assert!(timer.contains("OnCalendar=*-*-* 02:00:00") && timer.contains("Unit=pgbak.service"));
    assert!(
        drill.contains("\nExecStart=/usr/bin/pgbak verify --all-databases --ephemeral\n")
            && drill.contains("\nReadWritePaths=/var/lib/pgbak\n")
            && !drill.contains("/usr/local/bin"),
        "{drill}"
    );
    assert!(
        env.contains("\nBACKUP_DIR=/var/lib/pgbak/backups\n"),
        "{env}"
    );
    assert!(env.contains("\nDATABASE_URL="), "{env}");
    assert!(!env.contains("/var/backups/enterprise-agents"), "{env}");
}

#[test]
fn deb_holds_the_binary_pages_units_and_a_private_conffile() {
    let Some(deb) = &built().deb else {
        eprintln!("skipped: cargo-deb or dpkg-deb is not installed (scripts/setup.sh)");
        return;
    };
    let deb = deb.to_str().unwrap();
    // Metadata.
    let field = |name: &str| ok(cmd("dpkg-deb", &["-f", deb, name]).output().unwrap(), name);
    assert_eq!(field("Package").trim(), "pgbak");
    assert_eq!(
        field("Version").trim(),
        concat!(env!("CARGO_PKG_VERSION"), "-1")
    );
    assert_eq!(field("Section").trim(), "database");
    let depends = field("Depends");
    for part in [
        "adduser",
        "libc6 (>= 2.28)",
        "postgresql-client-16 | postgresql-client (>= 16)",
    ] {
        assert!(depends.contains(part), "Depends: {depends}");
    }
    // Files, modes, owners: exactly the expected set.
    let listing = ok(
        cmd("dpkg-deb", &["-c", deb]).output().unwrap(),
        "dpkg-deb -c",
    );
    let mut files = BTreeMap::new();
    for line in listing.lines() {
        let cols: Vec<&str> = line.split_whitespace().collect();
        let path = cols[5].trim_start_matches("./").to_owned();
        assert_eq!(cols[1], "0/0", "{line}: files ship as root:root");
        if !cols[0].starts_with('d') {
            files.insert(path, cols[0].to_owned());
        }
    }
    let names: BTreeSet<String> = files.keys().cloned().collect();
    assert_eq!(names, expected_files(false), "{listing}");
    assert_eq!(files["usr/bin/pgbak"], "-rwxr-xr-x");
    assert_eq!(files["etc/pgbak/pgbak.env"], "-rw-r-----");
    assert!(files
        .iter()
        .filter(|(p, _)| !p.ends_with("bin/pgbak") && !p.starts_with("etc/"))
        .all(|(_, mode)| mode == "-rw-r--r--"));

    // Control: the conffile, the maintainer scripts.
    let root = scratch_dir("deb-root");
    let control = root.join("DEBIAN");
    ok(
        cmd("dpkg-deb", &["-e", deb])
            .arg(&control)
            .output()
            .unwrap(),
        "dpkg-deb -e",
    );
    let read = |p: &Path| std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{p:?}: {e}"));
    assert_eq!(read(&control.join("conffiles")), "/etc/pgbak/pgbak.env\n");
    for script in ["postinst", "prerm", "postrm"] {
        ok(
            cmd("sh", &["-n"])
                .arg(control.join(script))
                .output()
                .unwrap(),
            script,
        );
    }
    let postinst = read(&control.join("postinst"));
    for part in [
        "adduser --system --group --home /var/lib/pgbak",
        "install -d -m 0750 -o pgbak -g pgbak /var/lib/pgbak",
        "dpkg-statoverride --update --add root pgbak 0640 /etc/pgbak/pgbak.env",
        "dpkg-statoverride --update --add root pgbak 0750 /etc/pgbak",
        "deb-systemd-helper update-state pgbak.timer",
    ] {
        assert!(postinst.contains(part), "postinst lacks {part}: {postinst}");
    }
    // Installed, not enabled or started (the env file needs editing first); an upgrade
    // reloads systemd but never stops or restarts a running backup.
    assert!(
        postinst.contains("systemctl --system daemon-reload"),
        "{postinst}"
    );
    assert!(!postinst.contains("deb-systemd-invoke"), "{postinst}");
    assert!(!postinst.contains("#DEBHELPER#"));
    let postrm = read(&control.join("postrm"));
    assert!(postrm.contains("dpkg-statoverride --remove"), "{postrm}");
    assert!(
        !postrm.contains("rm -rf") && !postrm.contains("deluser"),
        "backups and the user stay"
    );
    let prerm = read(&control.join("prerm"));
    assert!(
        prerm.contains("[ \"$1\" = remove ]")
            && prerm.contains(
                "deb-systemd-invoke stop pgbak-drill.service pgbak-drill.timer pgbak.service \
                 pgbak.timer"
            ),
        "units stopped on remove only: {prerm}"
    );

    // The files themselves.
    ok(
        cmd("dpkg-deb", &["-x", deb]).arg(&root).output().unwrap(),
        "dpkg-deb -x",
    );
    let service = read(&root.join("usr/lib/systemd/system/pgbak.service"));
    let timer = read(&root.join("usr/lib/systemd/system/pgbak.timer"));
    let drill = read(&root.join("usr/lib/systemd/system/pgbak-drill.service"));
    let env = read(&root.join("etc/pgbak/pgbak.env"));
    assert_packaged_configuration(&service, &timer, &drill, &env);
    let page = Command::new("sh")
        .arg("-c")
        .arg("gzip -dc \"$1\"")
        .arg("sh")
        .arg(root.join("usr/share/man/man1/pgbak-backup.1.gz"))
        .output()
        .unwrap();
    assert!(ok(page, "gzip -dc").contains(".TH pgbak-backup 1"));
    let binary = root.join("usr/bin/pgbak");
    let version = ok(cmd(&binary, &["--version"]).output().unwrap(), "--version");
    let ours = ok(
        cmd(env!("CARGO_BIN_EXE_pgbak"), &["--version"])
            .output()
            .unwrap(),
        "--version",
    );
    assert_eq!(version, ours, "the packaged binary is this build");
    systemd_analyze(&root, &binary);

    // The packaged binary backs up the test server.
    let pg = pg16();
    let db = pg.fresh_db("deb backup");
    db.load_fixture(0.02);
    let backups = scratch_dir("deb-backups");
    let backup = backup_cmd(pg, &db.name, &backups, &[]);
    let mut packaged = support::pgbak_binary(&binary, pg);
    packaged.args(backup.get_args());
    for (key, value) in backup.get_envs() {
        match value {
            Some(value) => packaged.env(key, value),
            None => packaged.env_remove(key),
        };
    }
    let out = packaged.output().expect("running the packaged pgbak");
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    let metas: Vec<String> = support::files(&backups)
        .into_iter()
        .filter(|f| f.ends_with(".meta.json"))
        .collect();
    assert_eq!(metas.len(), 1, "{metas:?}");
    let meta = support::read_meta(&backups.join(&metas[0]));
    assert!(backups.join(meta["file"].as_str().unwrap()).is_file());

    lintian(deb);
    let _ = std::fs::remove_dir_all(&root);
    let _ = std::fs::remove_dir_all(&backups);
}

/// The packaged units pass `systemd-analyze verify` (with ExecStart pointed at the extracted
/// binary, which verify checks exists).
fn systemd_analyze(root: &Path, binary: &Path) {
    let Some(analyze) = tool("systemd-analyze") else {
        eprintln!("systemd-analyze not installed: units not verified");
        return;
    };
    let dir = root.join("verify-units");
    std::fs::create_dir_all(dir.join("man/man1")).unwrap();
    let units = root.join("usr/lib/systemd/system");
    let names = [
        "pgbak.service",
        "pgbak.timer",
        "pgbak-drill.service",
        "pgbak-drill.timer",
    ];
    for name in names {
        let unit = std::fs::read_to_string(units.join(name)).unwrap();
        let unit = unit.replace("/usr/bin/pgbak", binary.to_str().unwrap());
        std::fs::write(dir.join(name), unit).unwrap();
    }
    let page = root.join("usr/share/man/man1/pgbak.1.gz");
    std::fs::copy(page, dir.join("man/man1/pgbak.1.gz")).unwrap();
    super::assert_units_verify(&analyze, &dir, &names);
}

/// lintian finds nothing beyond packaging/debian/lintian-overrides (each tag there says why).
fn lintian(deb: &str) {
    let Some(lintian) = tool("lintian") else {
        eprintln!("lintian not installed: the .deb was not linted");
        return;
    };
    let out = cmd(lintian, &["--pedantic", "--info", deb])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let tags: Vec<&str> = text
        .lines()
        .filter(|l| {
            ["E:", "W:", "I:", "P:", "X:"]
                .iter()
                .any(|p| l.starts_with(p))
        })
        .collect();
    assert!(tags.is_empty(), "lintian: {tags:#?}\n{}", output_text(&out));
    assert!(out.status.success(), "{}", output_text(&out));
}

#[test]
fn rpm_holds_the_same_files_with_pgdg_paths_and_scriptlets() {
    let Some(rpm) = &built().rpm else {
        eprintln!("skipped: cargo-generate-rpm or rpm is not installed (scripts/setup.sh)");
        return;
    };
    let rpm = rpm.to_str().unwrap();
    let query = |args: &[&str]| {
        let mut all = vec!["-qp"];
        all.extend_from_slice(args);
        all.push(rpm);
        ok(cmd("rpm", &all).output().unwrap(), &all.join(" "))
    };
    let tag = |name: &str| query(&["--queryformat", &format!("%{{{name}}}")]);
    assert_eq!(tag("NAME"), "pgbak");
    assert_eq!(tag("VERSION"), env!("CARGO_PKG_VERSION"));
    assert_eq!(tag("RELEASE"), "1");
    assert_eq!(tag("LICENSE"), "MIT OR Apache-2.0");
    assert_eq!(tag("ARCH"), std::env::consts::ARCH);
    let requires = query(&["--requires"]);
    for part in [
        "glibc >= 2.28",
        "shadow-utils",
        "(postgresql16 or postgresql17 or postgresql18 or postgresql >= 16)",
    ] {
        assert!(requires.contains(part), "requires: {requires}");
    }
    // path size mtime digest mode owner group isconfig isdoc rdev symlink
    let dump = query(&["--dump"]);
    let mut files = BTreeMap::new();
    for line in dump.lines() {
        let cols: Vec<&str> = line.split_whitespace().collect();
        let path = cols[0].trim_start_matches('/').to_owned();
        files.insert(
            path,
            (
                cols[4].to_owned(),
                cols[5].to_owned(),
                cols[6].to_owned(),
                cols[7] == "1",
            ),
        );
    }
    let names: BTreeSet<String> = files.keys().cloned().collect();
    assert_eq!(names, expected_files(true), "{dump}");
    let entry = |p: &str| files[p].clone();
    assert_eq!(
        entry("usr/bin/pgbak"),
        ("0100755".into(), "root".into(), "root".into(), false)
    );
    assert_eq!(
        entry("etc/pgbak/pgbak.env"),
        ("0100640".into(), "root".into(), "pgbak".into(), true),
        "a %config(noreplace) file, group pgbak"
    );
    let configs = query(&["--configfiles"]);
    assert_eq!(configs.trim(), "/etc/pgbak/pgbak.env");
    let scripts = query(&["--scripts"]);
    for part in [
        "preinstall scriptlet",
        "useradd --system --gid pgbak --home-dir /var/lib/pgbak",
        "postinstall scriptlet",
        "install -d -m 0750 -o pgbak -g pgbak /var/lib/pgbak",
        "preuninstall scriptlet",
        "systemctl --no-reload disable --now pgbak.timer pgbak.service",
        "systemctl --no-reload disable --now pgbak-drill.timer pgbak-drill.service",
        "postuninstall scriptlet",
    ] {
        assert!(scripts.contains(part), "scripts lack {part}: {scripts}");
    }
    assert!(!scripts.contains("rm -rf"), "backups stay: {scripts}");
    for script in [
        "pre-install.sh",
        "post-install.sh",
        "pre-uninstall.sh",
        "post-uninstall.sh",
    ] {
        let path = repo_dir().join("packaging/rpm").join(script);
        ok(cmd("sh", &["-n"]).arg(path).output().unwrap(), script);
    }
    // The packaged units and env file are the .deb's.
    let root = scratch_dir("rpm-root");
    let extract = Command::new("sh")
        .arg("-c")
        .arg("rpm2cpio \"$1\" | cpio -idm --quiet")
        .arg("sh")
        .arg(rpm)
        .current_dir(&root)
        .output()
        .unwrap();
    ok(extract, "rpm2cpio | cpio");
    let read = |p: &str| std::fs::read_to_string(root.join(p)).unwrap();
    assert_packaged_configuration(
        &read("usr/lib/systemd/system/pgbak.service"),
        &read("usr/lib/systemd/system/pgbak.timer"),
        &read("usr/lib/systemd/system/pgbak-drill.service"),
        &read("etc/pgbak/pgbak.env"),
    );
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn tarball_holds_the_binary_pages_completions_and_contrib() {
    let Some(tarball) = &built().tarball else {
        eprintln!("skipped: no packaging tools, so package.sh did not run (scripts/setup.sh)");
        return;
    };
    let name = format!(
        "pgbak-{}-{}-linux",
        env!("CARGO_PKG_VERSION"),
        std::env::consts::ARCH
    );
    assert!(tarball.ends_with(format!("{name}.tar.gz")), "{tarball:?}");
    let listing = ok(
        cmd("tar", &["-tvzf", tarball.to_str().unwrap()])
            .output()
            .unwrap(),
        "tar -t",
    );
    let mut files = BTreeMap::new();
    for line in listing.lines().filter(|l| !l.starts_with('d')) {
        let cols: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(cols[1], "0/0", "{line}");
        files.insert(
            cols[5].trim_start_matches(&format!("{name}/")).to_owned(),
            cols[0].to_owned(),
        );
    }
    let mut expected: BTreeSet<String> = [
        "pgbak",
        "README.md",
        "CHANGELOG.md",
        "completions/pgbak.bash",
        "completions/_pgbak",
        "completions/pgbak.fish",
        "contrib/pgbak.service",
        "contrib/pgbak.timer",
        "contrib/pgbak-drill.service",
        "contrib/pgbak-drill.timer",
        "contrib/pgbak.env.example",
        "contrib/pgbak.crontab",
        "man/man1/pgbak.1",
    ]
    .into_iter()
    .map(str::to_owned)
    .collect();
    for sub in support::SUBCOMMANDS {
        expected.insert(format!("man/man1/pgbak-{sub}.1"));
    }
    let names: BTreeSet<String> = files.keys().cloned().collect();
    assert_eq!(names, expected, "{listing}");
    assert_eq!(files["pgbak"], "-rwxr-xr-x");
}
