#!/usr/bin/env python3
"""Chaos soak for ringcast's delivery promise (SPEC §3: never a silent gap).

Runs, side by side and for a bounded time:
  - one node with history.dir (the journal), and
  - a two-node cluster on a real nats-server (JetStream),
each with publishers and about 100 subscribers that resume with
Last-Event-ID on every reconnect. Faults are injected at random:
  single node: kill -9 and restart, SIGTERM and restart;
  cluster:     nats-server restart, one node cut off from NATS (a TCP proxy
               that drops its connections), kill -9 of a node and restart;
  both:        stalled readers (a subscriber stops reading for seconds) and
               flapping subscribers (close and reconnect at once).
Every subscriber checks, over its whole life, that ids strictly increase
and that every acknowledged event on its topics either arrived or a
`resync` arrived before the first event after it. The table at the end
counts faults, events checked, silent gaps, duplicates, resyncs, and the
longest delivery stall after each kind of fault. Exit 1 when a silent gap
or a duplicate was seen.

Only 127.0.0.1; every process it starts is stopped at the end.
Usage: scripts/chaos.sh --minutes N   (this file is what it runs)
"""

import argparse
import asyncio
import bisect
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

TOPICS = [f"chaos.t{i}" for i in range(12)]
SUBSCRIBERS_PER_SETUP = 100


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


async def http(port, method, path, body=b"", headers=None, timeout=3.0):
    """One request on a fresh connection: (status, body) or (None, error)."""
    try:
        r, w = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), timeout)
    except (OSError, asyncio.TimeoutError) as e:
        return None, str(e)
    try:
        head = f"{method} {path} HTTP/1.1\r\nHost: chaos\r\nConnection: close\r\nContent-Length: {len(body)}\r\n"
        for k, v in (headers or {}).items():
            head += f"{k}: {v}\r\n"
        w.write(head.encode() + b"\r\n" + body)
        data = await asyncio.wait_for(r.read(), timeout)
        status = int(data[9:12]) if data.startswith(b"HTTP/1.1 ") else None
        return status, data.split(b"\r\n\r\n", 1)[-1]
    except (OSError, asyncio.TimeoutError, ValueError) as e:
        return None, str(e)
    finally:
        w.close()


class Node:
    """One ringcast process on a fixed port, restartable."""

    def __init__(self, binary, name, port, toml, workdir):
        self.binary, self.name, self.port = binary, name, port
        self.config = os.path.join(workdir, f"{name}.toml")
        with open(self.config, "w") as f:
            f.write(toml)
        self.log = open(os.path.join(workdir, f"{name}.log"), "ab")
        self.proc = None

    def start(self):
        env = dict(os.environ, RINGCAST_SERVER_PIN_CORES="false")
        self.proc = subprocess.Popen(
            [self.binary, "--config", self.config, "--listen", f"127.0.0.1:{self.port}", "--workers", "2"],
            stdout=subprocess.DEVNULL, stderr=self.log, env=env)

    async def ready(self, timeout=30):
        until = time.monotonic() + timeout
        while time.monotonic() < until:
            status, _ = await http(self.port, "GET", "/healthz", timeout=1)
            if status == 200:
                return True
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}; see its log")
            await asyncio.sleep(0.05)
        raise RuntimeError(f"{self.name} did not start")

    def signal(self, sig):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)

    async def wait_exit(self, timeout=20):
        until = time.monotonic() + timeout
        while self.proc.poll() is None and time.monotonic() < until:
            await asyncio.sleep(0.02)
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


