// Headless Chromium (Debian's package, driven by playwright-core) on the
// demo page: it loads, shows quotes that update and a true events/s rate,
// reconnects by itself after its stream is cut and shows it, its topic
// filter changes the subscription, it skips events it cannot draw, and a
// change that rounds to zero is neither "-0.00%" nor red. Against a second
// server with auth on, it asks for the ringcast_token cookie, and works
// once the cookie is set.
// Usage: node browser.mjs HOST:PORT SCREENSHOT.png [AUTH_HOST:PORT HS256_SECRET]
import { createHmac } from "node:crypto";
import { chromium } from "playwright-core";
import { startProxy, check, publish } from "./proxy.mjs";

const [host, port] = process.argv[2].split(":");
const shot = process.argv[3];
const [authAddr, secret] = process.argv.slice(4);

// An HS256 JWT, as docs/security.md mints them.
function hs256(key, claims) {
  const b64 = (s) => Buffer.from(s).toString("base64url");
  const msg = b64(JSON.stringify({ alg: "HS256", typ: "JWT" })) + "." + b64(JSON.stringify(claims));
  return msg + "." + createHmac("sha256", key).update(msg).digest("base64url");
}
const proxy = await startProxy(host, Number(port));
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  const errors = [];
  page.on("pageerror", (e) => errors.push(String(e)));
  await page.goto(`http://127.0.0.1:${proxy.port}/`);
  // The first wait also covers Chromium's cold start on a busy CI machine
  // (one CI run took over 10 s to reach it).
  await page.waitForFunction(() => document.body.dataset.state === "open", null, { timeout: 30000 });
  check(true, "EventSource connected (state open)");
  await page.waitForFunction(() => document.querySelectorAll("#rows tr").length >= 10, null, { timeout: 10000 });
  check(true, "quote board filled from the snapshot and live quotes");
  const before = await page.$$eval("#rows tr", (rows) => rows.map((r) => r.cells[4].textContent).join("|"));
  await page.waitForFunction(
    (b) => [...document.querySelectorAll("#rows tr")].map((r) => r.cells[4].textContent).join("|") !== b,
    before, { timeout: 10000 });
  check(true, "prices update live");
  await page.waitForFunction(() => Number(document.getElementById("rate").textContent) > 0, null, { timeout: 5000 });
  check(true, "events per second shown");
  // The demo publishes 200 events/s: every reading of a true rate over the
  // last second is near it, not a count per timer tick.
  const rates = [];
  for (let i = 0; i < 6; i++) {
    await page.waitForTimeout(300);
    rates.push(Number(await page.textContent("#rate")));
  }
  check(rates.every((r) => r >= 100 && r <= 900), `events/s is a rate near 300: ${rates.join(", ")}`);

  proxy.drop();
  await page.waitForFunction(() => document.body.dataset.state === "reconnecting", null, { timeout: 10000 });
  check(true, "stream cut: page shows reconnecting");
  await page.waitForFunction(() => document.body.dataset.state === "open", null, { timeout: 15000 });
  const resumeHead = proxy.heads.filter((h) => h.startsWith("GET /events")).pop();
  check(/\r\nlast-event-id: *\d+/i.test(resumeHead), "reconnected by itself with Last-Event-ID");
  // The proxy sees the first request and answer of each connection: here
  // the resumed stream's. It asked for gzip, was answered gzip, and the
  // board goes on updating from it (below).
  const streamHeads = proxy.responses.filter((r) => /text\/event-stream/i.test(r));
  const asked = proxy.heads.filter((h) => h.startsWith("GET /events"))
    .map((h) => /accept-encoding: *([^\r]*)/i.exec(h)?.[1] ?? "none");
  check(asked.length >= 1 && asked.every((a) => /gzip/.test(a)) && streamHeads.length >= 1
    && streamHeads.every((r) => /\r\ncontent-encoding: gzip/i.test(r)),
    `Chromium's EventSource asked for gzip (${asked.join("; ")}) and decoded the compressed stream`);
  const again = await page.$$eval("#rows tr", (rows) => rows.map((r) => r.cells[4].textContent).join("|"));
  await page.waitForFunction(
    (b) => [...document.querySelectorAll("#rows tr")].map((r) => r.cells[4].textContent).join("|") !== b,
    again, { timeout: 10000 });
  check(true, "quotes keep updating after the reconnect");

  await page.fill("#topic", "quotes.NYSE.>");
  await page.click("button[type=submit]");
  await page.waitForFunction(() => {
    const venues = [...document.querySelectorAll("#rows tr")].map((r) => r.cells[1].textContent);
    return venues.length >= 3 && venues.every((v) => v === "NYSE");
  }, null, { timeout: 10000 });
  check(true, "topic filter changes the subscription");
  await page.fill("#topic", "quotes.>");
  await page.click("button[type=submit]");
  await page.waitForFunction(() => document.querySelectorAll("#rows tr").length >= 20, null, { timeout: 10000 });

  // "Slow screen": max_rate=0.5, so each of the 32 symbols sends at most
  // one quote every 2 s: no one-second window holds more than 32 quotes
  // (they come in step), against about 200 without it.
  await page.check("#slow");
  const slowHead = await (async () => {
    for (let i = 0; i < 50; i++) {
      const h = proxy.heads.filter((x) => x.startsWith("GET /events")).pop() || "";
      if (h.includes("max_rate=0.5")) return h;
      await page.waitForTimeout(100);
    }
    return "";
  })();
  check(slowHead.includes("max_rate=0.5"), "the slow screen subscribes with max_rate");
  await page.waitForTimeout(1500);
  const slowRates = [];
  for (let i = 0; i < 12; i++) {
    await page.waitForTimeout(250);
    slowRates.push(Number(await page.textContent("#rate")));
  }
  check(slowRates.every((r) => r <= 36) && slowRates.some((r) => r > 0),
    `the slow screen gets at most 32 quotes in any second: ${slowRates.join(", ")}`);
  await page.uncheck("#slow");
  await page.waitForFunction(() => Number(document.getElementById("rate").textContent) > 100, null, { timeout: 10000 });
  check(true, "back to every quote");
  await page.screenshot({ path: shot, fullPage: true });
  console.log(`screenshot: ${shot}`);

  // Events the board cannot draw, on topics it shows: skipped, no error.
  const base = `http://${host}:${port}`;
  await publish(base, "quotes.TEST.JUNK", "not json", "quote");
  await publish(base, "quotes.TEST.NOBID", JSON.stringify({ topic: "quotes.TEST.NOBID", symbol: "NOBID" }), "quote");
  await publish(base, "quotes.TEST.NULL", "null", "quote");
  // A move that rounds to 0.00%.
  const flat = (last, volume) => JSON.stringify({ topic: "quotes.TEST.FLAT", symbol: "FLAT", bid: last - 0.01, ask: last + 0.01, last, volume });
  await publish(base, "quotes.TEST.FLAT", flat(100, 100), "quote");
  await publish(base, "quotes.TEST.FLAT", flat(99.999, 200), "quote");
  await page.waitForFunction(() => {
    const r = [...document.querySelectorAll("#rows tr")].find((tr) => tr.cells[0].textContent === "FLAT");
    return r && r.cells[6].textContent === "200";
  }, null, { timeout: 10000 });
  const flatCell = await page.$$eval("#rows tr", (rows) => {
    const c = rows.find((tr) => tr.cells[0].textContent === "FLAT").cells[5];
    return { text: c.textContent, cls: c.className };
  });
  check(flatCell.text === "0.00%" && flatCell.cls === "", `a change below 0.005% shows as 0.00%, neutral: ${JSON.stringify(flatCell)}`);
  const symbols = await page.$$eval("#rows tr", (rows) => rows.map((r) => r.cells[0].textContent));
  check(!symbols.includes("JUNK") && !symbols.includes("NOBID"), "events it cannot draw are skipped");
  check(errors.length === 0, `no page errors ${errors.join("; ")}`);

  if (authAddr) {
    // With auth on, EventSource gets a 401 and gives up: the board says
    // what to do instead of "reconnecting" for ever.
    const authed = await browser.newPage();
    authed.on("pageerror", (e) => errors.push(String(e)));
    const authBase = `http://${authAddr}`;
    await authed.goto(`${authBase}/`);
    await authed.waitForFunction(() => document.body.dataset.state === "signin", null, { timeout: 15000 });
    const told = await authed.textContent("#empty");
    check(/sign in needed/i.test(told) && told.includes("ringcast_token"), `asks for the ringcast_token cookie: ${told}`);
    const token = hs256(secret, { sub: "browser", subscribe: ["quotes.>"], exp: Math.floor(Date.now() / 1000) + 600 });
    await authed.context().addCookies([{ name: "ringcast_token", value: token, url: authBase }]);
    await authed.reload();
    await authed.waitForFunction(() => document.body.dataset.state === "open", null, { timeout: 15000 });
    await authed.waitForFunction(() => document.querySelectorAll("#rows tr").length >= 10, null, { timeout: 10000 });
    check(true, "with the cookie set, the board shows the feed");
    check(errors.length === 0, `no page errors ${errors.join("; ")}`);
  }
} finally {
  await browser.close();
  proxy.close();
}
console.log("browser: all checks passed");
