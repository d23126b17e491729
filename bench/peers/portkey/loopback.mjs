// Preloaded into the Portkey gateway by bench/compare.py (`node --import ./loopback.mjs ...`).
//
// Why: Portkey's start-server.js calls @hono/node-server's serve({fetch, port}) with no hostname
// and has no option for one, so Node would listen on every interface. The benchmark listens on
// loopback only, so this wraps net.Server.prototype.listen: a listen on a port with no host gets
// TOLLWAY_BENCH_HOST (default 127.0.0.1). Nothing else about the gateway is changed.
import net from "node:net";

const host = process.env.TOLLWAY_BENCH_HOST || "127.0.0.1";
const listen = net.Server.prototype.listen;

net.Server.prototype.listen = function loopbackListen(...args) {
  const first = args[0];
  if (typeof first === "number" || (typeof first === "string" && /^\d+$/.test(first))) {
    // listen(port), listen(port, callback) or listen(port, undefined, ...): put the host second.
    if (args.length === 1 || typeof args[1] === "function" || args[1] === undefined || args[1] === null) {
      const rest = args.length > 1 && (args[1] === undefined || args[1] === null) ? args.slice(2) : args.slice(1);
      return listen.call(this, first, host, ...rest);
    }
  } else if (first && typeof first === "object" && !("path" in first) && !first.host) {
    return listen.call(this, { ...first, host }, ...args.slice(1));
  }
  return listen.apply(this, args);
};
