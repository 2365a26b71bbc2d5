#!/usr/bin/env python3
"""Bytes on the wire of the demo feed, gzip against identity.

Starts `ringcast --demo` on 127.0.0.1 (one symbol at 300 quotes/s, and the
default 32 symbols), opens an identity and a gzip stream side by side on the
same subscription, reads until each has N quotes, and prints the body bytes
of both and their ratio. Bounded: every read times out, the run stops after
N quotes per stream and the server is stopped on exit.

Usage: scripts/wire-ratio.py [--bin target/release/ringcast] [--quotes 300]
"""
import argparse
import http.client
import os
import socket
import subprocess
import sys
import tempfile
import time
import zlib


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(binary, port, symbols, rate, tmp):
    conf = os.path.join(tmp, f"demo-{port}.toml")
    with open(conf, "w") as f:
        f.write("[demo]\nenabled = true\n")
        if symbols:
            f.write("symbols = [%s]\n" % ", ".join(f'"{s}"' for s in symbols))
        f.write(f"events_per_sec = {rate}\n")
    proc = subprocess.Popen(
        [binary, "--config", conf, "--listen", f"127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 10
    while time.time() < deadline:
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
            c.request("GET", "/readyz")
            if c.getresponse().status == 200:
                return proc
        except OSError:
            pass
        time.sleep(0.05)
    proc.kill()
    sys.exit("wire-ratio: the server did not start")


def open_stream(port, path, gzip):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    headers = {"Accept": "text/event-stream"}
    if gzip:
        headers["Accept-Encoding"] = "gzip"
    c.request("GET", path, headers=headers)
    r = c.getresponse()
    enc = r.getheader("Content-Encoding") or "identity"
    assert (enc == "gzip") == gzip, f"asked gzip={gzip}, got {enc}"
    return r


def measure(port, path, quotes):
    """Both streams side by side: body bytes read until each has `quotes` events."""
    out = {}
    streams = {g: open_stream(port, path, g) for g in (False, True)}
    for gzip, r in streams.items():
        dec = zlib.decompressobj(16 + zlib.MAX_WBITS) if gzip else None
        wire, plain, events = 0, b"", 0
        first = None
        while events < quotes:
            chunk = r.read1(65536)
            if not chunk:
                sys.exit("wire-ratio: a stream ended early")
            wire += len(chunk)
            text = dec.decompress(chunk) if dec else chunk
            plain += text
            n = plain.count(b"\ndata:") + plain.startswith(b"data:")
            if first is None and n > 0:
                first = wire  # bytes up to the first quote: head of stream
            events = n
        out[gzip] = (wire, len(plain), events)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default="target/release/ringcast")
    ap.add_argument("--quotes", type=int, default=300)
    a = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for label, symbols, path in (
            ("one topic (quotes.NASDAQ.AAPL at 300/s): shared compressor",
             ["quotes.NASDAQ.AAPL"], "/events?topic=quotes.NASDAQ.AAPL"),
            ("quotes.> (32 symbols, 300/s): the stream's own compressor",
             None, "/events?topic=quotes.%3E"),
        ):
            port = free_port()
            proc = start(a.bin, port, symbols, 300, tmp)
            try:
                m = measure(port, path, a.quotes)
            finally:
                proc.terminate()
                proc.wait(timeout=10)
            (iw, ip, ie), (gw, gp, ge) = m[False], m[True]
            rows.append((label, ie, iw, gw, gw / iw * ip / gp))
    print(f"| subscription | quotes | identity bytes | gzip bytes | gzip / identity |")
    print(f"|---|---|---|---|---|")
    for label, n, iw, gw, r in rows:
        print(f"| {label} | {n} | {iw} | {gw} | {r:.3f} |")


if __name__ == "__main__":
    main()
