// The browser test: the code gonet-cli generates from webtest.proto, over the browser's
// own WebSocket, against real gonet-rs servers; the outcome goes back to the server as
// a webtest.Report (and into the page).

import { Client, Code, StatusError } from "gonet-client";
import { Login, TestServiceClient, type Tick, messages, onTestEvents } from "../gen/webtest.js";

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