class Nats:
    def __init__(self, workdir):
        self.port, self.dir = free_port(), os.path.join(workdir, "nats")
        self.proc = None

    def start(self):
        exe = shutil.which("nats-server") or "/usr/sbin/nats-server"
        self.proc = subprocess.Popen(
            [exe, "-a", "127.0.0.1", "-p", str(self.port), "-js", "-sd", self.dir],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    async def wait_port(self):
        for _ in range(300):
            try:
                r, w = await asyncio.open_connection("127.0.0.1", self.port)
                w.close()
                return
            except OSError:
                await asyncio.sleep(0.05)
        raise RuntimeError("nats-server did not start")

    async def restart(self, down_s):
        self.proc.terminate()
        self.proc.wait()
        await asyncio.sleep(down_s)
        self.start()
        await self.wait_port()

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


class Proxy:
    """TCP proxy in front of nats-server for one node; `cut` drops it."""

    def __init__(self, upstream):
        self.upstream, self.port, self.cut = upstream, free_port(), False
        self.conns = []

    async def start(self):
        self.server = await asyncio.start_server(self.serve, "127.0.0.1", self.port)

    async def serve(self, r, w):
        if self.cut:
            w.close()
            return
        try:
            ur, uw = await asyncio.open_connection("127.0.0.1", self.upstream)
        except OSError:
            w.close()
            return
        self.conns += [w, uw]

        async def pipe(a, b):
            try:
                while data := await a.read(65536):
                    b.write(data)
                    await b.drain()
            except (OSError, asyncio.CancelledError):
                pass
            b.close()

        asyncio.ensure_future(pipe(r, uw))
        asyncio.ensure_future(pipe(ur, w))

    def drop(self):
        self.cut = True
        for w in self.conns:
            w.close()
        self.conns = []


class Subscriber:
    """A client that resumes with Last-Event-ID on every reconnect and
    records every frame it reads."""

    def __init__(self, setup, topics, rng):
        self.setup, self.topics, self.rng = setup, topics, rng
        self.frames = []  # (id, t) or ("resync", reason, t)
        self.last = None
        self.duplicates = 0
        self.stall_until = 0.0
        self.flap = False

    async def run(self, stop):
        while not stop.is_set():
            port = self.rng.choice(self.setup.ports())
            try:
                await self.session(port, stop)
            except (OSError, asyncio.IncompleteReadError, asyncio.TimeoutError):
                pass
            # The client's retry: a short, random pause.
            await asyncio.sleep(self.rng.uniform(0.05, 0.3))

    async def session(self, port, stop):
        r, w = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 2)
        sock = w.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8192)
        q = "&".join(f"topic={t}" for t in self.topics)
        head = f"GET /events?{q} HTTP/1.1\r\nHost: chaos\r\n"
        if self.last is not None:
            head += f"Last-Event-ID: {self.last}\r\n"
        w.write((head + "\r\n").encode())
        try:
            status = await asyncio.wait_for(r.readline(), 5)
            if not status.startswith(b"HTTP/1.1 200"):
                return
            while (await asyncio.wait_for(r.readline(), 5)) not in (b"\r\n", b""):
                pass
            ev_id, ev_type, data = None, None, None
            while not stop.is_set():
                if self.flap:
                    self.flap = False
                    return
                pause = self.stall_until - time.monotonic()
                if pause > 0:
                    await asyncio.sleep(pause)
                line = await asyncio.wait_for(r.readline(), 30)
                if not line:
                    return
                line = line.rstrip(b"\n")
                if line == b"":
                    if ev_type == "resync":
                        self.frames.append(("resync", json.loads(data)["reason"], time.monotonic()))
                    elif ev_id is not None and data is not None:
                        self.record(int(ev_id))
                    ev_id, ev_type, data = None, None, None
                elif line.startswith(b":"):
                    continue
                else:
                    field, _, value = line.decode().partition(":")
                    value = value[1:] if value.startswith(" ") else value
                    if field == "id":
                        ev_id = value
                    elif field == "event":
                        ev_type = value
                    elif field == "data":
                        data = value if data is None else data + "\n" + value
        finally:
            w.close()

    def record(self, ev):
        if self.last is not None and ev <= self.last:
            self.duplicates += 1
            return
        self.last = ev
        self.frames.append((ev, time.monotonic()))

    def check(self, acked):
        """(events checked, silent gaps); `acked` is [(id, topic)] sorted.
        An acknowledged event on this subscriber's topics, between the
        first and the last event it read, that it did not read is a silent
        gap unless a resync came between the events around it."""
        events = [(k, f[0]) for k, f in enumerate(self.frames) if f[0] != "resync"]
        if not events:
            return 0, 0
        ids = [i for _, i in events]
        got = set(ids)
        resyncs = [k for k, f in enumerate(self.frames) if f[0] == "resync"]
        mine = [a for a, t in acked if t in self.topics and ids[0] < a <= ids[-1]]
        gaps = 0
        for a in mine:
            if a in got:
                continue
            j = bisect.bisect_left(ids, a)
            lo = events[j - 1][0]
            hi = events[j][0] if j < len(events) else len(self.frames)
            if not any(lo < k < hi for k in resyncs):
                gaps += 1
        return len(mine), gaps


