#!/usr/bin/env python3
"""`pgbak check` against a bucket holding a fleet: 500 database groups x 14 backups.

Fills a moto S3 server (the one the tests and bench/run.py use) with synthetic
backups, each a small `.dump` object and a real-shaped `.meta.json`, in two
buckets: one where every backup passed a nightly verify (what `cron --verify`
leaves: check reads the newest 2 meta.json of each group), and one where none
was ever verified (check reads back to the edge of --max-verified-age, 8 days:
9 of each group's 14, the worst case). Then times
`pgbak check --s3 --json` on each, alternately, and prints a Markdown table.
Target: under 10 s for 500 x 14.

    python3 bench/check.py [--groups 500] [--backups 14] [--rounds 3] [--skip-setup] [--skip-build]

Python standard library only; GNU time (/usr/bin/time) for CPU and peak RSS.
"""

import argparse
import datetime
import hashlib
import http.client
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import run as bench  # noqa: E402

PREFIX = "fleet/pg/"
# One bucket per case, as a fleet's bucket holds one fleet (moto's listing cost grows with the bucket).
BUCKETS = {"verified": "pgbak-check-verified", "never verified": "pgbak-check-unverified"}


def meta_json(bucket: str, database: str, at: datetime.datetime, verified: bool,
              dump: bytes) -> tuple[str, bytes]:
    stem = f"{database}_full_{at.strftime('%Y%m%dT%H%M%S')}"
    stamp = at.strftime("%Y-%m-%dT%H:%M:%SZ")
    meta = {
        "format_version": 1, "database": database, "mode": "full", "label": None,
        "file": f"{stem}.dump", "size_bytes": len(dump), "sha256": hashlib.sha256(dump).hexdigest(),
        "started_at": stamp, "finished_at": stamp, "duration_seconds": 4.8,
        "compression": "zstd:1", "server_version": "16.14", "pg_dump_version": "17.10",
        "alembic_revision": "013", "extensions": {"plpgsql": "1.0", "vector": "0.8.5"},
        "tables": [{"schema": "public", "name": t, "rows": 1000} for t in bench.APP_TABLES],
        "host": "db-host-01", "pgbak_version": "0.1.0",
        "s3": {"bucket": bucket, "key": f"{PREFIX}{stem}.dump", "storage_class": "STANDARD_IA"},
    }
    if verified:
        meta["verification"] = {"verified_at": stamp, "passed": True, "pgbak_version": "0.1.0"}
    return stem, json.dumps(meta, indent=2).encode()


def objects(bucket: str, groups: int, backups: int, verified: bool):
    now = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
    dump = b"PGDMP" + b"\0" * 59
    for g in range(groups):
        database = f"tenant_{g:04d}"
        for d in range(backups):
            at = now - datetime.timedelta(hours=2, days=d)
            stem, meta = meta_json(bucket, database, at, verified, dump)
            yield f"/{bucket}/{PREFIX}{stem}.dump", dump
            yield f"/{bucket}/{PREFIX}{stem}.meta.json", meta


