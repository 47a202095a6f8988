#!/usr/bin/env python3
"""pgbak's peak memory while backing up (and uploading) a dump of at least 1 GB.

The fixture would need scale ~30 (and a long HNSW build) to dump 1 GB, so this
builds a plain table of the requested size instead: what is measured is the
byte stream through pgbak (hash, file, multipart upload), whose memory does not
depend on what the bytes are. `--compress none` keeps the dump as large as the
table. Uses the same throwaway cluster and moto server as bench/run.py.

    python3 bench/memory.py [--gib 1.1] [--skip-setup] [--skip-build]
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import run as bench  # noqa: E402


def main(argv) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gib", type=float, default=1.1, help="table size in GiB (default 1.1)")
    bench.add_tool_args(ap)
    args = ap.parse_args(argv)

    tools = bench.setup_tools(args)
    work = Path(bench.tempfile.mkdtemp(prefix="pgbak-mem.", dir=args.work_dir))
    bench.os.chmod(work, 0o755)
    bench.CLEANUP.add(f"removing {work}", lambda: bench.shutil.rmtree(work, ignore_errors=True))
    env = bench.clean_env()
    cluster = bench.Cluster(tools.pg16, work)
    cluster.start()
    moto = bench.Moto(tools.moto, work)
    moto.start()
    bench.subprocess.run([str(tools.aws), "s3", "mb", f"s3://{bench.BUCKET}", "--endpoint-url", moto.url],
                         env=moto.aws_env(env), check=True, capture_output=True)

    rows = int(args.gib * (1 << 30) / 1024)
    bench.psql(tools, cluster, env, f"CREATE DATABASE {bench.DB}", dbname="postgres")
    bench.say(f"creating a {args.gib} GiB table ({rows} rows of 1 KiB)")
    bench.psql(tools, cluster, env,
               f"CREATE TABLE big AS SELECT g, repeat(md5(g::text), 31) AS s "
               f"FROM generate_series(1, {rows}) g")

    base = dict(env, DATABASE_URL=cluster.url(), PGBAK_PG_BIN_DIR=str(tools.pg17))
    with_s3 = moto.aws_env(dict(base, S3_BUCKET=bench.BUCKET, S3_PREFIX="mem/",
                                S3_ENDPOINT_URL=moto.url))
    print("| run | dump | wall s | pgbak peak RSS MiB |")
    print("|---|---|---|---|")
    for name, label, run_env, extra in [
            ("local", "pgbak backup --no-s3", base, ["--no-s3"]),
            ("s3", "pgbak backup (streaming upload to moto)", with_s3, [])]:
        out = work / name
        argv = [str(tools.pgbak), "backup", "--compress", "none", "--keep", "0",
                "--output-dir", str(out / "out"), *extra]
        rc, run = bench.timed(argv, run_env, work / "mem.log", True)
        if rc != 0:
            raise bench.BenchError(f"{label} failed (exit {rc}); see {work / 'mem.log'}")
        dump = bench.dump_in(out)
        size = bench.file_size(dump) / (1 << 30) if dump else 0
        print(f"| {label} | {size:.2f} GiB | {run.wall:.1f} | {run.rss_self_kb / 1024:.1f} |")
    return 0


if __name__ == "__main__":
    try:
        code = main(sys.argv[1:])
    except (bench.BenchError, bench.subprocess.CalledProcessError) as err:
        bench.say(f"error: {err}")
        code = 1
    finally:
        bench.CLEANUP.run()
    sys.exit(code)
