#!/usr/bin/env python3
"""pgbak restore drills: how long `pgbak verify --all-databases --ephemeral --from-s3` takes,
with its own breakdown (globals, download, restore, checks), for

  1. a run of one database: the enterprise_agents fixture at --scale (default 4);
  2. a run of three databases: that one plus two copies of the fixture at scale 1.

Each run is backed up with `pgbak backup --all-databases` to a moto S3 bucket, then drilled
from the bucket into a throwaway cluster (PostgreSQL 16 + pgvector, the same tools as the
backup) --rounds times; the medians of the drill's own numbers (its --json totals) and the
wall time of the whole command are reported. Writes bench/results/<UTC ts>-drill.md.

    python3 bench/drill.py --scale 4 --rounds 2 --skip-setup

The restore time includes decryption (none here: the backups are plaintext) and the index
builds; pgbak does not time them apart. Reuses bench/run.py's cluster, moto and clean-up.
"""

import argparse
import datetime
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import run as bench  # noqa: E402

BUCKET = "pgbak-drill"
COPIES = ["agents_b", "agents_c"]


def pgbak(tools, env: dict, argv: list) -> subprocess.CompletedProcess:
    return subprocess.run([str(tools.pgbak), *argv], env=env, capture_output=True, text=True)


def drill_once(tools, env: dict, run_id: str) -> dict:
    started = time.monotonic()
    res = pgbak(tools, env, ["verify", "--all-databases", "--ephemeral", "--from-s3", "--run", run_id,
                             "--json"])
    wall = time.monotonic() - started
    if res.returncode != 0:
        raise bench.BenchError(f"the drill failed (exit {res.returncode}): {res.stderr[-2000:]}")
    doc = json.loads(res.stdout)
    doc["command_wall_seconds"] = wall
    return doc


def backup_run(tools, env: dict, out: Path) -> str:
    res = pgbak(tools, env, ["backup", "--all-databases", "--json",
                             "--output-dir", str(out), "--keep", "0"])
    if res.returncode != 0:
        raise bench.BenchError(f"pgbak backup --all-databases failed: {res.stderr[-2000:]}")
    return json.loads(res.stdout)["cluster_run"]


def median(docs: list, pick) -> float:
    return statistics.median(pick(d) for d in docs)


def rows(label: str, docs: list) -> list:
    t = lambda key: median(docs, lambda d: d["totals"][key])  # noqa: E731
    out = [f"| {label} | total | {len(docs)} | {bench.fmt_mib(docs[0]['totals']['bytes'] / bench.MIB)} | "
           f"{median(docs, lambda d: d['globals']['seconds']):.1f} | {t('download_seconds'):.1f} | "
           f"{t('restore_seconds'):.1f} | {t('verify_seconds'):.1f} | {t('rebuild_seconds'):.1f} | "
           f"{median(docs, lambda d: d['command_wall_seconds']):.1f} |"]
    for i, row in enumerate(docs[0]["databases"]):
        r = lambda key: median(docs, lambda d: d["databases"][i][key] or 0.0)  # noqa: E731
        out.append(f"| {label} | {row['database']} | {len(docs)} | {bench.fmt_mib(row['bytes'] / bench.MIB)} | | "
                   f"{r('download_seconds'):.1f} | {r('restore_seconds'):.1f} | {r('verify_seconds'):.1f} | | |")
    return out