class Setup:
    """One deployment under test: its nodes, publishers, subscribers and
    the faults that may hit it."""

    def __init__(self, name, rng):
        self.name, self.rng = name, rng
        self.nodes, self.acked, self.subs = [], [], []
        self.faults = {}
        self.fault_times = []  # (kind, t)

    def ports(self):
        return [n.port for n in self.nodes]

    async def publisher(self, stop, rate):
        i = 0
        while not stop.is_set():
            topic = self.rng.choice(TOPICS)
            port = self.rng.choice(self.ports())
            status, body = await http(port, "POST", f"/publish?topic={topic}", f"e{i}".encode())
            if status == 200:
                self.acked.append((int(json.loads(body)["id"]), topic))
            i += 1
            await asyncio.sleep(1 / rate)

    def note(self, kind):
        self.faults[kind] = self.faults.get(kind, 0) + 1
        self.fault_times.append((kind, time.monotonic()))

    async def reader_fault(self):
        s = self.rng.choice(self.subs)
        if self.rng.random() < 0.5:
            s.stall_until = time.monotonic() + self.rng.uniform(2, 6)
            self.note("stalled reader")
        else:
            s.flap = True
            self.note("flapping subscriber")

    def stalls(self):
        """Per kind of fault, the longest time any subscriber went without
        an event across it."""
        out = {}
        for kind, t in self.fault_times:
            worst = 0.0
            for s in self.subs:
                times = [f[-1] for f in s.frames if f[0] != "resync"]
                before = [x for x in times if x <= t]
                after = [x for x in times if x > t]
                if before and after:
                    worst = max(worst, after[0] - before[-1])
            out[kind] = max(out.get(kind, 0.0), worst)
        return out


async def single_faults(setup, stop, every):
    node = setup.nodes[0]
    while not stop.is_set():
        await asyncio.sleep(setup.rng.uniform(every / 2, every * 1.5))
        if stop.is_set():
            return
        roll = setup.rng.random()
        if roll < 0.35:
            node.signal(signal.SIGKILL)
            await node.wait_exit()
            setup.note("kill -9 + restart")
            node.start()
            await node.ready()
        elif roll < 0.6:
            node.signal(signal.SIGTERM)
            await node.wait_exit()
            setup.note("SIGTERM + restart")
            node.start()
            await node.ready()
        else:
            await setup.reader_fault()


async def cluster_faults(setup, nats, proxy, stop, every):
    while not stop.is_set():
        await asyncio.sleep(setup.rng.uniform(every / 2, every * 1.5))
        if stop.is_set():
            return
        roll = setup.rng.random()
        if roll < 0.25:
            setup.note("nats-server restart")
            await nats.restart(setup.rng.choice([0.2, 1.0, 3.0]))
        elif roll < 0.45:
            setup.note("node cut off from NATS")
            proxy.drop()
            await asyncio.sleep(setup.rng.uniform(1, 4))
            proxy.cut = False
        elif roll < 0.6:
            node = setup.rng.choice(setup.nodes)
            node.signal(signal.SIGKILL)
            await node.wait_exit()
            setup.note("kill -9 + restart")
            node.start()
            await node.ready()
        else:
            await setup.reader_fault()


