#!/usr/bin/env python3
"""pgbak benchmark: pgbak against the shell scripts' way of doing the same job.

Installs the tools (scripts/setup.sh --with-awscli), builds pgbak (release), starts a
throwaway PostgreSQL 16 + pgvector cluster and a moto S3 server, loads the
enterprise_agents fixture at each scale, and times the contenders of each step
alternately (round 1: A B C, round 2: B C A, ...), reporting medians and min-max,
file sizes, client CPU and peak RSS. Writes bench/results/<UTC ts>.md and .csv and
checks the targets of the performance issue (PASS / MISS).

    python3 bench/run.py --scales 1,4 --rounds 3

Python standard library only; GNU time (/usr/bin/time) for the process-tree peak RSS.
Everything it starts (cluster, moto, children; --link's namespaces, veths, qdiscs and
relays) is stopped and removed on exit, Ctrl-C and SIGTERM included.
"""

import argparse
import csv
import datetime
import json
import os
import re
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import simlink  # bench/simlink.py: --link's namespaces, veths, tbf and delay relays

REPO = Path(__file__).resolve().parent.parent
GNU_TIME = "/usr/bin/time"
DB = "enterprise_agents"
BUCKET = "pgbak-bench"
S3_PREFIX = "bench/"
JOBS = 4
APP_TABLES = [
    "users", "tenants", "conversations", "messages", "documents", "vector_chunks",
    "audit_logs", "agent_registry", "feedback", "token_budgets", "token_usage_records",
    "routing_decisions", "execution_plans",
]
ALL_SECTIONS = ["backup", "s3", "fanout", "verify", "restore", "download", "gzip"]
DEFAULT_SECTIONS = ["backup", "s3", "verify", "restore"]
NOT_IMPLEMENTED = "n/a (exit 2: not yet implemented)"
MIB = 1024 * 1024
GB = 1e9

# Server settings for a benchmark: durable (fsync on, as in production), with room for
# large restores (no checkpoints forced by WAL volume mid-run). maintenance_work_mem is
# left at the stock 64MB: the scripts never tuned it, pgbak sets its own per session.
SERVER_CONF = """
listen_addresses = '127.0.0.1'
port = {port}
unix_socket_directories = '{sock}'
shared_buffers = 1GB
max_wal_size = 8GB
checkpoint_timeout = 30min
max_connections = 50
fsync = on
log_min_messages = warning
"""


def say(msg: str) -> None:
    stamp = datetime.datetime.now().strftime("%H:%M:%S")
    print(f"bench {stamp} {msg}", file=sys.stderr, flush=True)


class BenchError(Exception):
    """A failure that ends the benchmark (setup, cluster, fixture); contenders never raise it."""


# --------------------------------------------------------------------------------------
# Cleanup: everything started is registered here and torn down once, on any exit path.

class Cleanup:
    def __init__(self) -> None:
        self.actions: list[tuple[str, Callable[[], None]]] = []
        self.running: Optional[subprocess.Popen] = None
        self.done = False

    def add(self, what: str, action: Callable[[], None]) -> None:
        self.actions.append((what, action))

    def run(self) -> None:
        if self.done:
            return
        self.done = True
        try:  # a second Ctrl-C or SIGTERM must not cut the teardown short
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
        except ValueError:
            pass  # not the main thread: signals are not ours to set
        if self.running is not None and self.running.poll() is None:
            kill_group(self.running)
        for what, action in reversed(self.actions):
            try:
                action()
            except Exception as err:  # cleanup goes on whatever one step does
                say(f"cleanup: {what}: {err}")


CLEANUP = Cleanup()


def kill_group(proc: subprocess.Popen, grace: float = 5.0) -> None:
    """SIGTERM the process group the child leads (children run in their own session), then SIGKILL."""
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


class Interrupted(KeyboardInterrupt):
    """SIGTERM, raised like Ctrl-C's KeyboardInterrupt so the same cleanup runs."""


def on_signal(signum, _frame):
    raise Interrupted(f"signal {signum}")


# --------------------------------------------------------------------------------------
# Running one timed command

@dataclass
class Run:
    wall: float
    status: str  # "ok" or why not
    cpu: Optional[float] = None  # user + sys of the client process tree (GNU time)
    rss_tree_kb: Optional[int] = None  # GNU time: largest process of the tree
    rss_self_kb: Optional[int] = None  # pgbak's own VmHWM, sampled
    cpu_self: Optional[float] = None  # pgbak's own user + sys (without pg_dump), sampled
    size: Optional[int] = None
    servers_cpu: Optional[float] = None  # the S3 servers' user + sys during the run
    busy: Optional[float] = None  # the whole machine's busy share of its cores during the run


def read_children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(p) for p in text.split()]