def fill(port: int, items: list, threads: int = 8) -> None:
    """PUTs every (path, body) with a few keep-alive connections (moto takes unsigned requests)."""
    lock = threading.Lock()
    it = iter(items)
    errors: list[str] = []

    def worker() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        while True:
            with lock:
                nxt = next(it, None)
            if nxt is None or errors:
                break
            key, body = nxt
            conn.request("PUT", key, body=body)
            resp = conn.getresponse()
            resp.read()
            if resp.status != 200:
                errors.append(f"PUT {key}: HTTP {resp.status}")
        conn.close()

    pool = [threading.Thread(target=worker) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    if errors:
        raise bench.BenchError(errors[0])


def main(argv) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--groups", type=int, default=500)
    ap.add_argument("--backups", type=int, default=14)
    ap.add_argument("--rounds", type=int, default=3)
    bench.add_tool_args(ap)
    args = ap.parse_args(argv)

    tools = bench.setup_tools(args)
    work = Path(tempfile.mkdtemp(prefix="pgbak-check.", dir=args.work_dir))
    bench.CLEANUP.add(f"removing {work}", lambda: bench.shutil.rmtree(work, ignore_errors=True))
    env = bench.clean_env()
    moto = bench.Moto(tools.moto, work)
    moto.start()
    for name, bucket in BUCKETS.items():
        conn = http.client.HTTPConnection("127.0.0.1", moto.port, timeout=30)
        conn.request("PUT", f"/{bucket}")
        if conn.getresponse().status != 200:
            raise bench.BenchError(f"creating the bucket {bucket} failed")
        conn.close()
        items = list(objects(bucket, args.groups, args.backups, name == "verified"))
        started = bench.time.monotonic()
        fill(moto.port, items)
        bench.say(f"{name}: {len(items)} objects in s3://{bucket}/{PREFIX} in "
                  f"{bench.time.monotonic() - started:.1f} s")

    runs: dict[str, list[bench.Run]] = {name: [] for name in BUCKETS}
    reads: dict[str, str] = {}
    names = list(BUCKETS)
    for round_no in range(args.rounds):
        for name in names[round_no % 2:] + names[:round_no % 2]:
            run_env = moto.aws_env(dict(env, S3_BUCKET=BUCKETS[name], S3_PREFIX=PREFIX,
                                        S3_ENDPOINT_URL=moto.url, AWS_EC2_METADATA_DISABLED="true"))
            log = work / f"check-{round_no}-{name.replace(' ', '-')}.log"
            argv = [str(tools.pgbak), "check", "-v", "--s3", "--json",
                    "--backup-dir", str(work / "none")]
            rc, run = bench.timed(argv, run_env, log, sample_self=True)
            text = log.read_text(errors="replace")
            verified = name == "verified"
            want_rc, want_status = (0, "ok") if verified else (1, "unverified")
            if rc != want_rc:
                raise bench.BenchError(f"pgbak check exited {rc}: {text[-2000:]}")
            groups = text.count(f'"status": "{want_status}"')
            if groups != args.groups:
                raise bench.BenchError(f"{name}: {groups} groups {want_status}, expected {args.groups}")
            for line in text.splitlines():
                if "DEBUG" in line and ("listed" in line or "meta.json file(s)" in line):
                    bench.say(f"  {line.strip()}")
            line = next((l for l in text.splitlines() if "meta.json file(s)" in l), "")
            reads[name] = line.split("read ", 1)[-1].split(" meta.json")[0] if line else "?"
            runs[name].append(run)
            bench.say(f"round {round_no + 1} {name}: {run.wall:.2f} s")

    total = args.groups * args.backups
    load = os.getloadavg()
    print(f"\n`pgbak check --s3` over {args.groups} groups x {args.backups} backups "
          f"({2 * total} objects per bucket), moto on 127.0.0.1, {args.rounds} rounds, "
          f"binary {tools.pgbak}, {os.cpu_count()} cores, load average at end "
          f"{load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f}\n")
    print("| bucket | meta.json read | median s | min-max s | pgbak CPU s | peak RSS MiB | target < 10 s |")
    print("|---|---|---|---|---|---|---|")
    for name in BUCKETS:
        walls = [r.wall for r in runs[name]]
        cpu = statistics.median([r.cpu_self for r in runs[name] if r.cpu_self is not None] or [0])
        rss = max(r.rss_self_kb or 0 for r in runs[name]) / 1024
        verdict = "PASS" if statistics.median(walls) < 10 else "MISS"
        print(f"| {name} | {reads[name]} | {statistics.median(walls):.2f} | "
              f"{min(walls):.2f}-{max(walls):.2f} | {cpu:.2f} | {rss:.1f} | {verdict} |")
    return 0


if __name__ == "__main__":
    import signal
    signal.signal(signal.SIGTERM, bench.on_signal)
    try:
        sys.exit(main(sys.argv[1:]))
    except bench.BenchError as err:
        bench.say(f"error: {err}")
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)
    finally:
        bench.CLEANUP.run()
