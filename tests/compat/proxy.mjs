// A TCP proxy in front of ringcast that can drop every connection on
// demand, so a client sees its stream cut exactly as a network or server
// failure would cut it, while the server (and its history) stays up.
import net from "node:net";

export function startProxy(targetHost, targetPort) {
  const sockets = new Set();
  const heads = [];
  // The response heads, to see which encoding each client was answered in.
  const responses = [];
  const server = net.createServer((client) => {
    const upstream = net.connect(targetPort, targetHost);
    sockets.add(client);
    sockets.add(upstream);
    let head = "";
    client.on("data", (chunk) => {
      if (head.length < 8192) {
        head += chunk.toString("latin1");
        const end = head.indexOf("\r\n\r\n");
        if (end >= 0 && head.length - chunk.length < end + 4) heads.push(head.slice(0, end));
      }
      upstream.write(chunk);
    });
    let rhead = "";
    upstream.on("data", (chunk) => {
      if (rhead.length < 8192 && !rhead.includes("\r\n\r\n")) {
        rhead += chunk.toString("latin1");
        const end = rhead.indexOf("\r\n\r\n");
        if (end >= 0) responses.push(rhead.slice(0, end));
      }
      client.write(chunk);
    });
    const close = () => {
      client.destroy();
      upstream.destroy();
      sockets.delete(client);
      sockets.delete(upstream);
    };
    client.on("close", close);
    upstream.on("close", close);
    client.on("error", close);
    upstream.on("error", close);
  });
  return new Promise((resolve) => {
    server.listen(0, "127.0.0.1", () => {
      resolve({
        port: server.address().port,
        heads,
        responses,
        drop() {
          for (const s of sockets) s.destroy();
          sockets.clear();
        },
        close() {
          this.drop();
          server.close();
        },
      });
    });
  });
}

export async function publish(base, topic, data, event) {
  const q = new URLSearchParams({ topic });
  if (event) q.set("event", event);
  const r = await fetch(`${base}/publish?${q}`, { method: "POST", body: data });
  if (r.status !== 200) throw new Error(`publish ${r.status}: ${await r.text()}`);
  return (await r.json()).id;
}

export function check(cond, what) {
  if (!cond) throw new Error(`check failed: ${what}`);
  console.log(`ok - ${what}`);
}

export function deadline(ms, what) {
  return new Promise((_, reject) => setTimeout(() => reject(new Error(`timed out: ${what}`)), ms).unref());
}
