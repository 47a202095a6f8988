"""Simulated network links for bench/run.py --link.

On one machine the fan-out benchmark's S3 servers answer over loopback, with no
bandwidth limit and no delay, so a second bucket costs only CPU (which the 2
cores do not have to spare). A bucket in production sits across a network: a
bandwidth limit and a round trip. Here each S3 server gets its own network
namespace, joined to the host by a veth pair, so two buckets are two independent
links, as two regions would be:

- the rate: a tbf qdisc on both ends of the veth (uploads leave the host's end,
  answers the namespace's), with a queue large enough never to drop;
- the round trip: a delay relay in the namespace (`python3 simlink.py relay`, the
  address the benchmark's URLs name) that holds every chunk of bytes for half the
  round trip in each direction before passing it on to the S3 server beside it.

Why not netem (`delay` + `rate` in one qdisc, per packet): the kernels this was
built on (Firecracker guests, 6.18) have no sch_netem (CONFIG_NET_SCH_NETEM is
not set) and cannot load modules; tbf is built in. The relay delays requests and
answers, which is what an S3 client waits for; unlike netem it does not delay TCP's
own handshake and acknowledgements (the client's TCP talks to the relay across the
shaped veth), so TCP's window growth does not see the round trip.

Needs root and iproute2 (`ip`, `tc`). Python standard library only. Every
namespace, veth and qdisc is registered for removal before it is created (the
removal skips what does not exist), so an interrupt at any point leaves nothing.
Names carry the benchmark's pid: a run killed with SIGKILL cannot collide with
the next one (`ip netns list | grep pgbak-bench-` shows such leftovers).
"""

import asyncio
import json
import os
import re
import shutil
import socket
import subprocess
import sys
from dataclasses import dataclass
from typing import Callable

IP = shutil.which("ip") or "/usr/sbin/ip"
TC = shutil.which("tc") or "/usr/sbin/tc"
SUBNET = "10.231"  # 10.231.N.0/30 per link: .1 the host's end, .2 the namespace's
TBF_LIMIT = 64 * 1024 * 1024  # bytes tbf may queue: far above what TCP keeps in flight, so no drops
RELAY_CHUNK = 256 * 1024  # the relay's reads
RELAY_QUEUE = 256  # chunks held per direction (64 MiB) before the relay stops reading

_RATE = re.compile(r"^(\d+(?:\.\d+)?)(bit|kbit|mbit|gbit)$")
_RTT = re.compile(r"^(\d+(?:\.\d+)?)(us|ms|s)$")
_RTT_US = {"us": 1, "ms": 1000, "s": 1000000}
_RATE_BIT = {"bit": 1, "kbit": 1000, "mbit": 1000 ** 2, "gbit": 1000 ** 3}  # tc's units: decimal


class LinkError(Exception):
    """A link could not be set up (no root, no iproute2, a command refused)."""


