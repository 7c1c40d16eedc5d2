// The real gonet-rs servers the tests run against (tests/ts in the repository): from
// GONET_TS_SERVERS (set by the Rust test that runs these), or started here with cargo.

import { type ChildProcess, spawn } from "node:child_process";
import { fileURLToPath } from "node:url";
import { createInterface } from "node:readline";

import type { WebSocketConstructor } from "../src/index.js";

/** The listeners of the test server. */
export interface Servers {
  /** JSON codec, no handshake. */
  plain: string;
  /** JSON codec, a login handshake (`webtest.Login`, secret `letmein`) and resume. */
  login: string;
  /** JSON codec; pings after 50 ms of silence and closes after 1 s of it. */
  beat: string;
}

let child: ChildProcess | undefined;

/** The servers' URLs; starts `ts-test-server` once per test file when none are given. */
export async function servers(): Promise<Servers> {
  const given = process.env.GONET_TS_SERVERS;
  if (given) return JSON.parse(given) as Servers;
  const root = fileURLToPath(new URL("../../../../", import.meta.url));
  const proc = spawn("cargo", ["run", "--quiet", "-p", "gonet-ts-tests", "--bin", "ts-test-server"], {
    cwd: root,
    stdio: ["pipe", "pipe", "inherit"],
  });
  child = proc;
  const line = await new Promise<string>((resolve, reject) => {
    const lines = createInterface({ input: proc.stdout! });
    lines.once("line", resolve);
    proc.once("error", (err) =>
      reject(new Error(`cannot start the test server with cargo (in ${root}): ${err.message}`)),
    );
    proc.once("exit", (code) => reject(new Error(`the test server exited with ${code} before listening`)));
  });
  return JSON.parse(line) as Servers;
}

/**
 * The WebSocket constructor the tests use: the global one (Node 22, or Node 20 with
 * --experimental-websocket), else the `ws` dev-dependency (older Node).
 */
export async function webSocket(): Promise<WebSocketConstructor> {
  const global = (globalThis as { WebSocket?: WebSocketConstructor }).WebSocket;
  if (global) return global;
  const name = "ws";
  const mod = (await import(name)) as { WebSocket: WebSocketConstructor };
  return mod.WebSocket;
}

/** Stops the server `servers()` started, if any (closing its stdin stops it). */
export function stopServers(): void {
  child?.stdin?.end();
  child = undefined;
}
