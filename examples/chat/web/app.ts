// The chat example's web client: logs in with its name in the handshake, joins the
// lobby, says lines and shows what the room says, over the code gonet-cli generates
// from schemas/chat.proto. It comes back by itself after a dropped connection.

import { Client, StatusError } from "gonet-client";
import { ChatServiceClient, Hello, messages, onChatEvents } from "./gen/chat.js";

const log = document.getElementById("log")!;
const login = document.getElementById("login") as HTMLFormElement;
const say = document.getElementById("say") as HTMLFormElement;
const line = say.elements.namedItem("line") as HTMLInputElement;
const send = say.querySelector("button")!;
const server = login.elements.namedItem("server") as HTMLInputElement;
const query = new URLSearchParams(location.search);
server.value = query.get("server") ?? "ws://127.0.0.1:7100/chat";

function print(text: string): void {
  const row = document.createElement("div");
  row.textContent = text;
  log.append(row);
  log.scrollTop = log.scrollHeight;
}

function failure(err: unknown): string {
  return err instanceof StatusError ? err.details : err instanceof Error ? err.message : String(err);
}

let session: { client: Client; chat: ChatServiceClient } | undefined;

login.addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const name = (login.elements.namedItem("name") as HTMLInputElement).value.trim();
  session?.client.close("reconnecting");
  try {
    const client = await Client.connect(server.value, {
      types: messages,
      hello: { clientVersion: "web", platform: "browser", payload: { type: Hello, value: { name } } },
      reconnect: true,
    });
    onChatEvents(client, {
      said: (m) => print(`[${m.room}] ${m.from}: ${m.content}`),
      presence: (m) => print(`* ${m.name} ${m.joined ? "joined" : "left"} ${m.room}`),
    });
    client.onLink((event) => {
      if (event.kind === "detached") print("~ connection lost; connecting again");
      if (event.kind === "resumed") print("~ back, nothing missed");
      if (event.kind === "restarted") print(`~ new session (${event.status.details}); /join again`);
    });
    void client.closed.then((why) => {
      print(`disconnected: ${why.kind === "error" ? why.error.message : why.kind}`);
      line.disabled = send.disabled = true;
    });
    const chat = new ChatServiceClient(client);
    session = { client, chat };
    const joined = await chat.join({ room: "lobby", name });
    print(`joined ${joined.room} with ${joined.members.join(", ")}`);
    line.disabled = send.disabled = false;
    line.focus();
  } catch (err) {
    print(`! ${failure(err)}`);
  }
});

say.addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const text = line.value.trim();
  line.value = "";
  if (!text || !session) return;
  const { client, chat } = session;
  try {
    if (text === "/quit") {
      await client.close("bye");
    } else if (text === "/leave") {
      await chat.leave({});
    } else if (text.startsWith("/join ")) {
      const joined = await chat.join({ room: text.slice(6).trim(), name: "" });
      print(`joined ${joined.room} with ${joined.members.join(", ")}`);
    } else {
      await chat.say({ content: text });
    }
  } catch (err) {
    print(`! ${failure(err)}`);
  }
});

// ?name=NAME (with ?server=URL) connects at once: a link that joins the lobby.
const named = query.get("name");
if (named) {
  (login.elements.namedItem("name") as HTMLInputElement).value = named;
  login.requestSubmit();
}
