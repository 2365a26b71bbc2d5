// Headless Chromium (Debian's package, driven by playwright-core) on the
// demo page: it loads, shows quotes that update, reconnects by itself after
// its stream is cut and shows it, and its topic filter changes the
// subscription. Usage: node browser.mjs HOST:PORT SCREENSHOT.png
import { chromium } from "playwright-core";
import { startProxy, check } from "./proxy.mjs";

const [host, port] = process.argv[2].split(":");
const shot = process.argv[3];
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

  proxy.drop();
  await page.waitForFunction(() => document.body.dataset.state === "reconnecting", null, { timeout: 10000 });
  check(true, "stream cut: page shows reconnecting");
  await page.waitForFunction(() => document.body.dataset.state === "open", null, { timeout: 15000 });
  const resumeHead = proxy.heads.filter((h) => h.startsWith("GET /events")).pop();
  check(/\r\nlast-event-id: *\d+/i.test(resumeHead), "reconnected by itself with Last-Event-ID");
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
  await page.screenshot({ path: shot, fullPage: true });
  console.log(`screenshot: ${shot}`);
  check(errors.length === 0, `no page errors ${errors.join("; ")}`);
} finally {
  await browser.close();
  proxy.close();
}
console.log("browser: all checks passed");