@dataclass(frozen=True)
class LinkSpec:
    rate: str  # a tc rate in bits per second, as given: "250mbit"
    rtt_us: int  # the round trip; each direction gets half

    @property
    def rtt_ms(self) -> str:
        return f"{self.rtt_us / 1000:g}"

    def label(self) -> str:
        """For a contender's label: "link 250mbit, 20ms RTT"."""
        return f"link {self.rate}, {self.rtt_ms}ms RTT"

    def describe(self) -> str:
        """For the targets table: "250mbit, 20 ms RTT"."""
        return f"{self.rate}, {self.rtt_ms} ms RTT"

    @property
    def bits_per_second(self) -> int:
        m = _RATE.match(self.rate)
        return round(float(m.group(1)) * _RATE_BIT[m.group(2)]) if m else 0

    def qdisc(self) -> list[str]:
        """tc's qdisc spec for each end of the veth. The bucket is at least 128 KiB (a GSO
        packet on veth is up to 64 KiB; tbf cannot pass a packet larger than its bucket) or
        4 ms at the rate, whichever is larger."""
        burst = max(128 * 1024, self.bits_per_second // 8 // 250)
        return ["tbf", "rate", self.rate, "burst", str(burst), "limit", str(TBF_LIMIT)]


def parse_link(text: str) -> LinkSpec:
    """`RATE,RTT` as tc spells them, e.g. `250mbit,20ms`. Rates in bits only (tc's
    `mbps` means megabytes, an easy factor-8 mistake). Raises ValueError. Pure."""
    parts = [p.strip().lower() for p in text.split(",")]
    if len(parts) != 2:
        raise ValueError(f"--link takes RATE,RTT (e.g. 250mbit,20ms), not {text!r}")
    rate, rtt = parts
    m = _RATE.match(rate)
    if not m or float(m.group(1)) <= 0:
        raise ValueError(f"--link rate {rate!r}: a positive number of bit, kbit, mbit or gbit (e.g. 250mbit)")
    m = _RTT.match(rtt)
    if not m:
        raise ValueError(f"--link round trip {rtt!r}: a number of us, ms or s (e.g. 20ms)")
    return LinkSpec(rate=rate, rtt_us=round(float(m.group(1)) * _RTT_US[m.group(2)]))


@dataclass
class Link:
    netns: str
    host_if: str
    ns_if: str
    host_addr: str
    ns_addr: str

    def exec_prefix(self) -> list[str]:
        """argv prefix that runs a command in the namespace. `ip netns exec` execs the
        command in its own process (no fork), so the pid Popen returns is the command's."""
        return [IP, "netns", "exec", self.netns]


def preflight() -> None:
    if os.geteuid() != 0:
        raise LinkError("--link needs root (ip netns, tc)")
    for exe in (IP, TC):
        if not os.access(exe, os.X_OK):
            raise LinkError(f"--link needs iproute2: {exe} is missing (apt-get install iproute2)")


def _run(argv: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True)


def _must(argv: list[str]) -> None:
    res = _run(argv)
    if res.returncode != 0:
        raise LinkError(f"{' '.join(argv)}: {res.stderr.strip() or f'exit {res.returncode}'}")


def _netns_exists(name: str) -> bool:
    res = _run([IP, "netns", "list"])
    return any(line.split()[0] == name for line in res.stdout.splitlines() if line.strip())


def _dev_exists(dev: str, netns: str = "") -> bool:
    argv = [IP, *(["-n", netns] if netns else []), "link", "show", "dev", dev]
    return _run(argv).returncode == 0


def used_subnets() -> set[int]:
    """The N of every 10.231.N.x address on this host: another run's links (or a crashed one's)."""
    res = _run([IP, "-j", "-4", "addr", "show"])
    used = set()
    try:
        for dev in json.loads(res.stdout or "[]"):
            for a in dev.get("addr_info", []):
                local = a.get("local", "")
                if local.startswith(SUBNET + "."):
                    used.add(int(local.split(".")[2]))
    except (ValueError, AttributeError):
        pass
    return used


def leftovers() -> list[str]:
    """Namespaces of earlier benchmark runs whose process is gone (killed with SIGKILL)."""
    res = _run([IP, "netns", "list"])
    stale = []
    for line in res.stdout.splitlines():
        m = re.match(r"^(pgbak-bench-(\d+)-\d+)\b", line.strip())
        if m and not os.path.exists(f"/proc/{m.group(2)}"):
            stale.append(m.group(1))
    return stale


def create(index: int, subnet: int, spec: LinkSpec, register: Callable[[str, Callable[[], None]], None]) -> Link:
    """Namespace `pgbak-bench-<pid>-<index>` with loopback up, a veth pair to the host on
    10.231.<subnet>.0/30, both ends shaped by tbf at the spec's rate. Each object's removal is registered
    (before it is created) with `register`; it skips what does not exist."""
    pid = os.getpid()
    link = Link(netns=f"pgbak-bench-{pid}-{index}", host_if=f"pbb{pid}h{index}", ns_if=f"pbb{pid}n{index}",
                host_addr=f"{SUBNET}.{subnet}.1", ns_addr=f"{SUBNET}.{subnet}.2")
    ns, h, n = link.netns, link.host_if, link.ns_if

    def del_netns():
        if _netns_exists(ns):
            _must([IP, "netns", "del", ns])  # takes the veth end inside with it

    def del_veth():
        if _dev_exists(h):
            _must([IP, "link", "del", "dev", h])  # and its peer, if still on the host

    def del_qdisc(dev: str, netns: str = ""):
        prefix = [IP, "netns", "exec", netns] if netns else []

        def action():
            if (netns and not _netns_exists(netns)) or not _dev_exists(dev, netns):
                return
            shown = _run([*prefix, TC, "-j", "qdisc", "show", "dev", dev, "root"])
            try:
                present = any(q.get("kind") == "tbf" for q in json.loads(shown.stdout or "[]"))
            except ValueError:
                present = True  # unsure: try, and say if it fails
            if present:
                _must([*prefix, TC, "qdisc", "del", "dev", dev, "root"])
        return action

    register(f"removing network namespace {ns}", del_netns)
    _must([IP, "netns", "add", ns])
    _must([IP, "-n", ns, "link", "set", "lo", "up"])
    register(f"removing veth {h}", del_veth)
    _must([IP, "link", "add", h, "type", "veth", "peer", "name", n, "netns", ns])
    _must([IP, "addr", "add", f"{link.host_addr}/30", "dev", h])
    _must([IP, "link", "set", h, "up"])
    _must([IP, "-n", ns, "addr", "add", f"{link.ns_addr}/30", "dev", n])
    _must([IP, "-n", ns, "link", "set", n, "up"])
    register(f"removing the tbf qdisc on {h}", del_qdisc(h))
    _must([TC, "qdisc", "add", "dev", h, "root", *spec.qdisc()])
    register(f"removing the tbf qdisc on {n} in {ns}", del_qdisc(n, ns))
    _must([*link.exec_prefix(), TC, "qdisc", "add", "dev", n, "root", *spec.qdisc()])
    return link


def qdisc_stats(link: Link) -> list[dict]:
    """`tc -s qdisc` of both ends: [{"dev", "side", "bytes", "packets", "drops", "overlimits"}]."""
    out = []
    for side, dev, prefix in (("host", link.host_if, []), ("namespace", link.ns_if, link.exec_prefix())):
        res = _run([*prefix, TC, "-j", "-s", "qdisc", "show", "dev", dev])
        try:
            q = next(q for q in json.loads(res.stdout) if q.get("kind") == "tbf")
        except (ValueError, StopIteration):
            raise LinkError(f"no tbf qdisc on {dev}: {res.stderr.strip()}")
        out.append({"dev": dev, "side": side, "bytes": q.get("bytes", 0), "packets": q.get("packets", 0),
                    "drops": q.get("drops", 0), "overlimits": q.get("overlimits", 0)})
    return out


# --------------------------------------------------------------------------------------
# The delay relay: runs in the namespace, in front of the S3 server.

def relay_argv(listen: tuple[str, int], target: tuple[str, int], spec: LinkSpec) -> list[str]:
    """The command that runs the relay (prefix it with the link's exec_prefix())."""
    return [sys.executable, os.path.abspath(__file__), "relay", f"{listen[0]}:{listen[1]}",
            f"{target[0]}:{target[1]}", str(spec.rtt_us // 2)]


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay: float, abort) -> None:
    """Copies reader to writer, each chunk held until `delay` seconds after it arrived (a
    delay line: chunks in flight overlap, so the delay does not cap the throughput)."""
    loop = asyncio.get_running_loop()
    line: asyncio.Queue = asyncio.Queue(maxsize=RELAY_QUEUE)

    async def feed():
        while True:
            data = await reader.read(RELAY_CHUNK)
            await line.put((loop.time() + delay, data))
            if not data:
                return

    async def drain():
        while True:
            due, data = await line.get()
            wait = due - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            if not data:
                if writer.can_write_eof():
                    writer.write_eof()
                return
            writer.write(data)
            await writer.drain()

    try:
        await asyncio.gather(feed(), drain())
    except (OSError, asyncio.IncompleteReadError):
        abort()  # one side reset: drop both, as a broken path would


async def _relay_one(client_r, client_w, target: tuple[str, int], delay: float) -> None:
    try:
        server_r, server_w = await asyncio.open_connection(*target)
    except OSError:
        client_w.transport.abort()
        return
    for w in (client_w, server_w):
        sock = w.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # no Nagle on top of the delay

    def abort():
        client_w.transport.abort()
        server_w.transport.abort()

    await asyncio.gather(_pump(client_r, server_w, delay, abort), _pump(server_r, client_w, delay, abort))
    client_w.close()
    server_w.close()


def _host_port(text: str) -> tuple[str, int]:
    host, port = text.rsplit(":", 1)
    return host, int(port)


def relay_main(argv: list[str]) -> None:
    """simlink.py relay LISTEN_HOST:PORT TARGET_HOST:PORT DELAY_US"""
    listen, target, delay = _host_port(argv[0]), _host_port(argv[1]), int(argv[2]) / 1e6

    async def serve():
        server = await asyncio.start_server(lambda r, w: _relay_one(r, w, target, delay), *listen,
                                            reuse_address=True)
        async with server:
            await server.serve_forever()

    asyncio.run(serve())


if __name__ == "__main__" and sys.argv[1:2] == ["relay"]:
    relay_main(sys.argv[2:])
elif __name__ == "__main__":
    # Table test of the one pure function: python3 bench/simlink.py
    for text, want in [("250mbit,20ms", ("250mbit", 20000)), ("1gbit, 0.5ms", ("1gbit", 500)),
                       ("100MBIT,1s", ("100mbit", 1000000)), ("10kbit,0ms", ("10kbit", 0))]:
        got = parse_link(text)
        assert (got.rate, got.rtt_us) == want, (text, got)
    for bad in ["250mbit", "250mbps,20ms", "0mbit,20ms", "250mbit,20", "fast,20ms", "250mbit,20ms,1"]:
        try:
            parse_link(bad)
        except ValueError:
            continue
        raise AssertionError(f"accepted {bad!r}")
    spec = parse_link("250mbit,20ms")
    assert spec.label() == "link 250mbit, 20ms RTT" and spec.describe() == "250mbit, 20 ms RTT"
    assert spec.qdisc() == ["tbf", "rate", "250mbit", "burst", "131072", "limit", str(64 * 1024 * 1024)]
    assert parse_link("10gbit,1ms").qdisc()[4] == "5000000"
    print("ok")
