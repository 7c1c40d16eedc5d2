// The client against a real gonet-rs server (tests/ts): calls, pushes, status errors,
// timeouts, the server's calls, the handshake and resume.

import assert from "node:assert/strict";
import { after, before, test } from "node:test";

import {
  Client,
  ClosedError,
  Code,
  type ConnectOptions,
  type LinkEvent,
  StatusError,
  TimeoutError,
  type WebSocketConstructor,
  messageType,
} from "../src/index.js";
import { Answer, Ask, Echo, Echoed, Fail, Identity, Login, Relay, Release, Stall, Subscribe, Subscribed, Tick, Whoami } from "./messages.js";
import { type Servers, servers, stopServers, webSocket } from "./servers.js";

let urls: Servers;
let WebSocket: WebSocketConstructor;

before(async () => {
  urls = await servers();
  WebSocket = await webSocket();
});

/** Connects with the tests' WebSocket. */
const connect = (url: string, options: ConnectOptions = {}) => Client.connect(url, { WebSocket, ...options });

after(() => stopServers());

const login = (name: string, secret = "letmein") => ({
  clientVersion: "1.2.3",
  platform: "node",
  payload: { type: Login, value: { name, secret } },
});

test("calls are answered, each with its own reply", async () => {
  const client = await connect(urls.plain);
  const replies = await Promise.all(
    [1, 2, 3, 4, 5].map((count) => client.call(Echo, { text: `line ${count}`, count }, Echoed)),
  );
  assert.deepEqual(replies, [1, 2, 3, 4, 5].map((count) => ({ text: `line ${count}`, count })));
  assert.deepEqual(await client.close("done"), { kind: "local", reason: "done" });
});

test("a status from the handler rejects the call with its code and message", async () => {
  const client = await connect(urls.plain);
  await assert.rejects(client.call(Fail, { code: Code.PermissionDenied, message: "not yours" }, Echoed), (err) => {
    assert.ok(err instanceof StatusError);
    assert.equal(err.code, 5);
    assert.equal(err.codeName, "PermissionDenied");
    assert.equal(err.details, "not yours");
    assert.equal(err.message, "PermissionDenied: not yours");
    return true;
  });
  // A message the server has no route for.
  const Unknown = messageType<{ text: string }>(999, "webtest.Unknown");
  await assert.rejects(client.call(Unknown, { text: "?" }, Echoed), { name: "StatusError", code: Code.Unimplemented });
  // The session goes on.
  assert.deepEqual(await client.call(Echo, { text: "still here", count: 1 }, Echoed), { text: "still here", count: 1 });
  await client.close();
});

test("a call without a reply in time fails; its late reply is dropped; close fails the rest", async () => {
  const client = await connect(urls.plain);
  const helper = await connect(urls.plain);
  await assert.rejects(client.call(Stall, { key: "late" }, Echoed, { timeoutMs: 50 }), (err) => {
    assert.ok(err instanceof TimeoutError);
    assert.equal(err.message, "call webtest.Stall (4) had no reply within 50 ms");
    return true;
  });
  // The stalled handler answers now, too late: the reply is dropped, and the next
  // call gets its own.
  assert.deepEqual(await helper.call(Release, { key: "late" }, Echoed), { text: "late", count: 0 });
  assert.deepEqual(await client.call(Echo, { text: "next", count: 7 }, Echoed), { text: "next", count: 7 });

  const waiting = client.call(Stall, { key: "never" }, Echoed, { timeoutMs: 60_000 });
  const closed = client.close("giving up");
  await assert.rejects(waiting, { name: "ClosedError", message: "the session closed before the reply (giving up)" });
  assert.deepEqual(await closed, { kind: "local", reason: "giving up" });
  await assert.rejects(client.call(Echo, { text: "x", count: 0 }, Echoed), {
    name: "ClosedError",
    message: "the session is closed",
  });
  // Lets the server's handler finish, so that its session can close.
  await helper.call(Release, { key: "never" }, Echoed);
  await helper.close();
});

test("pushes arrive in order, before the reply of the call that made them", async () => {
  const client = await connect(urls.plain);
  const ticks: Tick[] = [];
  const off = client.on(Tick, (tick) => ticks.push(tick));
  const reply = await client.call(Subscribe, { count: 3, text: "tock" }, Subscribed);
  assert.deepEqual(reply, { count: 3 });
  assert.deepEqual(ticks, [0, 1, 2].map((n) => ({ n, text: "tock" })));
  off();
  await client.call(Subscribe, { count: 1, text: "unheard" }, Subscribed);
  assert.equal(ticks.length, 3);
  await client.close();
});

