// The browser test: the code gonet-cli generates from webtest.proto, over the browser's
// own WebSocket, against real gonet-rs servers; the outcome goes back to the server as
// a webtest.Report (and into the page).

import { Client, Code, StatusError } from "gonet-client";
import { Login, type Shapes, TestServiceClient, type Tick, messages, onTestEvents } from "../gen/webtest.js";

function check(ok: boolean, what: string): void {
  if (!ok) throw new Error(`failed: ${what}`);
}

async function run(plain: string, login: string): Promise<string> {
  const steps: string[] = [];
  const client = await Client.connect(plain, { types: messages });
  const test = new TestServiceClient(client);

  const echoed = await test.echo({ text: "from chromium", count: 3 });
  check(echoed.text === "from chromium" && echoed.count === 3, `echo gave ${JSON.stringify(echoed)}`);
  steps.push("call");

  const ticks: Tick[] = [];
  const stop = onTestEvents(client, {
    tick: (tick) => ticks.push(tick),
    ask: (ask) => ({ text: `${ask.text} from the page` }),
  });
  const subscribed = await test.subscribe({ count: 3, text: "push" });
  check(subscribed.count === 3, `subscribe gave ${JSON.stringify(subscribed)}`);
  check(
    ticks.map((t) => `${t.n}:${t.text}`).join(",") === "0:push,1:push,2:push",
    `pushes ${JSON.stringify(ticks)}`,
  );
  steps.push("pushes");

  const answer = await test.ask({ text: "hello" });
  check(answer.text === "hello from the page", `the server's call got ${JSON.stringify(answer)}`);
  stop();
  steps.push("server call");

  // Every kind of field, through the server's protojson codec and back: 64-bit integers
  // past 2^53 as strings, bytes as base64, enums by name, maps, a oneof member, lowerCamel.
  const shapes: Shapes = {
    big: "-9007199254740993",
    ubig: "18446744073709551615",
    fixed: "9007199254740995",
    blob: "AP8Q",
    color: "GREEN",
    nick: "",
    scores: [1, -2, 3],
    points: [{ x: 1, y: 2 }, { x: 0, y: -1 }],
    named: { home: { x: 5, y: 6 } },
    labels: { "7": "seven", "-1": "minus one" },
    origin: { x: 0, y: 0 },
    number: "-42",
    ratio: 1.5,
    flag: true,
    snakeCaseName: "snake",
    palette: ["RED", "COLOR_UNSPECIFIED", "GREEN"],
  };
  const mirrored = await test.mirror(shapes);
  const sorted = (v: unknown): unknown =>
    Array.isArray(v)
      ? v.map(sorted)
      : v !== null && typeof v === "object"
        ? Object.fromEntries(Object.entries(v).sort(([a], [b]) => (a < b ? -1 : 1)).map(([k, x]) => [k, sorted(x)]))
        : v;
  check(
    JSON.stringify(sorted(mirrored)) === JSON.stringify(sorted(shapes)),
    `mirror gave ${JSON.stringify(mirrored)}`,
  );
  steps.push("shapes");

  try {
    await test.fail({ code: Code.FailedPrecondition, message: "join a room first" });
    throw new Error("failed: fail() resolved");
  } catch (err) {
    check(err instanceof StatusError, `fail() threw ${String(err)}`);
    const status = err as StatusError;
    check(status.code === 8 && status.details === "join a room first", `status ${status.message}`);
  }
  steps.push("status error");

  const user = await Client.connect(login, {
    hello: { clientVersion: "9.9", platform: "web", payload: { type: Login, value: { name: "page", secret: "letmein" } } },
  });
  const who = await new TestServiceClient(user).whoami({});
  check(who.name === "page" && who.platform === "web" && who.version === "9.9", `whoami ${JSON.stringify(who)}`);
  await user.close();
  steps.push("handshake");

  await test.report({ ok: true, detail: steps.join(", ") });
  await client.close();
  return steps.join(", ");
}

const params = new URLSearchParams(location.search);
const plain = params.get("plain") ?? "";
const login = params.get("login") ?? "";
const out = document.getElementById("result")!;
run(plain, login).then(
  (detail) => {
    out.textContent = `ok: ${detail}`;
  },
  async (err: unknown) => {
    const detail = err instanceof Error ? `${err.name}: ${err.message}` : String(err);
    out.textContent = `error: ${detail}`;
    console.error(detail);
    // Tells the test on a connection of its own, whatever state the first one is in.
    const reporter = await Client.connect(plain);
    await new TestServiceClient(reporter).report({ ok: false, detail });
    await reporter.close();
  },
);
