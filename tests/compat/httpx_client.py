"""httpx-sse (a third-party Python SSE client) against ringcast: parsing of
id, event type and multi-line data, then resume with Last-Event-ID that
returns exactly the missed events. Usage: python3 httpx_client.py HOST:PORT"""
import sys

import httpx
from httpx_sse import connect_sse

base = f"http://{sys.argv[1]}"


def check(cond, what):
    if not cond:
        raise SystemExit(f"check failed: {what}")
    print(f"ok - {what}")


def events(source):
    """httpx-sse, unlike the WHATWG algorithm, yields a block that carries no
    data (the `retry:` hint, a heartbeat) as an empty "message"; a real
    client skips those, and so do we."""
    for sse in (source.iter_sse() if hasattr(source, "iter_sse") else source):
        if sse.data == "" and not sse.id:
            continue
        yield sse


def publish(client, topic, data, event=None):
    params = {"topic": topic}
    if event:
        params["event"] = event
    r = client.post(f"{base}/publish", params=params, content=data.encode())
    r.raise_for_status()
    return r.json()["id"]


with httpx.Client(timeout=10) as client:
    received = []
    with connect_sse(client, "GET", f"{base}/events", params={"topic": "py.>"}) as es:
        check(es.response.headers["content-type"].startswith("text/event-stream"), "content type")
        stream = es.iter_sse()
        retry = next(stream)
        check(retry.retry == 2000 and retry.data == "", "retry: hint parsed before any event")
        a = publish(client, "py.a", "hello")
        b = publish(client, "py.b", "one\ntwo\r\nthree", "quote")
        for sse in events(stream):
            received.append(sse)
            if len(received) == 2:
                break
    check(received[0].id == a and received[0].event == "message" and received[0].data == "hello", "plain event")
    check(received[1].id == b and received[1].event == "quote", "id and event type")
    check(received[1].data == "one\ntwo\nthree", "multi-line data")
    check(es.response.is_closed, "stream closed by the client")

    missed = [publish(client, "py.c", f"missed {i}") for i in range(3)]
    publish(client, "other.topic", "not for us")
    resumed = []
    with connect_sse(client, "GET", f"{base}/events", params={"topic": "py.>"},
                     headers={"Last-Event-ID": received[-1].id}) as es:
        live = None
        for sse in events(es):
            resumed.append(sse)
            if len(resumed) == 3:
                live = publish(client, "py.d", "live")
            if len(resumed) == 4:
                break
    check([e.id for e in resumed] == missed + [live], "resume: exactly the missed events, then live")
    check([e.data for e in resumed[:3]] == [f"missed {i}" for i in range(3)], "resumed data")

    with connect_sse(client, "GET", f"{base}/events", params={"topic": "py.>"},
                     headers={"Last-Event-ID": "1"}) as es:
        first = next(events(es))
    check(first.event == "resync" and '"reason"' in first.data, "an id from another epoch gets resync")
print("httpx-sse: all checks passed")