def cpu_seconds(pid: int) -> Optional[float]:
    """utime + stime of one process (its threads included, its children not)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


# The S3 servers' pids: their CPU during a run is counted apart (they share the machine).
SERVER_PIDS: list[int] = []


def machine_busy_jiffies() -> Optional[tuple[int, int]]:
    """(busy, total) jiffies of all cores, from /proc/stat: busy excludes idle and iowait."""
    try:
        fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return sum(fields) - idle, sum(fields)


def servers_cpu_seconds() -> Optional[float]:
    if not SERVER_PIDS:
        return None
    total = 0.0
    for pid in SERVER_PIDS:
        cpu = cpu_seconds(pid)
        if cpu is None:
            return None
        total += cpu
    return total


def vm_hwm_kb(pid: int) -> Optional[int]:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except (OSError, ValueError):
        return None
    return None


class HwmSampler(threading.Thread):
    """Follows the process GNU time started (pgbak) and keeps its VmHWM, the kernel's own
    peak-RSS counter: GNU time's figure is the largest process of the tree, which can be
    pg_dump or pg_restore rather than pgbak."""

    def __init__(self, time_pid: int) -> None:
        super().__init__(daemon=True)
        self.time_pid = time_pid
        self.peak: Optional[int] = None
        self.cpu: Optional[float] = None
        self.stop = threading.Event()

    def run(self) -> None:
        target = None
        while not self.stop.is_set():
            if target is None:
                kids = read_children(self.time_pid)
                target = kids[0] if kids else None
            if target is not None:
                hwm = vm_hwm_kb(target)
                if hwm is not None:
                    self.peak = max(self.peak or 0, hwm)
                cpu = cpu_seconds(target)
                if cpu is not None:
                    self.cpu = cpu
            self.stop.wait(0.02)


def parse_gnu_time(path: Path) -> tuple[Optional[float], Optional[int]]:
    try:
        text = path.read_text()
    except OSError:
        return None, None
    def num(label):
        m = re.search(rf"{re.escape(label)}: ([0-9.]+)", text)
        return float(m.group(1)) if m else None
    user, system = num("User time (seconds)"), num("System time (seconds)")
    rss = num("Maximum resident set size (kbytes)")
    cpu = user + system if user is not None and system is not None else None
    return cpu, int(rss) if rss is not None else None


def timed(argv: list[str], env: dict, log: Path, sample_self: bool) -> tuple[int, Run]:
    """Runs argv under GNU time, its output to `log`. Returns (exit code, Run without size)."""
    time_out = log.with_suffix(".time")
    full = [GNU_TIME, "-v", "-o", str(time_out), *argv]
    busy0, servers0 = machine_busy_jiffies(), servers_cpu_seconds()
    with open(log, "wb") as out:
        start = time.monotonic()
        proc = subprocess.Popen(full, env=env, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
        CLEANUP.running = proc
        sampler = HwmSampler(proc.pid) if sample_self else None
        if sampler:
            sampler.start()
        rc = proc.wait()  # an interrupt leaves CLEANUP.running set: cleanup kills the group
        CLEANUP.running = None
        wall = time.monotonic() - start
    if sampler:
        sampler.stop.set()
        sampler.join()
    busy1, servers1 = machine_busy_jiffies(), servers_cpu_seconds()
    busy = None
    if busy0 and busy1 and busy1[1] > busy0[1]:
        busy = (busy1[0] - busy0[0]) / (busy1[1] - busy0[1])
    servers = servers1 - servers0 if servers0 is not None and servers1 is not None else None
    cpu, rss = parse_gnu_time(time_out)
    return rc, Run(wall=wall, status="ok", cpu=cpu, rss_tree_kb=rss,
                   rss_self_kb=sampler.peak if sampler else None, cpu_self=sampler.cpu if sampler else None,
                   servers_cpu=servers, busy=busy)


def failure_status(rc: int, log: Path) -> str:
    try:
        text = log.read_text(errors="replace")
    except OSError:
        text = ""
    if rc == 2 and "not yet implemented" in text:
        return NOT_IMPLEMENTED
    lines = [l.strip() for l in text.splitlines()
             if l.strip() and not l.startswith("\t") and "Command exited" not in l
             and "Command terminated" not in l]
    last = lines[-1] if lines else "no output"
    return f"failed (exit {rc}: {last[:160]})"


# --------------------------------------------------------------------------------------
# Tools, cluster, S3

@dataclass
class Tools:
    pg16: Path
    pg17: Path
    moto: Path
    aws: Optional[Path]
    pgbak: Path


def read_paths_env(path: Path) -> dict:
    values = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, raw = line.split("=", 1)
        parts = shlex.split(raw)
        values[key] = parts[0] if parts else ""
    return values


def add_tool_args(ap: argparse.ArgumentParser) -> None:
    """The options every benchmark takes for its tools: setup, build, which pgbak, where to work."""
    ap.add_argument("--skip-setup", action="store_true", help="do not run scripts/setup.sh (tools already installed)")
    ap.add_argument("--skip-build", action="store_true", help="do not run cargo build --release")
    ap.add_argument("--pgbak", help="pgbak binary to time (default target/release/pgbak)")
    ap.add_argument("--work-dir", default="/var/tmp", help="parent of the throwaway cluster and dumps (default /var/tmp)")


def setup_tools(args) -> Tools:
    if not args.skip_setup:
        say("scripts/setup.sh --with-awscli")
        subprocess.run([str(REPO / "scripts/setup.sh"), "--with-awscli"], check=True)
    if not args.skip_build:
        say("cargo build --release --locked")
        subprocess.run(["cargo", "build", "--release", "--locked"], cwd=REPO, check=True)
    paths_env = REPO / ".tools/paths.env"
    if not paths_env.exists():
        raise BenchError(f"{paths_env} is missing: run scripts/setup.sh --with-awscli")
    p = read_paths_env(paths_env)
    aws = p.get("PGBAK_TEST_AWS") or ""
    tools = Tools(pg16=Path(p["PGBAK_TEST_PG16_BIN"]), pg17=Path(p["PGBAK_TEST_PG17_BIN"]),
                  moto=Path(p["PGBAK_TEST_MOTO"]), aws=Path(aws) if aws else None,
                  pgbak=Path(args.pgbak) if args.pgbak else REPO / "target/release/pgbak")
    for exe in (tools.pg16 / "postgres", tools.pg17 / "pg_dump", tools.pgbak):
        if not os.access(exe, os.X_OK):
            raise BenchError(f"missing executable: {exe}")
    return tools


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tool_version(exe: Path) -> str:
    try:
        out = subprocess.run([str(exe), "--version"], capture_output=True, text=True).stdout
        return out.strip().split(")")[-1].strip() or out.strip()
    except OSError:
        return "?"


class Cluster:
    """A throwaway PostgreSQL 16 + pgvector cluster: trust auth on 127.0.0.1, socket in its dir."""

    def __init__(self, bin_dir: Path, root: Path) -> None:
        self.bin = bin_dir
        self.dir = root / "cluster"
        self.data = self.dir / "data"
        self.sock = self.dir / "sock"
        self.port = free_port()
        self.as_root = os.geteuid() == 0

    def server_cmd(self, *argv) -> list[str]:
        return ["runuser", "-u", "postgres", "--", *argv] if self.as_root else list(argv)

    def start(self) -> None:
        self.sock.mkdir(parents=True)
        if self.as_root:
            shutil.chown(self.dir, "postgres", "postgres")
            shutil.chown(self.sock, "postgres", "postgres")
        subprocess.run(self.server_cmd(str(self.bin / "initdb"), "-D", str(self.data), "-U", "postgres",
                                       "--auth=trust", "-E", "UTF8", "--locale=C", "--no-instructions"),
                       check=True, stdout=subprocess.DEVNULL, cwd=self.dir)
        with open(self.data / "postgresql.conf", "a") as conf:
            conf.write(SERVER_CONF.format(port=self.port, sock=self.sock))
        CLEANUP.add("stopping the cluster", self.stop)
        subprocess.run(self.server_cmd(str(self.bin / "pg_ctl"), "-D", str(self.data), "-l",
                                       str(self.dir / "server.log"), "-w", "start"),
                       check=True, stdout=subprocess.DEVNULL, cwd=self.dir)

    def stop(self) -> None:
        if (self.data / "postmaster.pid").exists():
            subprocess.run(self.server_cmd(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "immediate",
                                           "-w", "stop"), stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, cwd=self.dir)

    def env(self, base: dict, dbname: str = DB) -> dict:
        env = dict(base)
        env.update(PGHOST="127.0.0.1", PGPORT=str(self.port), PGUSER="postgres", PGDATABASE=dbname)
        return env

    def url(self, dbname: str = DB) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{dbname}"


def clean_env() -> dict:
    """The caller's environment without anything that would point a tool elsewhere."""
    drop = ("PG", "DATABASE_URL", "S3_", "AWS_", "PGBAK_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
    env["LC_ALL"] = "C"
    return env


class Moto:
    """A moto_server on `host` (loopback, or a namespace's address with `prefix` the
    `ip netns exec NS` that starts it there: see bench/simlink.py)."""

    def __init__(self, exe: Path, root: Path, host: str = "127.0.0.1", prefix: tuple = ()) -> None:
        self.exe = exe
        self.host = host
        self.prefix = list(prefix)
        self.port = free_port()
        self.url = f"http://{host}:{self.port}"
        self.log = root / "moto.log"
        self.proc: Optional[subprocess.Popen] = None

    def start(self) -> None:
        out = open(self.log, "wb")
        self.proc = subprocess.Popen([*self.prefix, str(self.exe), "-H", self.host, "-p", str(self.port)],
                                     stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        CLEANUP.add("stopping moto", lambda: kill_group(self.proc, grace=2.0))
        SERVER_PIDS.append(self.proc.pid)
        self.wait_listening("moto_server")

    def wait_listening(self, name: str) -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise BenchError(f"{name} exited; see {self.log}")
            try:
                socket.create_connection((self.host, self.port), timeout=0.5).close()
                break
            except OSError:
                time.sleep(0.2)
        else:
            raise BenchError(f"{name} did not start listening within 30 s")
        if self.prefix:
            # The S3 servers' CPU column reads this pid: it must be the server, which
            # `ip netns exec` becomes by exec, not an `ip` process waiting for it.
            try:
                exe = os.readlink(f"/proc/{self.proc.pid}/exe")
            except OSError as err:
                raise BenchError(f"{name}: reading /proc/{self.proc.pid}/exe: {err}")
            if os.path.basename(exe) == "ip":
                raise BenchError(f"{name}: pid {self.proc.pid} is still `ip netns exec`, not the server")

    def aws_env(self, base: dict) -> dict:
        env = dict(base)
        env.update(AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench-secret",
                   AWS_DEFAULT_REGION="us-east-1", AWS_REGION="us-east-1")
        return env


class S3sFs(Moto):
    """s3s-fs (`cargo install s3s-fs --features binary`), a Rust S3 server on the file system:
    far less CPU per byte than moto, so a fan-out measured on one machine is less the local
    S3 servers' cost. Signed requests only: its bucket is made with the aws CLI."""

    def start(self) -> None:
        data = self.log.parent / f"s3s-data-{self.port}"
        data.mkdir(parents=True, exist_ok=True)
        out = open(self.log, "wb")
        self.proc = subprocess.Popen([*self.prefix, str(self.exe), "--host", self.host, "--port", str(self.port),
                                      "--access-key", "bench", "--secret-key", "bench-secret", str(data)],
                                     stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        CLEANUP.add("stopping s3s-fs", lambda: kill_group(self.proc, grace=2.0))
        SERVER_PIDS.append(self.proc.pid)
        self.wait_listening("s3s-fs")


def psql(tools: Tools, cluster: Cluster, env: dict, sql: str, dbname: str = DB) -> str:
    out = subprocess.run([str(tools.pg17 / "psql"), "-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1",
                          "-d", dbname, "-c", sql], env=cluster.env(env, dbname),
                         capture_output=True, text=True)
    if out.returncode != 0:
        raise BenchError(f"psql failed: {out.stderr.strip()}")
    return out.stdout.strip()


# --------------------------------------------------------------------------------------
# Contenders
#
# pg_restore 17 (needed for pg_dump 17's archives) sends `SET transaction_timeout = 0`, which
# a PostgreSQL 16 server rejects; pg_restore carries on and exits 1 ("errors ignored on
# restore"). The scripts' way below therefore lets the table and alembic checks decide, as
# an operator of those scripts would have had to.

@dataclass
class Contender:
    section: str
    key: str
    label: str
    build: Callable[[Path], tuple[list[str], dict]]  # run dir -> (argv, env)
    pgbak: bool = False
    size: Optional[Callable[[Path], Optional[int]]] = None
    check: Optional[Callable[[Path], Optional[str]]] = None  # untimed, after success: why not ok
    after: Optional[Callable[[Path], None]] = None  # untimed cleanup


def file_size(path: Path) -> Optional[int]:
    return path.stat().st_size if path.exists() else None


def dump_in(run_dir: Path) -> Optional[Path]:
    dumps = sorted((run_dir / "out").glob("*.dump")) + sorted((run_dir / "out").glob("*.dump.age"))
    return dumps[0] if dumps else None


def meta_path_of(dump: Path) -> Path:
    stem = dump.name[: -len(".dump.age")] if dump.name.endswith(".dump.age") else dump.name[: -len(".dump")]
    return dump.with_name(stem + ".meta.json")


def meta_of(dump: Path) -> dict:
    return json.loads(meta_path_of(dump).read_text())


@dataclass
class Ctx:
    args: argparse.Namespace
    tools: Tools
    cluster: Cluster
    moto: Optional[Moto]
    env: dict
    compression: str  # pgbak's choice, read from its meta.json
    source_dump: Path  # made by pgbak once per scale; verify and restore read it
    age_recipient: str  # public key of the bench identity (pgbak keygen)
    age_identity: Path
    sealed_dump: Path  # the same database, encrypted: the encrypted verify and restore read it
    moto2: Optional["Moto"] = None  # a second S3 server: the fanout section's second bucket


def sh(script: str) -> list[str]:
    return ["bash", "-c", "set -euo pipefail\n" + script]


def contenders(ctx: Ctx, sections: list[str]) -> list[Contender]:
    t, c = ctx.tools, ctx.cluster
    pg17 = lambda tool: shlex.quote(str(t.pg17 / tool))
    pg_env = c.env(ctx.env)
    pgbak_env = dict(ctx.env, DATABASE_URL=c.url(), PGBAK_PG_BIN_DIR=str(t.pg17))
    out: list[Contender] = []

    def pg_dump_file(pg_bin: Path, spec: str) -> Callable[[Path], tuple[list[str], dict]]:
        return lambda d: ([str(pg_bin / "pg_dump"), "--format=custom", f"--compress={spec}",
                           "-f", str(d / "x.dump"), DB], pg_env)

    pgbak_backup = lambda extra, env: (lambda d: (
        [str(t.pgbak), "backup", "--output-dir", str(d / "out"), "--keep", "0", *extra], env))
    pgbak_size = lambda d: file_size(dump_in(d)) if dump_in(d) else None

    if "backup" in sections:
        out.append(Contender("backup", "scripts", "scripts' way: pg_dump --compress=9",
                             pg_dump_file(t.pg17, "9"), size=lambda d: file_size(d / "x.dump")))
        out.append(Contender("backup", "raw", f"raw pg_dump --compress={ctx.compression}",
                             pg_dump_file(t.pg17, ctx.compression), size=lambda d: file_size(d / "x.dump")))
        out.append(Contender("backup", "pgbak", "pgbak backup --no-s3",
                             pgbak_backup(["--no-s3"], pgbakenv_no_s3(pgbak_env)), pgbak=True,
                             size=pgbak_size))
        out.append(Contender("backup", "pgbak-age", "pgbak backup --no-s3 --encrypt-to (age)",
                             pgbak_backup(["--no-s3", "--encrypt-to", ctx.age_recipient],
                                          pgbakenv_no_s3(pgbak_env)), pgbak=True, size=pgbak_size))

    if "s3" in sections and ctx.moto and t.aws:
        m = ctx.moto
        aws_env = m.aws_env(pg_env)
        s3_rm = lambda d: subprocess.run(
            [str(t.aws), "s3", "rm", f"s3://{BUCKET}/{S3_PREFIX}", "--recursive", "--only-show-errors",
             "--endpoint-url", m.url], env=m.aws_env(ctx.env), stdout=subprocess.DEVNULL)

        def dump_then_cp(spec: str) -> Callable[[Path], tuple[list[str], dict]]:
            def build(d: Path):
                f = d / "x.dump"
                script = (f"{pg17('pg_dump')} --format=custom --compress={shlex.quote(spec)} -f {shlex.quote(str(f))} {DB}\n"
                          f"{shlex.quote(str(t.aws))} s3 cp {shlex.quote(str(f))} s3://{BUCKET}/{S3_PREFIX}{d.name}.dump "
                          f"--storage-class STANDARD_IA --endpoint-url {m.url} --only-show-errors\n")
                return sh(script), aws_env
            return build

        def uploaded(d: Path) -> Optional[str]:
            dump = dump_in(d)
            if dump is None:
                return "failed (no .dump written)"
            if not meta_of(dump).get("s3"):
                return "n/a (meta.json has no s3: upload not implemented in this build)"
            return None

        s3_env = m.aws_env(pgbak_env)
        s3_env.update(S3_BUCKET=BUCKET, S3_PREFIX=S3_PREFIX, S3_ENDPOINT_URL=m.url)
        out.append(Contender("s3", "scripts", "scripts' way: pg_dump --compress=9, then aws s3 cp",
                             dump_then_cp("9"), size=lambda d: file_size(d / "x.dump"), after=s3_rm))
        out.append(Contender("s3", "raw", f"pg_dump --compress={ctx.compression}, then aws s3 cp",
                             dump_then_cp(ctx.compression), size=lambda d: file_size(d / "x.dump"), after=s3_rm))
        out.append(Contender("s3", "pgbak", "pgbak backup (streaming upload)",
                             pgbak_backup([], s3_env), pgbak=True, size=pgbak_size, check=uploaded,
                             after=s3_rm))

    if "fanout" in sections and ctx.moto2:
        out.extend(fanout_contenders(ctx, pgbak_env, pgbak_size))

    dump = ctx.source_dump
    meta_file = meta_path_of(dump)
    sealed = ctx.sealed_dump
    age_env = dict(pgbakenv_no_s3(pgbak_env), PGBAK_AGE_IDENTITY_FILE=str(ctx.age_identity))
    dropdb = lambda name: (lambda d: subprocess.run(
        [str(t.pg17 / "dropdb"), "--if-exists", "--force", name], env=pg_env,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))

    if "verify" in sections:
        tables = ",".join(f"'{n}'" for n in APP_TABLES)
        script = f"""
F={shlex.quote(str(dump))}
META={shlex.quote(str(meta_file))}
{pg17('pg_restore')} --list "$F" >/dev/null
DB="{DB}_verify_$(date -u +%Y%m%dT%H%M%S)"
{pg17('createdb')} "$DB"
trap '{pg17('dropdb')} --if-exists "$DB"' EXIT
{pg17('pg_restore')} --jobs {JOBS} --no-owner --no-privileges -d "$DB" "$F" || echo "pg_restore exited $? (warnings; the checks decide)"
n=$({pg17('psql')} -XAtq -d "$DB" -c "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public' AND table_name IN ({tables})")
[ "$n" = 13 ] || {{ echo "expected 13 tables, found $n"; exit 1; }}
got=$({pg17('psql')} -XAtq -d "$DB" -c "SELECT version_num FROM alembic_version")
want=$(sed -n 's/.*"alembic_revision": *"\\([^"]*\\)".*/\\1/p' "$META")
[ "$got" = "$want" ] || {{ echo "alembic $got != $want"; exit 1; }}
"""
        out.append(Contender("verify", "scripts", f"scripts' way: createdb, pg_restore --jobs {JOBS}, checks, dropdb",
                             lambda d: (sh(script), pg_env)))
        out.append(Contender("verify", "pgbak", f"pgbak verify --jobs {JOBS}",
                             lambda d: ([str(t.pgbak), "verify", str(dump), "--jobs", str(JOBS)], pgbakenv_no_s3(pgbak_env)),
                             pgbak=True))
        out.append(Contender("verify", "pgbak-age",
                             f"pgbak verify --jobs {JOBS} of the .dump.age (decrypted into /dev/shm first)",
                             lambda d: ([str(t.pgbak), "verify", str(sealed), "--jobs", str(JOBS)], age_env),
                             pgbak=True))
        out.append(Contender("verify", "pgbak-age-1",
                             "pgbak verify --jobs 1 of the .dump.age (streamed into pg_restore)",
                             lambda d: ([str(t.pgbak), "verify", str(sealed), "--jobs", "1"], age_env),
                             pgbak=True))

    if "restore" in sections:
        target_s, target_p = "bench_restore_scripts", "bench_restore_pgbak"
        counts = " UNION ALL ".join(f"SELECT '{n}', count(*) FROM public.{n}" for n in APP_TABLES)
        script = f"""
{pg17('dropdb')} --if-exists --force {target_s}
{pg17('createdb')} {target_s}
{pg17('pg_restore')} --jobs {JOBS} --no-owner --no-privileges -d {target_s} {shlex.quote(str(dump))} || echo "pg_restore exited $? (warnings)"
{pg17('psql')} -XAtq -d {target_s} -c "{counts}"
"""
        out.append(Contender("restore", "scripts", f"scripts' way: createdb, pg_restore --jobs {JOBS}, row counts",
                             lambda d: (sh(script), pg_env), after=dropdb(target_s)))
        p_env = pgbakenv_no_s3(dict(pgbak_env, DATABASE_URL=c.url(target_p)))
        # Into a database of another name than the backup's: said so, as an operator must.
        out.append(Contender("restore", "pgbak", f"pgbak restore --create-db --no-confirm --jobs {JOBS}",
                             lambda d: ([str(t.pgbak), "restore", str(dump), "--create-db", "--no-confirm",
                                         "--allow-other-database", "--jobs", str(JOBS)], p_env),
                             pgbak=True, after=dropdb(target_p)))

    if "download" in sections and ctx.moto and t.aws:
        # verify from the bucket (the RTO of a restore from S3): one GetObject against
        # parallel ranged GETs, the same dump uploaded once with its meta.json.
        m = ctx.moto
        key = f"{S3_PREFIX}download/{dump.name}"
        for src, dst in ((dump, key), (meta_file, key.replace(".dump", ".meta.json"))):
            subprocess.run([str(t.aws), "s3", "cp", str(src), f"s3://{BUCKET}/{dst}", "--only-show-errors",
                            "--endpoint-url", m.url], env=m.aws_env(ctx.env), check=True)
        s3_env = m.aws_env(pgbak_env)
        s3_env.update(S3_ENDPOINT_URL=m.url)
        uri = f"s3://{BUCKET}/{key}"
        for n in (1, 4, 8):
            env = dict(s3_env, S3_DOWNLOAD_CONCURRENCY=str(n))
            what = "one GetObject" if n == 1 else f"{n} ranged GETs of 16 MiB in flight"
            out.append(Contender("download", f"pgbak-get{n}", f"pgbak verify s3://... --jobs {JOBS}: {what}",
                                 lambda d, env=env: ([str(t.pgbak), "verify", uri, "--jobs", str(JOBS)], env),
                                 pgbak=True))

    if "gzip" in sections:
        size = lambda d: file_size(d / "x.dump")
        out.append(Contender("gzip", "pg16-9", "pg_dump 16 --compress=9 (scripts' way, PG 16 client)",
                             pg_dump_file(t.pg16, "9"), size=size))
        for level in (6, 4, 3, 2, 1):
            out.append(Contender("gzip", f"pg16-gzip{level}", f"pg_dump 16 --compress=gzip:{level}",
                                 pg_dump_file(t.pg16, f"gzip:{level}"), size=size))
    return out


def fanout_contenders(ctx: Ctx, pgbak_env: dict, size) -> list[Contender]:
    """Issue 27: one backup to the directory + one bucket, against the directory + the
    same bucket + a second bucket on a second S3 server (`--to`), in one pass. Every run
    writes under a prefix of its own (no aws CLI needed to clean up)."""
    t, m1, m2 = ctx.tools, ctx.moto, ctx.moto2
    servers = getattr(ctx.args, "fanout_servers", None)
    if servers:
        m1, m2 = servers
    s3s = bool(getattr(ctx.args, "s3s_fs", None))
    link = getattr(ctx.args, "link", None)
    notes = (["s3s-fs"] if s3s else []) + ([link.label()] if link else [])
    kind = f" ({', '.join(notes)})" if notes else ""

    def local_only(d: Path):
        # The memory baseline: what pgbak holds with no bucket at all.
        argv = [str(t.pgbak), "backup", "--no-s3", "--output-dir", str(d / "out"), "--keep", "0"]
        return argv, pgbakenv_no_s3(pgbak_env)

    def backup(second: bool):
        def build(d: Path):
            env = m1.aws_env(pgbak_env)
            env.update(S3_BUCKET=BUCKET, S3_PREFIX=f"fanout/{d.name}/", S3_ENDPOINT_URL=m1.url)
            argv = [str(t.pgbak), "backup", "--output-dir", str(d / "out"), "--keep", "0"]
            if s3s:
                env["S3_STORAGE_CLASS"] = "STANDARD"  # s3s-fs refuses the others
            if second:
                klass = "&storage-class=STANDARD" if s3s else ""
                argv += ["--to", f"s3://{BUCKET}/fanout/{d.name}/?endpoint={m2.url}&name=offsite{klass}"]
            return argv, env
        return build

    def both_held(d: Path) -> Optional[str]:
        dump = dump_in(d)
        if dump is None:
            return "failed (no .dump written)"
        return None if meta_of(dump).get("s3") else "failed (meta.json has no s3)"

    return [
        Contender("fanout", "pgbak-0", "pgbak backup: local only (the memory baseline)", local_only,
                  pgbak=True, size=size),
        Contender("fanout", "pgbak-1", f"pgbak backup: local + one bucket{kind}", backup(False), pgbak=True,
                  size=size, check=both_held),
        Contender("fanout", "pgbak-2", f"pgbak backup: local + two buckets on two S3 servers (--to){kind}",
                  backup(True), pgbak=True, size=size, check=both_held),
    ]


def start_fanout_servers(args, tools: Tools, env: dict, work: Path, moto: Optional[Moto]) -> Optional[Moto]:
    """The fan-out's two S3 servers, each with its bucket. Co-located (the default): moto
    (`moto`, shared with the s3 section, and a second one) or two s3s-fs. With --link, two
    new servers, each in its own network namespace behind its own shaped link. Returns the
    s3 section's moto (started here when the fan-out uses it)."""
    links = []
    if args.link:
        try:
            stale = simlink.leftovers()
            if stale:
                say("left by earlier killed runs (remove with ip netns del NAME): " + ", ".join(stale))
            used = simlink.used_subnets()
            subnets = [n for n in range(1, 255) if n not in used][:2]
            if len(subnets) < 2:
                raise simlink.LinkError(f"no free {simlink.SUBNET}.N.0/30 subnet left")
            for i, n in enumerate(subnets, start=1):
                link = simlink.create(i, n, args.link, CLEANUP.add)
                say(f"link {i}: namespace {link.netns}, {link.host_if} {link.host_addr} <-> "
                    f"{link.ns_if} {link.ns_addr}, {' '.join(args.link.qdisc())} on both ends")
                links.append(link)
        except simlink.LinkError as err:
            raise BenchError(str(err))
        args.links = links
    if not args.s3s_fs and not links:
        if moto is None:
            moto = Moto(tools.moto, work)
            say(f"starting moto_server on {moto.url}")
            moto.start()
        second = work / "moto2"
        second.mkdir()
        args.moto2 = Moto(tools.moto, second)
        say(f"starting a second moto_server on {args.moto2.url}")
        args.moto2.start()
        for m in (moto, args.moto2):
            make_bucket(m, BUCKET)
        return moto
    if args.s3s_fs and tools.aws is None:
        raise BenchError("--s3s-fs needs the aws CLI to make its buckets (scripts/setup.sh --with-awscli)")
    servers = []
    for i in (1, 2):
        where = {"host": links[i - 1].ns_addr, "prefix": links[i - 1].exec_prefix()} if links else {}
        if args.s3s_fs:
            (work / f"s3s{i}").mkdir()
            server = S3sFs(Path(args.s3s_fs), work / f"s3s{i}", **where)
        else:
            (work / f"fanout-moto{i}").mkdir()
            server = Moto(tools.moto, work / f"fanout-moto{i}", **where)
        inside = f" in {links[i - 1].netns}" if links else ""
        say(f"starting {'s3s-fs' if args.s3s_fs else 'moto_server'} on {server.url}{inside}")
        server.start()
        if links:
            start_relay(links[i - 1], server, args.link, work / f"relay{i}.log")
        servers.append(server)
    for server in servers:
        if args.s3s_fs:
            res = subprocess.run([str(tools.aws), "s3", "mb", f"s3://{BUCKET}", "--endpoint-url", server.url],
                                 env=server.aws_env(env), capture_output=True, text=True)
            if res.returncode != 0:
                raise BenchError(f"creating the bucket on s3s-fs failed: {res.stderr.strip()}")
        else:
            make_bucket(server, BUCKET)
    args.fanout_servers = servers
    args.moto2 = servers[1]
    return moto


def start_relay(link: "simlink.Link", server: Moto, spec: "simlink.LinkSpec", log: Path) -> None:
    """The link's round trip: a delay relay in the server's namespace, on its own port of the
    namespace's address; the server's URL becomes the relay's. Its CPU is counted with the
    S3 servers' (it is the harness's, on the same cores)."""
    port = free_port()
    argv = [*link.exec_prefix(), *simlink.relay_argv((link.ns_addr, port), (server.host, server.port), spec)]
    out = open(log, "wb")
    proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    CLEANUP.add(f"stopping the delay relay in {link.netns}", lambda: kill_group(proc, grace=2.0))
    SERVER_PIDS.append(proc.pid)
    deadline = time.monotonic() + 30
    while True:
        if proc.poll() is not None:
            raise BenchError(f"the delay relay in {link.netns} exited; see {log}")
        try:
            socket.create_connection((link.ns_addr, port), timeout=0.5).close()
            break
        except OSError:
            if time.monotonic() > deadline:
                raise BenchError(f"the delay relay in {link.netns} did not start listening within 30 s")
            time.sleep(0.1)
    server.url = f"http://{link.ns_addr}:{port}"
    say(f"delay relay {server.url} -> {server.host}:{server.port}, {spec.rtt_us // 2} us each way")


def fanout_setup(args) -> str:
    """Which servers and link the fan-out rows were measured with, for the targets table."""
    kind = "s3s-fs" if getattr(args, "s3s_fs", None) else "moto"
    link = getattr(args, "link", None)
    if link:
        return f"two {kind} servers, each bucket behind a {link.describe()} link"
    return f"two {kind} servers on this machine"


def link_drops(args) -> Optional[str]:
    """`tc -s qdisc` of every link's two ends after the run: a shaped link must not drop."""
    links = getattr(args, "links", None)
    if not links:
        return None
    parts, total = [], 0
    for link in links:
        try:
            stats = simlink.qdisc_stats(link)
        except simlink.LinkError as err:
            parts.append(f"{link.netns}: {err}")
            continue
        for q in stats:
            total += q["drops"]
            parts.append(f"{q['dev']} ({q['side']}) sent {q['bytes'] / MIB:.1f} MiB in {q['packets']} packets, "
                         f"dropped {q['drops']}, overlimits {q['overlimits']}")
    return f"Link qdiscs after the run (`tc -s qdisc`, both contenders): {total} packets dropped in all; " + \
        "; ".join(parts)


def make_bucket(moto: "Moto", bucket: str) -> None:
    """Creates a bucket on moto with a plain PUT (moto does not check signatures)."""
    import urllib.request
    req = urllib.request.Request(f"{moto.url}/{bucket}", method="PUT")
    with urllib.request.urlopen(req, timeout=30) as res:
        if res.status != 200:
            raise BenchError(f"creating bucket {bucket} on {moto.url}: HTTP {res.status}")


def pgbakenv_no_s3(env: dict) -> dict:
    return {k: v for k, v in env.items() if not k.startswith(("S3_", "AWS_"))}


# --------------------------------------------------------------------------------------
# The measurement loop

@dataclass
class Scale:
    scale: str
    db_bytes: int
    load_seconds: float
    runs: dict = field(default_factory=dict)  # (section, key) -> list[Run]
    labels: dict = field(default_factory=dict)  # (section, key) -> label
    order: list = field(default_factory=list)


def load_fixture(ctx_tools: Tools, cluster: Cluster, env: dict, fixture: Path, scale: str) -> tuple[int, float]:
    psql(ctx_tools, cluster, env, f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)", "postgres")
    psql(ctx_tools, cluster, env, f"CREATE DATABASE {DB}", "postgres")
    say(f"loading {fixture.name} at scale {scale}")
    start = time.monotonic()
    res = subprocess.run([str(ctx_tools.pg17 / "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-v", f"scale={scale}",
                          "-d", DB, "-f", str(fixture)], env=cluster.env(env), stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE, text=True)
    if res.returncode != 0:
        raise BenchError(f"loading the fixture failed: {res.stderr.strip()}")
    psql(ctx_tools, cluster, env, "VACUUM ANALYZE")
    psql(ctx_tools, cluster, env, "CHECKPOINT")
    seconds = time.monotonic() - start
    size = int(psql(ctx_tools, cluster, env, f"SELECT pg_database_size('{DB}')"))
    return size, seconds


def measure_one(con: Contender, work: Path, round_no: int) -> Run:
    run_dir = work / "runs" / f"{con.section}-{con.key}-r{round_no}"
    shutil.rmtree(run_dir, ignore_errors=True)
    (run_dir / "out").mkdir(parents=True)
    argv, env = con.build(run_dir)
    log = work / "logs" / f"{run_dir.name}.log"
    rc, run = timed(argv, env, log, con.pgbak)
    if rc != 0:
        run.status = failure_status(rc, log)
        if not run.status.startswith("n/a"):
            tail = log.read_text(errors="replace").splitlines()[-12:]
            say(f"{con.section}/{con.key} failed; end of its output:\n    " + "\n    ".join(tail))
    else:
        if con.size:
            run.size = con.size(run_dir)
        if con.check:
            why = con.check(run_dir)
            if why:
                run.status = why
    if con.after:
        con.after(run_dir)
    shutil.rmtree(run_dir, ignore_errors=True)
    return run


def bench_scale(args, tools: Tools, cluster: Cluster, moto: Optional[Moto], env: dict, scale: str,
                fixture: Path, work: Path) -> Scale:
    db_bytes, load_s = load_fixture(tools, cluster, env, fixture, scale)
    say(f"scale {scale}: database {db_bytes / MIB:.0f} MiB, loaded in {load_s:.1f} s")
    result = Scale(scale=scale, db_bytes=db_bytes, load_seconds=load_s)

    # One untimed pgbak backup: pgbak's compression choice, and the dump verify/restore read;
    # and one encrypted (to a key made by pgbak keygen) for the encrypted verify rows.
    source = work / f"source-{scale}"
    shutil.rmtree(source, ignore_errors=True)
    res = subprocess.run([str(tools.pgbak), "backup", "--no-s3", "--output-dir", str(source), "--keep", "0"],
                         env=dict(env, DATABASE_URL=cluster.url(), PGBAK_PG_BIN_DIR=str(tools.pg17)),
                         capture_output=True, text=True)
    dumps = sorted(source.glob("*.dump"))
    if res.returncode != 0 or not dumps:
        raise BenchError(f"the untimed pgbak backup failed: {res.stderr.strip()}")
    compression = meta_of(dumps[0])["compression"]
    say(f"pgbak chose --compress={compression}; source dump {dumps[0].stat().st_size / MIB:.1f} MiB")
    identity = work / f"age-identity-{scale}.txt"
    if identity.exists():
        identity.unlink()
    res = subprocess.run([str(tools.pgbak), "keygen", "-o", str(identity)], capture_output=True, text=True)
    if res.returncode != 0:
        raise BenchError(f"pgbak keygen failed: {res.stderr.strip()}")
    recipient = res.stdout.strip()
    sealed_dir = work / f"sealed-{scale}"
    shutil.rmtree(sealed_dir, ignore_errors=True)
    res = subprocess.run([str(tools.pgbak), "backup", "--no-s3", "--output-dir", str(sealed_dir), "--keep", "0",
                          "--encrypt-to", recipient],
                         env=dict(env, DATABASE_URL=cluster.url(), PGBAK_PG_BIN_DIR=str(tools.pg17)),
                         capture_output=True, text=True)
    sealed = sorted(sealed_dir.glob("*.dump.age"))
    if res.returncode != 0 or not sealed:
        raise BenchError(f"the untimed encrypted pgbak backup failed: {res.stderr.strip()}")

    ctx = Ctx(args=args, tools=tools, cluster=cluster, moto=moto, env=env, compression=compression,
              source_dump=dumps[0], age_recipient=recipient, age_identity=identity, sealed_dump=sealed[0],
              moto2=getattr(args, "moto2", None))
    cons = contenders(ctx, args.sections)
    for con in cons:
        result.labels[(con.section, con.key)] = con.label
        result.runs[(con.section, con.key)] = []
        result.order.append((con.section, con.key))
    skip: set = set()
    for r in range(args.rounds):
        for section in [s for s in ALL_SECTIONS if s in args.sections]:
            group = [c for c in cons if c.section == section]
            if not group:
                continue
            shift = r % len(group)
            for con in group[shift:] + group[:shift]:  # A B C, then B C A, ...
                k = (con.section, con.key)
                if k in skip:
                    continue
                run = measure_one(con, work, r + 1)
                result.runs[k].append(run)
                extra = f", {run.size / MIB:.1f} MiB" if run.size else ""
                rss = f", pgbak RSS {run.rss_self_kb / 1024:.1f} MiB" if run.rss_self_kb else ""
                say(f"scale {scale} round {r + 1}: {section}/{con.key}: {run.wall:.2f} s{extra}{rss}"
                    + ("" if run.status == "ok" else f" [{run.status}]"))
                if run.status.startswith("n/a"):
                    skip.add(k)  # not implemented: no use asking again
    return result


# --------------------------------------------------------------------------------------
# Summaries, targets, output

@dataclass
class Summary:
    status: str
    median: Optional[float] = None
    lo: Optional[float] = None
    hi: Optional[float] = None
    n: int = 0
    size: Optional[float] = None
    cpu: Optional[float] = None
    cpu_self: Optional[float] = None
    rss_self: Optional[float] = None  # MiB, max over runs
    rss_tree: Optional[float] = None  # MiB, max over runs
    servers_cpu: Optional[float] = None
    busy: Optional[float] = None
    runs: list = field(default_factory=list)


def summarize(runs: list[Run]) -> Summary:
    ok = [r for r in runs if r.status == "ok"]
    if not ok:
        return Summary(status=runs[0].status if runs else "not run")
    walls = [r.wall for r in ok]
    med = lambda xs: statistics.median(xs) if xs else None
    sizes = [r.size for r in ok if r.size is not None]
    cpus = [r.cpu for r in ok if r.cpu is not None]
    cpu_selfs = [r.cpu_self for r in ok if r.cpu_self is not None]
    selfs = [r.rss_self_kb for r in ok if r.rss_self_kb is not None]
    trees = [r.rss_tree_kb for r in ok if r.rss_tree_kb is not None]
    status = "ok" if len(ok) == len(runs) else f"ok ({len(runs) - len(ok)} of {len(runs)} runs failed)"
    servers = [r.servers_cpu for r in ok if r.servers_cpu is not None]
    busy = [r.busy for r in ok if r.busy is not None]
    return Summary(status=status, median=med(walls), lo=min(walls), hi=max(walls), n=len(ok),
                   size=med(sizes), cpu=med(cpus), cpu_self=med(cpu_selfs), rss_self=max(selfs) / 1024 if selfs else None,
                   rss_tree=max(trees) / 1024 if trees else None, runs=walls,
                   servers_cpu=med(servers), busy=med(busy))


def fmt_s(x: Optional[float]) -> str:
    if x is None:
        return ""
    return f"{x:.2f}" if x < 10 else f"{x:.1f}"


def fmt_mib(x: Optional[float]) -> str:
    return "" if x is None else f"{x:.1f}"


@dataclass
class Target:
    name: str
    verdict: str  # PASS, MISS, N/A
    detail: str


# What uploading at all adds to a backup's peak RSS, beside each bucket's part buffers: one
# bucket at scale 4 peaked 38.2 MiB above the backup with no bucket, twice (moto; moto behind
# links), of which 32 MiB are its part buffers (bench/results/20261207T210530Z.md, ...210708Z.md).
S3_ONCE = 6


def evaluate(scales: list[Scale], fanout_with: str = "") -> list[Target]:
    """The targets at the largest scale. `fanout_with` says which S3 servers and link the
    fan-out rows were measured with (see fanout_setup())."""
    targets: list[Target] = []
    scales_sorted = sorted(scales, key=lambda s: float(s.scale))
    big = scales_sorted[-1]
    note = "" if float(big.scale) >= 4 else f" (scale {big.scale} < 4: indicative only)"
    S = lambda sc, sec, key: summarize(sc.runs.get((sec, key), []))

    def ratio_target(name, num, den, limit, what, extra_check=None):
        if num.median is None or den.median is None:
            missing = num.status if num.median is None else den.status
            targets.append(Target(name, "N/A", f"not measured: {missing}"))
            return
        r = num.median / den.median
        ok = r <= limit
        detail = f"{r:.3f}x {what} (limit {limit:.2f}x; {fmt_s(num.median)} s vs {fmt_s(den.median)} s){note}"
        if extra_check:
            ok2, d2 = extra_check()
            ok, detail = ok and ok2, detail + "; " + d2
        targets.append(Target(name, "PASS" if ok else "MISS", detail))

    b_scripts, b_raw, b_pgbak = S(big, "backup", "scripts"), S(big, "backup", "raw"), S(big, "backup", "pgbak")

    def size_check():
        if b_pgbak.size is None or b_scripts.size is None:
            return False, "sizes missing"
        r = b_pgbak.size / b_scripts.size
        return r <= 1.10, f"file {r:.3f}x the scripts' size (limit 1.10x; {b_pgbak.size / MIB:.1f} vs {b_scripts.size / MIB:.1f} MiB)"

    ratio_target("backup time and size vs scripts' --compress=9", b_pgbak, b_scripts, 0.10,
                 "the scripts' time", size_check)
    ratio_target("pgbak's own overhead vs raw pg_dump (same compression)", b_pgbak, b_raw, 1.05,
                 "raw pg_dump's time")
    s_pgbak, s_scripts = S(big, "s3", "pgbak"), S(big, "s3", "scripts")
    ratio_target("backup with S3 upload vs without", s_pgbak, b_pgbak, 1.15, "pgbak backup --no-s3")
    ratio_target("backup with S3 upload vs dump-then-aws-s3-cp", s_pgbak, s_scripts, 0.75,
                 "the scripts' dump + aws s3 cp")
    f1, f2 = S(big, "fanout", "pgbak-1"), S(big, "fanout", "pgbak-2")
    if f1.median is not None or f2.median is not None:
        setup = f"; {fanout_with}" if fanout_with else ""
        ratio_target(f"backup to local + two buckets vs local + one (--to, one pass{setup})", f2, f1, 1.15,
                     "local + one bucket")
        f0 = S(big, "fanout", "pgbak-0")
        if f0.rss_self is not None and f1.rss_self is not None and f2.rss_self is not None:
            # docs/three-two-one.md: uploading at all costs S3_ONCE (the AWS SDK, its TLS
            # roots and HTTP client, the upload's marker task); each bucket then adds
            # (S3_CONCURRENCY + 1) x part size, 32 MiB with the defaults (parts grow only past
            # 1,000 parts: never at these scales), and its connections: 2 MiB at most. The
            # baseline is the backup with no bucket: a bucket whose store answers fast fills
            # fewer buffers alone than beside a second one, so one bucket's peak is no baseline.
            one, two = f0.rss_self + S3_ONCE + 34, f0.rss_self + S3_ONCE + 2 * 34
            targets.append(Target(
                f"memory: S3 costs {S3_ONCE} MiB once, each bucket its part buffers (32 MiB) and "
                "its connections (2 MiB)",
                "PASS" if f1.rss_self <= one and f2.rss_self <= two else "MISS",
                f"peak RSS {f0.rss_self:.1f} MiB local only, {f1.rss_self:.1f} MiB with one bucket "
                f"(bound {one:.1f}), {f2.rss_self:.1f} MiB with two (bound {two:.1f}){setup}"))
    ratio_target("verify vs the scripts' verify", S(big, "verify", "pgbak"), S(big, "verify", "scripts"), 0.5,
                 "the scripts' time")
    ratio_target("age encryption costs <= 10 % of backup wall time", S(big, "backup", "pgbak-age"), b_pgbak, 1.10,
                 "pgbak backup --no-s3 without encryption")

    # Memory: pgbak's own peak while backing up and uploading, at every scale.
    peaks = []
    for sc in scales_sorted:
        for sec in ("backup", "s3"):
            s = S(sc, sec, "pgbak")
            if s.rss_self is not None:
                peaks.append((sc, sec, s))
    if not peaks:
        targets.append(Target("memory: peak RSS <= 64 MiB backing up and uploading", "N/A", "no pgbak run measured"))
    else:
        worst = max(peaks, key=lambda p: p[2].rss_self)
        biggest_dump = max((p[2].size or 0) for p in peaks)
        growth = ", ".join(f"scale {sc.scale} {sec}: {s.rss_self:.1f} MiB" for sc, sec, s in peaks)
        cond = "" if biggest_dump >= 1e9 else (
            f"; largest dump {biggest_dump / MIB:.0f} MiB is below the target's 1 GB"
            " (run python3 bench/memory.py for that)")
        verdict = "PASS" if worst[2].rss_self <= 64 else "MISS"
        targets.append(Target("memory: peak RSS <= 64 MiB backing up and uploading", verdict,
                              f"max {worst[2].rss_self:.1f} MiB ({growth}){cond}"))

    # Linearity: per-GB time of each pgbak step within 20 % across scales.
    if len(scales_sorted) < 2:
        targets.append(Target("time linear in database size (per-GB within 20 %)", "N/A", "needs two or more scales"))
    else:
        parts, ok_all, any_measured = [], True, False
        for sec in ("backup", "s3", "verify", "restore"):
            per_gb = []
            for sc in scales_sorted:
                s = S(sc, sec, "pgbak")
                if s.median is not None:
                    per_gb.append((sc.scale, s.median / (sc.db_bytes / GB)))
            if len(per_gb) < 2:
                continue
            any_measured = True
            vals = [v for _, v in per_gb]
            spread = max(vals) / min(vals) - 1
            ok_all &= spread <= 0.20
            parts.append(f"{sec}: " + " / ".join(f"{v:.2f} s/GB @{k}" for k, v in per_gb) + f" (spread {spread * 100:.0f} %)")
        targets.append(Target("time linear in database size (per-GB within 20 %)",
                              ("PASS" if ok_all else "MISS") if any_measured else "N/A",
                              "; ".join(parts) if parts else "no pgbak step measured at two scales"))
    return targets


def machine_info(tools: Tools) -> dict:
    def read(path):
        try:
            return Path(path).read_text()
        except OSError:
            return ""
    cpu = re.search(r"model name\s*:\s*(.+)", read("/proc/cpuinfo"))
    mem = re.search(r"MemTotal:\s*(\d+)", read("/proc/meminfo"))
    git = lambda *a: subprocess.run(["git", *a], cwd=REPO, capture_output=True, text=True).stdout.strip()
    dirty = " (+ uncommitted changes)" if git("status", "--porcelain", "--untracked-files=no") else ""
    return {
        "cpu": cpu.group(1).strip() if cpu else "?",
        "nproc": str(os.cpu_count()),
        "memory": f"{int(mem.group(1)) / 1024 / 1024:.1f} GiB" if mem else "?",
        "kernel": os.uname().release,
        "pgbak": f"{git('rev-parse', '--short', 'HEAD')}{dirty}",
        "pg_dump (pgbak, raw, scripts)": tool_version(tools.pg17 / "pg_dump"),
        "server": tool_version(tools.pg16 / "postgres") + " + pgvector",
    }


def render(scales: list[Scale], targets: list[Target], info: dict, command: str, started: str,
           load: tuple, finished_load: tuple, notes: tuple = ()) -> str:
    lines = [f"# pgbak benchmark, {started}", "", f"Command: `{command}`", ""]
    lines.append("Machine: " + "; ".join(f"{k}: {v}" for k, v in info.items()))
    lines.append(f"Load average at start {load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f}, "
                 f"at end {finished_load[0]:.2f} / {finished_load[1]:.2f} / {finished_load[2]:.2f} "
                 "(above ~0.5 at start means other work shared the machine).")
    lines.append("")
    lines.append("| scale | DB | step | contender | median s | min-max s | runs | s/GB | x scripts | file MiB | "
                 "pgbak peak RSS MiB | tree max RSS MiB | client CPU s | pgbak CPU s | S3 servers CPU s | "
                 "machine busy | status |")
    lines.append("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for sc in scales:
        db_gb = sc.db_bytes / GB
        for (sec, key) in sc.order:
            s = summarize(sc.runs[(sec, key)])
            base = summarize(sc.runs.get((sec, "scripts"), [])) if sec != "gzip" else summarize(sc.runs.get((sec, "pg16-9"), []))
            x = f"{s.median / base.median:.3f}" if s.median and base.median else ""
            lines.append("| " + " | ".join([
                sc.scale, f"{sc.db_bytes / MIB:.0f} MiB", sec, sc.labels[(sec, key)],
                fmt_s(s.median), f"{fmt_s(s.lo)}-{fmt_s(s.hi)}" if s.median is not None else "",
                str(s.n), f"{s.median / db_gb:.2f}" if s.median is not None else "", x,
                fmt_mib(s.size / MIB if s.size else None), fmt_mib(s.rss_self), fmt_mib(s.rss_tree),
                fmt_s(s.cpu), fmt_s(s.cpu_self), fmt_s(s.servers_cpu),
                f"{s.busy:.0%}" if s.busy is not None else "", s.status]) + " |")
    lines += ["", "Targets (at the largest scale):", "", "| target | verdict | detail |", "|---|---|---|"]
    for t in targets:
        lines.append(f"| {t.name} | {t.verdict} | {t.detail} |")
    lines += ["", "Fixture loads: " + ", ".join(f"scale {sc.scale} in {sc.load_seconds:.1f} s" for sc in scales), ""]
    for note in notes:
        lines += [note, ""]
    return "\n".join(lines)


def write_csv(path: Path, scales: list[Scale]) -> None:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["scale", "db_bytes", "section", "contender", "label", "status", "runs_ok", "median_s", "min_s",
                    "max_s", "s_per_gb", "file_bytes", "pgbak_peak_rss_mib", "tree_max_rss_mib", "client_cpu_s",
                    "pgbak_cpu_s", "all_runs_s", "s3_servers_cpu_s", "machine_busy"])
        for sc in scales:
            for (sec, key) in sc.order:
                s = summarize(sc.runs[(sec, key)])
                w.writerow([sc.scale, sc.db_bytes, sec, key, sc.labels[(sec, key)], s.status, s.n,
                            f"{s.median:.3f}" if s.median is not None else "",
                            f"{s.lo:.3f}" if s.lo is not None else "", f"{s.hi:.3f}" if s.hi is not None else "",
                            f"{s.median / (sc.db_bytes / GB):.3f}" if s.median is not None else "",
                            int(s.size) if s.size else "", fmt_mib(s.rss_self), fmt_mib(s.rss_tree),
                            f"{s.cpu:.2f}" if s.cpu is not None else "",
                            f"{s.cpu_self:.2f}" if s.cpu_self is not None else "",
                            ";".join(f"{x:.3f}" for x in s.runs),
                            f"{s.servers_cpu:.2f}" if s.servers_cpu is not None else "",
                            f"{s.busy:.3f}" if s.busy is not None else ""])


# --------------------------------------------------------------------------------------

def parse_args(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scales", default="1,4", help="fixture scales, comma-separated (default 1,4; 1 is ~100 MB)")
    ap.add_argument("--rounds", type=int, default=3, help="rounds per scale (default 3)")
    ap.add_argument("--sections", default=",".join(DEFAULT_SECTIONS),
                    help=f"steps to time, from {','.join(ALL_SECTIONS)} (default {','.join(DEFAULT_SECTIONS)}; "
                         "gzip compares PG 16's pg_dump gzip levels, pgbak's fallback without zstd)")
    ap.add_argument("--fixture", default=os.environ.get("PGBAK_FIXTURE",
                                                        str(REPO / "fixtures/enterprise_agents.sql")),
                    help="fixture SQL (default fixtures/enterprise_agents.sql, or PGBAK_FIXTURE)")
    ap.add_argument("--results-dir", default=str(REPO / "bench/results"), help="where .md and .csv go")
    ap.add_argument("--s3s-fs", help="the fanout section's two S3 servers are this s3s-fs binary "
                                     "(cargo install s3s-fs --features binary) instead of moto")
    ap.add_argument("--link", metavar="RATE,RTT",
                    help="the fanout section's two S3 servers each in a network namespace behind its own "
                         "veth link (tc tbf for the rate, a delay relay for the round trip), e.g. 250mbit,20ms "
                         "(needs root and iproute2)")
    add_tool_args(ap)
    args = ap.parse_args(argv)
    args.sections = [s.strip() for s in args.sections.split(",") if s.strip()]
    bad = [s for s in args.sections if s not in ALL_SECTIONS]
    if bad:
        ap.error(f"unknown section(s): {', '.join(bad)}")
    try:
        args.scale_list = [str(float(s)).rstrip("0").rstrip(".") if "." in s else s
                           for s in (x.strip() for x in args.scales.split(",")) if s]
        if not args.scale_list or any(float(s) <= 0 for s in args.scale_list):
            raise ValueError
    except ValueError:
        ap.error("--scales takes positive numbers, e.g. 1,4")
    if args.rounds < 1:
        ap.error("--rounds must be at least 1")
    if args.link is not None:
        try:
            args.link = simlink.parse_link(args.link)
        except ValueError as err:
            ap.error(str(err))
        if "fanout" not in args.sections:
            ap.error("--link shapes the fanout section's S3 servers: add fanout to --sections")
    return args


def main(argv) -> int:
    args = parse_args(argv)
    command = "python3 bench/run.py " + " ".join(shlex.quote(a) for a in argv)
    signal.signal(signal.SIGTERM, on_signal)
    started = datetime.datetime.now(datetime.timezone.utc)
    load0 = os.getloadavg()
    fixture = Path(args.fixture)
    if not fixture.is_file():
        raise BenchError(f"fixture not found: {fixture} (set PGBAK_FIXTURE or --fixture)")
    if not os.access(GNU_TIME, os.X_OK):
        raise BenchError(f"{GNU_TIME} (GNU time) is missing: apt-get install time")
    if args.link:
        try:
            simlink.preflight()
        except simlink.LinkError as err:
            raise BenchError(str(err))

    tools = setup_tools(args)
    work = Path(tempfile.mkdtemp(prefix="pgbak-bench.", dir=args.work_dir))
    os.chmod(work, 0o755)
    CLEANUP.add(f"removing {work}", lambda: shutil.rmtree(work, ignore_errors=True))
    (work / "logs").mkdir()
    env = clean_env()

    cluster = Cluster(tools.pg16, work)
    say(f"starting PostgreSQL 16 + pgvector on 127.0.0.1:{cluster.port} in {cluster.dir}")
    cluster.start()
    moto = None
    if "s3" in args.sections or "download" in args.sections:
        if tools.aws is None:
            say("no aws CLI in .tools/paths.env (scripts/setup.sh --with-awscli): skipping the s3 step")
        else:
            moto = Moto(tools.moto, work)
            say(f"starting moto_server on {moto.url}")
            moto.start()
            res = subprocess.run([str(tools.aws), "s3", "mb", f"s3://{BUCKET}", "--endpoint-url", moto.url],
                                 env=moto.aws_env(env), capture_output=True, text=True)
            if res.returncode != 0:
                raise BenchError(f"creating the bucket failed: {res.stderr.strip()}")

    args.moto2 = None
    if "fanout" in args.sections:
        moto = start_fanout_servers(args, tools, env, work, moto)

    scales = []
    for scale in args.scale_list:
        scales.append(bench_scale(args, tools, cluster, moto, env, scale, fixture, work))

    targets = evaluate(scales, fanout_setup(args) if "fanout" in args.sections else "")
    info = machine_info(tools)
    stamp = started.strftime("%Y%m%dT%H%M%SZ")
    notes = []
    if args.link:
        link = args.link
        notes.append(f"Link (--link): each fan-out S3 server in its own network namespace, joined by a veth "
                     f"pair shaped on both ends with `tc qdisc add dev VETH root {' '.join(link.qdisc())}`, "
                     f"behind a delay relay in the namespace holding each direction {link.rtt_us / 2000:g} ms "
                     f"(each bucket behind a {link.describe()} link; the S3 servers' CPU column includes "
                     "the two relays).")
        drops = link_drops(args)
        if drops:
            say(drops)
            notes.append(drops + ".")
    md = render(scales, targets, info, command, started.strftime("%Y-%m-%d %H:%M UTC"), load0, os.getloadavg(),
                tuple(notes))
    results = Path(args.results_dir)
    results.mkdir(parents=True, exist_ok=True)
    (results / f"{stamp}.md").write_text(md)
    write_csv(results / f"{stamp}.csv", scales)
    print(md)
    for t in targets:
        print(f"{t.verdict:4} {t.name}: {t.detail}")
    say(f"wrote {results / (stamp + '.md')} and .csv")
    return 0


if __name__ == "__main__":
    try:
        code = main(sys.argv[1:])
    except KeyboardInterrupt as err:
        say("interrupted: cleaning up")
        code = 143 if isinstance(err, Interrupted) else 130
    except (BenchError, subprocess.CalledProcessError) as err:
        say(f"error: {err}")
        code = 1
    finally:
        CLEANUP.run()
    sys.exit(code)