def main(argv) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scale", default="4", help="the one database's fixture scale (default 4)")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--fixture", default=str(bench.REPO / "fixtures/enterprise_agents.sql"))
    ap.add_argument("--results-dir", default=str(bench.REPO / "bench/results"))
    ap.add_argument("--skip-setup", action="store_true")
    ap.add_argument("--skip-build", action="store_true")
    ap.add_argument("--pgbak", help="pgbak binary (default target/release/pgbak)")
    ap.add_argument("--work-dir", default="/var/tmp")
    args = ap.parse_args(argv)
    signal.signal(signal.SIGTERM, bench.on_signal)
    started = datetime.datetime.now(datetime.timezone.utc)
    load0 = os.getloadavg()
    tools = bench.setup_tools(args)
    work = Path(tempfile.mkdtemp(prefix="pgbak-drill.", dir=args.work_dir))
    os.chmod(work, 0o755)
    bench.CLEANUP.add(f"removing {work}", lambda: shutil.rmtree(work, ignore_errors=True))
    env = bench.clean_env()
    try:
        cluster = bench.Cluster(tools.pg16, work)
        cluster.start()
        moto = bench.Moto(tools.moto, work)
        moto.start()
        urllib.request.urlopen(urllib.request.Request(f"{moto.url}/{BUCKET}", method="PUT")).close()
        fixture = Path(args.fixture)
        # Two copies of the fixture at scale 1, then the one database at --scale.
        bench.load_fixture(tools, cluster, env, fixture, "1")
        for copy in COPIES:
            bench.psql(tools, cluster, env, f"CREATE DATABASE {copy} TEMPLATE {bench.DB}", "postgres")
        db_bytes, _ = bench.load_fixture(tools, cluster, env, fixture, args.scale)
        base = moto.aws_env(dict(env, DATABASE_URL=cluster.url("postgres"), PGBAK_PG_BIN_DIR=str(tools.pg16),
                                 S3_BUCKET=BUCKET, S3_ENDPOINT_URL=moto.url, S3_STORAGE_CLASS="STANDARD",
                                 TMPDIR=str(work)))
        results = {}
        for label, exclude in [(f"1 database (scale {args.scale})", COPIES), ("3 databases", [])]:
            run_env = dict(base, PGBAK_EXCLUDE_DATABASES=",".join(["postgres", *exclude]))
            time.sleep(1.1)  # run ids are whole seconds
            run_id = backup_run(tools, run_env, work / f"out-{len(results)}")
            docs = []
            for r in range(args.rounds):
                doc = drill_once(tools, run_env, run_id)
                bench.say(f"{label} round {r + 1}: drill {doc['command_wall_seconds']:.1f} s, rebuild "
                          f"{doc['totals']['rebuild_seconds']:.1f} s")
                docs.append(doc)
            results[label] = docs
        load1 = os.getloadavg()
        info = bench.machine_info(tools)
        stamp = started.strftime("%Y%m%dT%H%M%SZ")
        lines = [
            f"# pgbak restore drills, {started.strftime('%Y-%m-%d %H:%M UTC')}",
            "",
            f"Command: `python3 bench/drill.py {' '.join(argv)}`",
            "",
            "Machine: " + "; ".join(f"{k}: {v}" for k, v in info.items()),
            f"Load average at start {load0[0]:.2f} / {load0[1]:.2f} / {load0[2]:.2f}, at end "
            f"{load1[0]:.2f} / {load1[1]:.2f} / {load1[2]:.2f} (above ~0.5 at start means other work "
            "shared the machine).",
            "",
            f"`pgbak verify --all-databases --ephemeral --from-s3` of an `--all-databases` run in a moto "
            f"bucket, into a throwaway PostgreSQL 16 + pgvector cluster, `--jobs {bench.JOBS}`; the "
            f"database at scale {args.scale} is {db_bytes / bench.MIB:.0f} MiB on the server. Medians of "
            "the drill's own `--json` numbers; restore includes the index builds (the backups are not "
            "encrypted: no decryption). Rebuild = globals + downloads + restores (the RTO of a rebuild "
            "from this run on this machine); drill = the whole command (cluster start and checks too).",
            "",
            "| run | database | drills | dump | globals s | download s | restore s | checks s | rebuild s | drill s |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for label, docs in results.items():
            lines.extend(rows(label, docs))
        md = "\n".join(lines) + "\n"
        out = Path(args.results_dir)
        out.mkdir(parents=True, exist_ok=True)
        (out / f"{stamp}-drill.md").write_text(md)
        print(md)
        return 0
    finally:
        bench.CLEANUP.run()


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except bench.BenchError as err:
        bench.say(f"error: {err}")
        sys.exit(1)