test("the server's call to the client gets the client's answer", async () => {
  const client = await connect(urls.plain);
  client.handle(Ask, Answer, (ask) => ({ text: ask.text.toUpperCase() }));
  assert.deepEqual(await client.call(Ask, { text: "shout" }, Answer), { text: "SHOUT" });
  client.handle(Ask, Answer, () => {
    throw new StatusError(Code.NotFound, "no answer here");
  });
  await assert.rejects(client.call(Ask, { text: "?" }, Answer), (err) => {
    assert.ok(err instanceof StatusError);
    assert.equal(err.code, Code.Unavailable);
    assert.match(err.details, /the client did not answer: .*no answer here/);
    return true;
  });
  await client.close();
});

test("the handshake carries version, platform and payload; a refusal rejects connect", async () => {
  const client = await connect(urls.login, { hello: login("ada") });
  assert.equal(typeof client.sessionId, "bigint");
  assert.equal(client.isResumable, true);
  assert.deepEqual(await client.call(Whoami, {}, Identity), { name: "ada", platform: "node", version: "1.2.3" });
  await client.close();

  await assert.rejects(connect(urls.login, { hello: login("eve", "guess") }), (err) => {
    assert.ok(err instanceof StatusError);
    assert.equal(err.code, Code.Unauthenticated);
    assert.equal(err.details, "bad secret");
    return true;
  });
});

test("a dropped connection resumes: nothing sent either way is lost", async () => {
  const ada = await connect(urls.login, {
    hello: login("ada-resume"),
    reconnect: { minBackoffMs: 10, maxBackoffMs: 100 },
  });
  const bob = await connect(urls.login, { hello: login("bob-resume") });
  const events: LinkEvent["kind"][] = [];
  ada.onLink((event) => events.push(event.kind));
  const ticks: string[] = [];
  let heard!: () => void;
  const tickHeard = new Promise<void>((resolve) => (heard = resolve));
  ada.on(Tick, (tick) => {
    ticks.push(tick.text);
    heard();
  });
  const session = ada.sessionId;
  assert.deepEqual(await ada.call(Echo, { text: "before", count: 1 }, Echoed), { text: "before", count: 1 });

  ada.dropConnection();
  // Sent while away: kept, and sent again on the new connection.
  const away = ada.call(Echo, { text: "while away", count: 2 }, Echoed);
  // Pushed to ada while (or after) the server noticed the drop: kept by the server.
  assert.deepEqual(await bob.call(Relay, { to: "ada-resume", text: "missed" }, Subscribed), { count: 1 });

  assert.deepEqual(await away, { text: "while away", count: 2 });
  await tickHeard;
  assert.deepEqual(ticks, ["missed"]);
  assert.deepEqual(events, ["detached", "resumed"]);
  assert.equal(ada.sessionId, session);
  assert.deepEqual(await ada.call(Whoami, {}, Identity), { name: "ada-resume", platform: "node", version: "1.2.3" });
  await ada.close();
  await bob.close();
});

test("a second login under the same name closes the first session with a bye", async () => {
  const cy = await connect(urls.login, {
    hello: login("cy"),
    reconnect: { minBackoffMs: 10, maxBackoffMs: 100 },
  });
  const other = await connect(urls.login, { hello: login("cy") });
  assert.deepEqual(await cy.closed, { kind: "peerClosed" });
  await assert.rejects(cy.call(Whoami, {}, Identity), ClosedError);
  assert.deepEqual(await other.call(Whoami, {}, Identity), { name: "cy", platform: "node", version: "1.2.3" });
  await other.close();
});

test("the client answers the server's pings, so a quiet session outlives the server's idle timeout", async () => {
  const client = await connect(urls.beat);
  // The server pings after 50 ms of silence and closes after 1 s of it: 25 pings
  // answered span more than a second, which only pongs make it through.
  for (let i = 0; i < 1000 && client.stats.pingsAnswered < 25; i++) {
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  assert.ok(client.stats.pingsAnswered >= 25, `${client.stats.pingsAnswered} pings answered`);
  assert.equal(client.isClosed, false);
  assert.deepEqual(await client.call(Echo, { text: "awake", count: 1 }, Echoed), { text: "awake", count: 1 });
  await client.close();
});
