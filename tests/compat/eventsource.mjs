// Node's `eventsource` package (v5, WHATWG EventSource) against ringcast:
// parsing (lastEventId, type, multi-line data), automatic reconnect with
// Last-Event-ID after the stream is cut, exactly the missed events, and
// the server's retry: hint. Usage: node eventsource.mjs HOST:PORT RETRY_MS
import { EventSource } from "eventsource";
import { startProxy, publish, check, deadline } from "./proxy.mjs";

const [host, port] = process.argv[2].split(":");
const retryMs = Number(process.argv[3]);
const direct = `http://${host}:${port}`;
const proxy = await startProxy(host, Number(port));
const viaProxy = `http://127.0.0.1:${proxy.port}`;

const received = [];
let waiters = [];
const es = new EventSource(`${viaProxy}/events?topic=compat.${encodeURIComponent(">")}`);
let opens = 0;
const openTimes = [];
es.onopen = () => { opens++; openTimes.push(Date.now()); };
const onEvent = (ev) => {
  received.push({ id: ev.lastEventId, type: ev.type, data: ev.data });
  waiters = waiters.filter((w) => !w());
};
es.addEventListener("quote", onEvent);
es.addEventListener("message", onEvent);
const waitFor = (n, what) => Promise.race([
  new Promise((resolve) => { const w = () => received.length >= n && (resolve(), true); if (!w()) waiters.push(w); }),
  deadline(10000, what),
]);
const waitOpen = (n) => Promise.race([
  new Promise((resolve) => { const t = setInterval(() => { if (opens >= n) { clearInterval(t); resolve(); } }, 10); }),
  deadline(10000, `open #${n}`),
]);

await waitOpen(1);
const a = await publish(direct, "compat.a", "plain");
const b = await publish(direct, "compat.b", "line one\nline two\r\nline three", "quote");
await waitFor(2, "first two events");
check(received[0].id === a && received[0].type === "message" && received[0].data === "plain", "id, default type and data of a plain event");
check(received[1].id === b && received[1].type === "quote", "lastEventId and event type");
check(received[1].data === "line one\nline two\nline three", "multi-line data reassembled");

// Cut the stream; publish while the client is away; it must come back by
// itself, send Last-Event-ID, and get exactly what it missed.
const cutAt = Date.now();
proxy.drop();
const missed = [];
for (let i = 0; i < 3; i++) missed.push(await publish(direct, "compat.c", `missed ${i}`));
await waitOpen(2);
const delay = openTimes[1] - cutAt;
check(delay >= retryMs - 100 && delay < retryMs + 1400, `reconnected after ${delay} ms, honouring retry: ${retryMs}`);
const resumeHead = proxy.heads[proxy.heads.length - 1];
check(/\r\nlast-event-id: *(\d+)/i.exec(resumeHead)?.[1] === b, "Last-Event-ID header sent on reconnect");
const live = await publish(direct, "compat.d", "live");
await waitFor(6, "missed events and live event");
check(JSON.stringify(received.slice(2).map((e) => e.id)) === JSON.stringify([...missed, live]), "exactly the missed events, then live");
check(received.slice(2, 5).every((e, i) => e.data === `missed ${i}`), "missed events' data");
// Node's fetch asks for gzip; ringcast answered compressed, and every event
// above was decoded from it as it arrived.
const eventHeads = proxy.responses.filter((r) => r.startsWith("HTTP/1.1 200") && /text\/event-stream/i.test(r));
check(eventHeads.length >= 2 && eventHeads.every((r) => /\r\ncontent-encoding: gzip/i.test(r)),
  `the streams were gzip: ${eventHeads.map((r) => /content-encoding: *(\S+)/i.exec(r)?.[1] ?? "identity").join(", ")}`);
es.close();
proxy.close();
console.log("eventsource: all checks passed");