async def main(args):
    rng = random.Random(args.seed)
    workdir = tempfile.mkdtemp(prefix="ringcast-chaos-")
    stop = asyncio.Event()
    nats = Nats(workdir)
    single = Setup("single node", random.Random(rng.random()))
    cluster = Setup("2-node cluster", random.Random(rng.random()))
    common = "[sse]\nheartbeat_ms = 1000\nmax_pending_bytes = 65536\nslow_grace_ms = 500\n[server]\nshutdown_timeout_ms = 3000\n"
    try:
        single.nodes.append(Node(args.binary, "single", free_port(),
                                 common + f"[history]\ndir = \"{workdir}/journal\"\n", workdir))
        nats.start()
        await nats.wait_port()
        proxy = Proxy(nats.port)
        await proxy.start()
        for i, url_port in enumerate([nats.port, proxy.port]):
            toml = common + f"[cluster]\nnats_url = \"nats://127.0.0.1:{url_port}\"\npublish_timeout_ms = 1000\n"
            cluster.nodes.append(Node(args.binary, f"cluster{i}", free_port(), toml, workdir))
        for n in single.nodes + cluster.nodes:
            n.start()
        for n in single.nodes + cluster.nodes:
            await n.ready()
        subs, pubs = [], []
        pub_stop = asyncio.Event()
        for setup in (single, cluster):
            for _ in range(SUBSCRIBERS_PER_SETUP):
                topics = setup.rng.sample(TOPICS, setup.rng.randint(1, 3))
                sub = Subscriber(setup, topics, random.Random(setup.rng.random()))
                setup.subs.append(sub)
                subs.append(asyncio.ensure_future(sub.run(stop)))
            for _ in range(2):
                pubs.append(asyncio.ensure_future(setup.publisher(pub_stop, args.rate)))
        every = args.fault_every
        faults = [
            asyncio.ensure_future(single_faults(single, stop, every)),
            asyncio.ensure_future(cluster_faults(cluster, nats, proxy, stop, every)),
        ]
        await asyncio.sleep(args.minutes * 60)
        # A quiet end: no more faults, every process up, no more publishes;
        # the subscribers catch up, then everything stops and is checked.
        for t in faults:
            t.cancel()
        await asyncio.gather(*faults, return_exceptions=True)
        proxy.cut = False
        if nats.proc.poll() is not None:
            nats.start()
            await nats.wait_port()
        for n in single.nodes + cluster.nodes:
            if n.proc is None or n.proc.poll() is not None:
                n.start()
            await n.ready()
        pub_stop.set()
        await asyncio.gather(*pubs, return_exceptions=True)
        for setup in (single, cluster):
            for s in setup.subs:
                s.stall_until = 0.0
        await asyncio.sleep(args.settle)
        stop.set()
        await asyncio.gather(*subs, return_exceptions=True)
    finally:
        for n in single.nodes + cluster.nodes:
            n.stop()
        nats.stop()
    rows, failed = [], False
    for setup in (single, cluster):
        setup.acked.sort()
        checked = gaps = dups = resyncs = 0
        for s in setup.subs:
            c, g = s.check(setup.acked)
            checked, gaps = checked + c, gaps + g
            dups += s.duplicates
            resyncs += sum(1 for f in s.frames if f[0] == "resync")
        failed |= gaps > 0 or dups > 0
        stalls = setup.stalls()
        faults = ", ".join(f"{k} {v}" for k, v in sorted(setup.faults.items())) or "none"
        worst = ", ".join(f"{k} {v:.1f} s" for k, v in sorted(stalls.items())) or "-"
        rows.append((setup.name, sum(setup.faults.values()), faults, len(setup.acked), checked, gaps, dups, resyncs, worst))
    print(f"\nchaos soak: {args.minutes} min, seed {args.seed}, {SUBSCRIBERS_PER_SETUP} subscribers per setup")
    print("| setup | faults | by kind | events acked | events checked | silent gaps | duplicates | resyncs | longest stall after a fault, by kind |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print("| " + " | ".join(str(x) for x in r) + " |")
    shutil.rmtree(workdir, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--minutes", type=float, default=10)
    p.add_argument("--binary", default="target/release/ringcast")
    p.add_argument("--seed", type=int, default=int(time.time()))
    p.add_argument("--rate", type=float, default=40, help="publishes per second per publisher (2 per setup)")
    p.add_argument("--fault-every", type=float, default=6, help="mean seconds between faults per setup")
    p.add_argument("--settle", type=float, default=8, help="quiet seconds at the end before checking")
    sys.exit(asyncio.run(main(p.parse_args())))
