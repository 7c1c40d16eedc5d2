/**
 * The client: one session with a gonet-rs server over a WebSocket, with calls, pushes,
 * heartbeats, the handshake and resume.
 *
 * @module
 */

import { type BodyCodec, type MessageType, jsonCodec } from "./codec.js";
import { ClosedError, Code, FrameError, GonetError, StatusError, TimeoutError } from "./errors.js";
import {
  type Frame,
  Ids,
  MAX_FRAME_LEN,
  PROTOCOL_VERSION,
  decodeCount,
  decodeEnvelope,
  decodeError,
  decodeMessage,
  decodeRefused,
  decodeWelcome,
  encodeCount,
  encodeError,
  encodeFrame,
  encodeHello,
  encodeMetadata,
  encodeRequest,
  encodeResume,
  formatId,
  fromUtf8,
  isCounted,
  RESERVED_IDS,
} from "./wire.js";

/** The part of the WebSocket API the client uses (the browser's, Node 22's, or `ws`). */
export interface WebSocketLike {
  binaryType: string;
  readonly readyState: number;
  send(data: Uint8Array): void;
  close(code?: number, reason?: string): void;
  onopen: ((ev: any) => void) | null;
  onmessage: ((ev: { data: unknown }) => void) | null;
  onclose: ((ev: { code: number; reason: string }) => void) | null;
  onerror: ((ev: any) => void) | null;
}

/** A WebSocket constructor: `WebSocket` in browsers and Node 22, or the `ws` package's. */
export type WebSocketConstructor = new (url: string) => WebSocketLike;

/** The handshake a client opens its session with (see PROTOCOL.md, "Handshake"). */
export interface Hello<T = unknown> {
  /** The application's version (at most 255 bytes of UTF-8). */
  clientVersion?: string;
  /** The platform (`web`, `ios`; at most 255 bytes). */
  platform?: string;
  /** The payload the server's handshake hook receives: a token, a login. */
  payload?: { type: MessageType<T>; value: T };
}

/** How the client connects again after its connection drops, and resumes its session. */
export interface ReconnectOptions {
  /** The first backoff step, in ms (100). Each attempt waits a random time up to the step, which doubles. */
  minBackoffMs?: number;
  /** The largest backoff step, in ms (5000). */
  maxBackoffMs?: number;
  /** Attempts before giving up (30). */
  maxAttempts?: number;
  /** Time from the drop before giving up, in ms (60000). */
  maxElapsedMs?: number;
  /** Fail sends and calls made while disconnected at once, rather than keeping them (false). */
  failWhileDisconnected?: boolean;
  /** Bytes sent and not acknowledged that the client keeps (4 MiB); past it the session closes. */
  replayLimit?: number;
}

/** The options of {@link Client.connect}. */
export interface ConnectOptions {
  /** The body codec; the server's listener must use the same ({@link jsonCodec}). */
  codec?: BodyCodec;
  /** The WebSocket constructor (default: the global `WebSocket`). */
  WebSocket?: WebSocketConstructor;
  /** Open the session with a handshake carrying this. */
  hello?: Hello<any>;
  /**
   * Connect again after a drop and resume the session (implies a handshake). `true`
   * takes the defaults of {@link ReconnectOptions}.
   */
  reconnect?: ReconnectOptions | boolean;
  /** How long a call waits for its reply, in ms (10000), unless the call says otherwise. */
  callTimeoutMs?: number;
  /** How long the connection and the handshake may take, in ms (10000). */
  connectTimeoutMs?: number;
  /** Send a ping after this long with nothing received, in ms (off). */
  heartbeatMs?: number;
  /** Take the connection for dead after this long with nothing received, in ms (off). */
  idleTimeoutMs?: number;
  /** The largest frame length accepted and sent (65535). */
  maxFrameLen?: number;
  /** Message types pushes may arrive as, so they decode with their types. */
  types?: readonly MessageType<any>[];
  /** Errors that concern no call: a push that did not decode, a bad frame. Default: `console.error`. */
  onError?: (error: GonetError) => void;
}

/** Options of one call. */
export interface CallOptions {
  /** How long to wait for the reply, in ms (the client's `callTimeoutMs`). */
  timeoutMs?: number;
  /** Key/value pairs sent with the request (PROTOCOL.md, "Metadata"): a trace id, a locale. */
  metadata?: Record<string, string>;
}

/** What happened to the connection under a resumable session. */
export type LinkEvent =
  /** The connection dropped; the client is connecting again. */
  | { kind: "detached" }
  /** A new connection took the session over: nothing sent either way was lost. */
  | { kind: "resumed" }
  /** The server no longer had the session (or is going away): a fresh session started; pending calls failed. */
  | { kind: "restarted"; status: StatusError };

/** Why a session closed. */
export type CloseInfo =
  /** {@link Client.close} was called. */
  | { kind: "local"; reason: string }
  /** The server said bye (it closed the session). */
  | { kind: "peerClosed" }
  /** The server refused the handshake of a fresh session. */
  | { kind: "refused"; status: StatusError }
  /** The server is going away; connect to `address` (may be empty) instead. */
  | { kind: "goAway"; address: string }
  /** The reconnect policy gave up. */
  | { kind: "expired" }
  /** The connection ended (without a reconnect policy) or the session failed. */
  | { kind: "error"; error: GonetError };

interface PendingCall {
  replyType: MessageType<unknown>;
  resolve: (value: any) => void;
  reject: (error: GonetError) => void;
  timer: ReturnType<typeof setTimeout>;
}

interface Handshaking {
  resolve: (result: "welcome" | "resumed") => void;
  reject: (error: GonetError) => void;
  resuming: boolean;
}

type State = "connecting" | "open" | "detached" | "closed";

const DEFAULT_REPLAY_LIMIT = 4 << 20;
/** Acknowledge what came in at the latest this long after it (as the server does). */
const ACK_DELAY_MS = 20;

/**
 * A session with a gonet-rs server over a WebSocket (one frame per binary message).
 *
 * ```ts
 * import { Client } from "gonet-client";
 * import { ChatServiceClient, Said, messages } from "./gen/chat.js";
 *
 * const client = await Client.connect("ws://127.0.0.1:7100/chat", { types: messages });
 * client.on(Said, (said) => console.log(`${said.from}: ${said.content}`));
 * const chat = new ChatServiceClient(client);
 * const ack = await chat.say({ content: "hi" }); // rejects with a StatusError
 * await client.close();
 * ```
 */
export class Client {
  /** The server's id of the session, from its welcome (undefined without a handshake). */
  sessionId: bigint | undefined;
  /** Resolves once, when the session closes, with the reason. */
  readonly closed: Promise<CloseInfo>;
  /** What went over the session's connections so far. */
  readonly stats = { framesIn: 0, framesOut: 0, pingsAnswered: 0 };

  private readonly codec: BodyCodec;
  private readonly WebSocketCtor: WebSocketConstructor;
  private readonly callTimeoutMs: number;
  private readonly connectTimeoutMs: number;
  private readonly maxFrameLen: number;
  private readonly reconnect: Required<ReconnectOptions> | undefined;
  private readonly handshake: boolean;
  private readonly onErrorHook: (error: GonetError) => void;
  private readonly helloFrame: Uint8Array | undefined;

  private url: string;
  private state: State = "connecting";
  private ws: WebSocketLike | undefined;
  private generation = 0;
  private handshaking: Handshaking | undefined;
  private resolveClosed!: (info: CloseInfo) => void;

  private readonly pending = new Map<number, PendingCall>();
  private nextCall = 1;
  private readonly types = new Map<number, MessageType<unknown>>();
  private readonly pushHandlers = new Map<number, Set<(value: any, id: number) => void>>();
  private readonly anyHandlers = new Set<(value: unknown, id: number) => void>();
  private readonly requestHandlers = new Map<
    number,
    { replyType: MessageType<unknown>; fn: (req: any) => unknown }
  >();
  private readonly linkHandlers = new Set<(event: LinkEvent) => void>();
  private goingAway: string | undefined;

  // Resume: the token, the counts and the log of what was sent and not acknowledged.
  private token: Uint8Array | undefined;
  private received = 0;
  private acked = 0;
  private ackTimer: ReturnType<typeof setTimeout> | undefined;
  private sent = 0;
  private log: { end: number; frame: Uint8Array }[] = [];
  private logBytes = 0;

  // Heartbeats.
  private readonly heartbeatMs: number;
  private readonly idleTimeoutMs: number;
  private lastReceived = 0;
  private lastPing = 0;
  private ticker: ReturnType<typeof setInterval> | undefined;
  private reconnectWait: { timer: ReturnType<typeof setTimeout>; wake: () => void } | undefined;

  private constructor(url: string, options: ConnectOptions) {
    this.url = url;
    this.codec = options.codec ?? jsonCodec;
    const ctor = options.WebSocket ?? (globalThis as { WebSocket?: WebSocketConstructor }).WebSocket;
    if (!ctor) {
      throw new GonetError(
        "no WebSocket: this runtime has no global WebSocket (Node 20 needs --experimental-websocket, Node 22 has it); pass one as the WebSocket option, e.g. the ws package's",
      );
    }
    this.WebSocketCtor = ctor;
    this.callTimeoutMs = options.callTimeoutMs ?? 10_000;
    this.connectTimeoutMs = options.connectTimeoutMs ?? 10_000;
    this.maxFrameLen = Math.min(options.maxFrameLen ?? MAX_FRAME_LEN, MAX_FRAME_LEN);
    this.heartbeatMs = options.heartbeatMs ?? 0;
    this.idleTimeoutMs = options.idleTimeoutMs ?? 0;
    const r = options.reconnect === true ? {} : options.reconnect || undefined;
    this.reconnect = r && {
      minBackoffMs: r.minBackoffMs ?? 100,
      maxBackoffMs: Math.max(r.maxBackoffMs ?? 5000, r.minBackoffMs ?? 100),
      maxAttempts: Math.max(r.maxAttempts ?? 30, 1),
      maxElapsedMs: r.maxElapsedMs ?? 60_000,
      failWhileDisconnected: r.failWhileDisconnected ?? false,
      replayLimit: Math.max(r.replayLimit ?? DEFAULT_REPLAY_LIMIT, 1),
    };
    this.handshake = options.hello !== undefined || this.reconnect !== undefined;
    this.helloFrame = this.handshake ? this.encodeHelloFrame(options.hello ?? {}) : undefined;
    this.onErrorHook = options.onError ?? ((error) => console.error(error));
    for (const type of options.types ?? []) this.types.set(type.id, type);
    this.closed = new Promise((resolve) => (this.resolveClosed = resolve));
  }

  /**
   * Connects to `url` (`ws://host:port/path` or `wss://`), makes the handshake when
   * `hello` or `reconnect` is given, and resolves once the session is open. Rejects
   * with a {@link StatusError} when the server refuses the handshake, and with a
   * {@link GonetError} when the connection fails.
   */
  static async connect(url: string, options: ConnectOptions = {}): Promise<Client> {
    const client = new Client(url, options);
    try {
      await client.attach(false);
    } catch (err) {
      const error = err instanceof GonetError ? err : new GonetError(String(err));
      client.finish(error instanceof StatusError ? { kind: "refused", status: error } : { kind: "error", error });
      throw error;
    }
    client.startTicker();
    return client;
  }

  /** Whether the session is closed. */
  get isClosed(): boolean {
    return this.state === "closed";
  }

  /** Whether the server keeps the session for a resume (its welcome carried a token). */
  get isResumable(): boolean {
    return this.token !== undefined;
  }

  // -------------------------------------------------------------------------------
  // Sending

  /** Sends `value` as a plain message (what a one-way rpc is). */
  send<T>(type: MessageType<T>, value: T): void {
    this.checkSendable();
    const body = this.codec.encode(type, value);
    this.write(encodeFrame(type.id, body, this.maxFrameLen));
  }

  /**
   * Calls the server: sends `value` in a request frame and resolves with the reply, a
   * value of `replyType`. Rejects with a {@link StatusError} when the server answers
   * with an error, a {@link TimeoutError} after the timeout, a {@link ClosedError} when
   * the session closes first.
   */
  call<Req, Reply>(
    type: MessageType<Req>,
    value: Req,
    replyType: MessageType<Reply>,
    options: CallOptions = {},
  ): Promise<Reply> {
    try {
      this.checkSendable();
    } catch (err) {
      return Promise.reject(err);
    }
    let frame: Uint8Array;
    let meta: Uint8Array | undefined;
    try {
      const body = this.codec.encode(type, value);
      const most = this.maxFrameLen - 4 - 8;
      if (body.length > most) {
        throw new FrameError(
          `${type.name} (${type.id}) of ${body.length} bytes is too large for a call: a called message's body holds at most ${most} bytes`,
        );
      }
      if (options.metadata) meta = encodeFrame(Ids.metadata, encodeMetadata(options.metadata), this.maxFrameLen);
      frame = encodeFrame(Ids.request, encodeRequest(0, type.id, body), this.maxFrameLen);
    } catch (err) {
      return Promise.reject(err);
    }
    const call = this.takeCallNumber();
    new DataView(frame.buffer).setUint32(6, call, true);
    const timeoutMs = options.timeoutMs ?? this.callTimeoutMs;
    return new Promise<Reply>((resolve, reject) => {
      const timer = setTimeout(() => {
        if (this.pending.delete(call)) {
          reject(new TimeoutError(`call ${type.name} (${type.id}) had no reply within ${timeoutMs} ms`));
          this.afterCallSettled();
        }
      }, timeoutMs);
      this.pending.set(call, { replyType: replyType as MessageType<unknown>, resolve, reject, timer });
      try {
        if (meta) this.write(meta);
        this.write(frame);
      } catch (err) {
        clearTimeout(timer);
        this.pending.delete(call);
        reject(err);
      }
    });
  }

  private takeCallNumber(): number {
    for (;;) {
      const call = this.nextCall;
      this.nextCall = this.nextCall >= 0xffff_ffff ? 1 : this.nextCall + 1;
      if (!this.pending.has(call)) return call;
    }
  }

  private checkSendable(): void {
    if (this.state === "closed") throw new ClosedError("the session is closed");
    if (this.goingAway !== undefined) {
      throw new StatusError(Code.Unavailable, "the server is going away: no new calls");
    }
    if (this.state === "detached" && (!this.token || this.reconnect?.failWhileDisconnected)) {
      throw new ClosedError("disconnected: the client is connecting again");
    }
  }

  /** Writes an application frame: logged for a resume, sent when connected. */
  private write(frame: Uint8Array): void {
    if (this.token) {
      this.sent += frame.length;
      this.log.push({ end: this.sent, frame });
      this.logBytes += frame.length;
      const limit = this.reconnect?.replayLimit ?? DEFAULT_REPLAY_LIMIT;
      if (this.logBytes > limit && this.log.length > 1) {
        const error = new ClosedError(
          `the replay log holds ${this.logBytes} bytes not acknowledged, past its limit of ${limit}: the session closes`,
        );
        this.finish({ kind: "error", error });
        throw error;
      }
    }
    if (this.state === "open") {
      this.raw(frame);
      this.ackNow();
    }
  }

  /** Writes a frame on the current connection, as it is. */
  private raw(frame: Uint8Array): void {
    try {
      this.ws?.send(frame);
      this.stats.framesOut++;
    } catch {
      // The connection is going; its close event says what happens next.
    }
  }

  // -------------------------------------------------------------------------------
  // Receiving

  /**
   * Calls `handler` with every message of `type` the server sends without a call (a
   * push or a broadcast). Returns a function that removes it.
   */
  on<T>(type: MessageType<T>, handler: (value: T, id: number) => void): () => void {
    this.types.set(type.id, type as MessageType<unknown>);
    let set = this.pushHandlers.get(type.id);
    if (!set) this.pushHandlers.set(type.id, (set = new Set()));
    set.add(handler);
    return () => set.delete(handler);
  }

  /** Calls `handler` with every pushed message, whatever its type (decoded without one if unknown). */
  onAny(handler: (value: unknown, id: number) => void): () => void {
    this.anyHandlers.add(handler);
    return () => this.anyHandlers.delete(handler);
  }

  /**
   * Answers the server's calls of `type` with `fn`'s reply (a value of `replyType`); a
   * {@link StatusError} thrown by `fn` goes back as the error. Calls of a type without a
   * handler are answered `Unimplemented`. Returns a function that removes it.
   */
  handle<Req, Reply>(
    type: MessageType<Req>,
    replyType: MessageType<Reply>,
    fn: (req: Req) => Reply | Promise<Reply>,
  ): () => void {
    this.types.set(type.id, type as MessageType<unknown>);
    this.requestHandlers.set(type.id, { replyType: replyType as MessageType<unknown>, fn });
    return () => this.requestHandlers.delete(type.id);
  }

  /** Calls `handler` with the events of the connection under a resumable session. */
  onLink(handler: (event: LinkEvent) => void): () => void {
    this.linkHandlers.add(handler);
    return () => this.linkHandlers.delete(handler);
  }

  private onMessage(generation: number, data: unknown): void {
    if (generation !== this.generation || this.state === "closed") return;
    if (!(data instanceof ArrayBuffer)) {
      this.fail(new FrameError("the server sent a WebSocket text message; gonet sends binary messages only"));
      return;
    }
    let frame: Frame;
    try {
      frame = decodeMessage(new Uint8Array(data), this.maxFrameLen);
    } catch (err) {
      this.fail(err as GonetError);
      return;
    }
    this.lastReceived = Date.now();
    this.stats.framesIn++;
    if (this.handshaking) {
      this.onHandshakeFrame(frame, this.handshaking);
      return;
    }
    if (this.token && isCounted(frame.id)) {
      this.received += frame.size;
      if (!this.ackTimer) this.ackTimer = setTimeout(() => this.ackNow(), ACK_DELAY_MS);
    }
    try {
      this.onFrame(frame);
    } catch (err) {
      this.onErrorHook(err instanceof GonetError ? err : new GonetError(String(err)));
    }
  }

  private onFrame(frame: Frame): void {
    switch (frame.id) {
      case Ids.ping:
        this.raw(encodeFrame(Ids.pong, new Uint8Array(0)));
        this.stats.pingsAnswered++;
        return;
      case Ids.pong:
      case Ids.metadata:
      case Ids.welcome:
      case Ids.refused:
      case Ids.resumed:
        return;
      case Ids.response: {
        const env = decodeEnvelope(frame);
        const call = this.settle(env.call);
        if (!call) return;
        if (env.id !== call.replyType.id) {
          call.reject(
            new FrameError(
              `the reply to a call is message ${env.id}, not ${call.replyType.name} (${call.replyType.id})`,
            ),
          );
          return;
        }
        try {
          call.resolve(this.codec.decode(env.id, env.body, call.replyType));
        } catch (err) {
          call.reject(err as GonetError);
        }
        return;
      }
      case Ids.error: {
        const { call: n, status } = decodeError(frame);
        this.settle(n)?.reject(status);
        return;
      }
      case Ids.request:
        this.onRequest(frame);
        return;
      case Ids.bye:
        this.finish({ kind: "peerClosed" });
        return;
      case Ids.goAway:
        this.goingAway = fromUtf8(frame.body);
        this.afterCallSettled();
        return;
      case Ids.ack: {
        const n = decodeCount(frame);
        if (!this.token) return;
        if (n > this.sent) {
          this.fail(
            new FrameError(`malformed handshake frame ${formatId(Ids.ack)}: an acknowledgement of more than was sent`),
          );
          return;
        }
        this.trimLog(n);
        return;
      }
    }
    if (frame.id >= RESERVED_IDS) return;
    const type = this.types.get(frame.id);
    const value = this.codec.decode(frame.id, frame.body, type);
    for (const handler of this.pushHandlers.get(frame.id) ?? []) handler(value, frame.id);
    for (const handler of this.anyHandlers) handler(value, frame.id);
  }

  private settle(call: number): PendingCall | undefined {
    const pending = this.pending.get(call);
    if (!pending) return undefined; // Timed out: the late reply is dropped.
    this.pending.delete(call);
    clearTimeout(pending.timer);
    queueMicrotask(() => this.afterCallSettled());
    return pending;
  }

  private onRequest(frame: Frame): void {
    const env = decodeEnvelope(frame);
    const handler = this.requestHandlers.get(env.id);
    const answer = (reply: Uint8Array) => {
      if (this.state !== "closed") this.write(reply);
    };
    const error = (code: number, message: string) =>
      answer(encodeFrame(Ids.error, encodeError(env.call, code, message), this.maxFrameLen));
    if (!handler) {
      error(Code.Unimplemented, `no handler for message ${env.id} on this client`);
      return;
    }
    const type = this.types.get(env.id);
    Promise.resolve()
      .then(() => handler.fn(this.codec.decode(env.id, env.body, type)))
      .then(
        (reply) => {
          const body = this.codec.encode(handler.replyType, reply);
          answer(
            encodeFrame(Ids.response, encodeRequest(env.call, handler.replyType.id, body), this.maxFrameLen),
          );
        },
        (err) => {
          if (err instanceof StatusError) error(err.code, err.details);
          else error(Code.Internal, String(err instanceof Error ? err.message : err));
        },
      )
      .catch((err) => this.onErrorHook(err instanceof GonetError ? err : new GonetError(String(err))));
  }

  // -------------------------------------------------------------------------------
  // Resume bookkeeping

  private ackNow(): void {
    if (this.ackTimer) {
      clearTimeout(this.ackTimer);
      this.ackTimer = undefined;
    }
    if (this.token && this.state === "open" && this.received > this.acked) {
      this.acked = this.received;
      this.raw(encodeFrame(Ids.ack, encodeCount(this.received)));
    }
  }

  private trimLog(received: number): void {
    let drop = 0;
    while (drop < this.log.length && this.log[drop]!.end <= received) {
      this.logBytes -= this.log[drop]!.frame.length;
      drop++;
    }
    if (drop > 0) this.log.splice(0, drop);
  }

  private forgetSession(): void {
    this.token = undefined;
    this.sessionId = undefined;
    this.received = 0;
    this.acked = 0;
    this.sent = 0;
    this.log = [];
    this.logBytes = 0;
  }

  // -------------------------------------------------------------------------------
  // Connections

  private encodeHelloFrame(hello: Hello<any>): Uint8Array {
    const payload = hello.payload;
    return encodeFrame(
      Ids.hello,
      encodeHello({
        clientVersion: hello.clientVersion ?? "",
        platform: hello.platform ?? "",
        payloadId: payload ? payload.type.id : 0,
        payload: payload ? this.codec.encode(payload.type, payload.value) : new Uint8Array(0),
      }),
      this.maxFrameLen,
    );
  }

  /** Opens a connection and makes the handshake (a hello, or a resume). */
  private async attach(resuming: boolean): Promise<"welcome" | "resumed" | "open"> {
    const generation = ++this.generation;
    const ws = await this.open(generation);
    if (!this.handshake) {
      this.state = "open";
      return "open";
    }
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        if (this.handshaking === hs) {
          this.handshaking = undefined;
          ws.close(4000, "handshake timeout");
          reject(new GonetError(`no answer to the handshake within ${this.connectTimeoutMs} ms`));
        }
      }, this.connectTimeoutMs);
      const hs: Handshaking = {
        resuming,
        resolve: (result) => {
          clearTimeout(timer);
          this.handshaking = undefined;
          resolve(result);
        },
        reject: (error) => {
          clearTimeout(timer);
          this.handshaking = undefined;
          reject(error);
        },
      };
      this.handshaking = hs;
      if (resuming && this.sessionId !== undefined && this.token) {
        ws.send(encodeFrame(Ids.resume, encodeResume(this.sessionId, this.token, this.received)));
      } else {
        ws.send(this.helloFrame!);
      }
    });
  }

  /** Opens a WebSocket; its events are this connection's (`generation`). */
  private open(generation: number): Promise<WebSocketLike> {
    return new Promise((resolve, reject) => {
      let ws: WebSocketLike;
      try {
        ws = new this.WebSocketCtor(this.url);
      } catch (err) {
        reject(new GonetError(`cannot connect to ${this.url}: ${(err as Error).message}`));
        return;
      }
      ws.binaryType = "arraybuffer";
      this.ws = ws;
      let opened = false;
      const timer = setTimeout(() => {
        if (!opened) {
          ws.close();
          reject(new GonetError(`cannot connect to ${this.url}: no connection within ${this.connectTimeoutMs} ms`));
        }
      }, this.connectTimeoutMs);
      ws.onopen = () => {
        opened = true;
        clearTimeout(timer);
        this.lastReceived = Date.now();
        resolve(ws);
      };
      ws.onerror = () => {};
      ws.onmessage = (ev) => this.onMessage(generation, ev.data);
      ws.onclose = (ev) => {
        clearTimeout(timer);
        if (!opened) {
          reject(new GonetError(`cannot connect to ${this.url}: closed with code ${ev.code} ${ev.reason}`.trim()));
          return;
        }
        this.onSocketClosed(generation, ev.code, ev.reason);
      };
    });
  }

  private onHandshakeFrame(frame: Frame, hs: Handshaking): void {
    try {
      switch (frame.id) {
        case Ids.ping:
          this.raw(encodeFrame(Ids.pong, new Uint8Array(0)));
          return;
        case Ids.pong:
          return;
        case Ids.welcome: {
          const welcome = decodeWelcome(frame);
          if (welcome.version !== PROTOCOL_VERSION) {
            throw new FrameError(`the server's welcome is of version ${welcome.version}; this client speaks ${PROTOCOL_VERSION}`);
          }
          this.forgetSession();
          this.sessionId = welcome.sessionId;
          this.token = welcome.token;
          this.state = "open";
          hs.resolve("welcome");
          return;
        }
        case Ids.resumed: {
          if (!hs.resuming) return;
          const serverReceived = decodeCount(frame);
          this.trimLog(serverReceived);
          const start = this.log.length > 0 ? this.log[0]!.end - this.log[0]!.frame.length : this.sent;
          if (start !== serverReceived) {
            throw new FrameError(
              `resume failed: the server asks from byte ${serverReceived}, and bytes ${start}..${this.sent} are kept`,
            );
          }
          this.state = "open";
          this.acked = Math.min(this.acked, this.received);
          for (const entry of this.log) this.raw(entry.frame);
          hs.resolve("resumed");
          return;
        }
        case Ids.refused:
          hs.reject(decodeRefused(frame));
          return;
        default:
          throw new FrameError(`expected the server's answer to the handshake, got message ${formatId(frame.id)}`);
      }
    } catch (err) {
      hs.reject(err as GonetError);
    }
  }

  private onSocketClosed(generation: number, code: number, reason: string): void {
    if (generation !== this.generation || this.state === "closed") return;
    const why = `the connection closed (code ${code}${reason ? `: ${reason}` : ""})`;
    if (this.handshaking) {
      this.handshaking.reject(new GonetError(`${why} during the handshake`));
      return;
    }
    if (this.state === "connecting") return;
    this.drop(new ClosedError(why));
  }

  /** The connection is gone: detach and connect again, or close. */
  private drop(error: GonetError): void {
    this.ws = undefined;
    if (!this.reconnect) {
      this.finish({ kind: "error", error });
      return;
    }
    if (this.ackTimer) {
      clearTimeout(this.ackTimer);
      this.ackTimer = undefined;
    }
    this.state = "detached";
    if (!this.token) {
      // The server keeps nothing: what was in flight is lost.
      this.failPending(new ClosedError(`${error.message}; the server keeps no sessions, so the call is lost`));
    }
    this.emit({ kind: "detached" });
    void this.reconnectLoop();
  }

  private async reconnectLoop(): Promise<void> {
    const policy = this.reconnect!;
    const start = Date.now();
    for (let attempt = 0; attempt < policy.maxAttempts; attempt++) {
      const step = Math.min(policy.minBackoffMs * 2 ** Math.min(attempt, 20), policy.maxBackoffMs);
      const delay = Math.random() * step;
      if (Date.now() - start + delay > policy.maxElapsedMs) break;
      await new Promise<void>((wake) => {
        this.reconnectWait = { timer: setTimeout(wake, delay), wake };
      });
      this.reconnectWait = undefined;
      if (this.isClosed) return;
      const resuming = this.token !== undefined;
      try {
        const result = await this.attach(resuming);
        if (this.isClosed) return;
        if (result === "resumed") {
          this.emit({ kind: "resumed" });
        } else {
          this.emit({
            kind: "restarted",
            status: new StatusError(Code.Unavailable, "the server kept no session: a fresh one started"),
          });
        }
        return;
      } catch (err) {
        if (this.isClosed) return;
        this.ws?.close(4000, "handshake failed");
        if (err instanceof StatusError) {
          if (!resuming) {
            this.finish({ kind: "refused", status: err });
            return;
          }
          // The server no longer has the session: start a fresh one.
          this.forgetSession();
          this.failPending(new ClosedError(`the session was not resumed (${err.message}); a fresh one starts`));
          this.emit({ kind: "restarted", status: err });
          attempt = -1;
        } else if (err instanceof FrameError && resuming) {
          this.finish({ kind: "error", error: err });
          return;
        }
      }
    }
    this.finish({ kind: "expired" });
  }

  private emit(event: LinkEvent): void {
    for (const handler of this.linkHandlers) {
      try {
        handler(event);
      } catch (err) {
        this.onErrorHook(new GonetError(`a link handler threw: ${String(err)}`));
      }
    }
  }

  private afterCallSettled(): void {
    if (this.goingAway === undefined || this.pending.size > 0 || this.state === "closed") return;
    const address = this.goingAway;
    if (!this.reconnect) {
      if (this.token) this.raw(encodeFrame(Ids.bye, new Uint8Array(0)));
      this.finish({ kind: "goAway", address });
      return;
    }
    // A fresh session elsewhere: forget this one, say bye, connect again.
    this.goingAway = undefined;
    this.raw(encodeFrame(Ids.bye, new Uint8Array(0)));
    const old = this.ws;
    this.generation++;
    old?.close(1000, "going away");
    this.forgetSession();
    if (/^wss?:\/\//.test(address)) this.url = address;
    this.state = "detached";
    this.emit({
      kind: "restarted",
      status: new StatusError(
        Code.Unavailable,
        address ? `the server is going away; connecting to ${address}` : "the server is going away",
      ),
    });
    void this.reconnectLoop();
  }

  private startTicker(): void {
    const periods = [this.heartbeatMs, this.idleTimeoutMs].filter((ms) => ms > 0);
    if (periods.length === 0) return;
    const tick = Math.max(Math.min(...periods) / 4, 10);
    this.ticker = setInterval(() => {
      if (this.state !== "open") return;
      const now = Date.now();
      const silent = now - this.lastReceived;
      if (this.idleTimeoutMs > 0 && silent >= this.idleTimeoutMs) {
        this.generation++;
        this.ws?.close(4000, "idle timeout");
        this.drop(new ClosedError(`nothing received for ${silent} ms (idle timeout ${this.idleTimeoutMs} ms)`));
        return;
      }
      if (this.heartbeatMs > 0 && silent >= this.heartbeatMs && now - this.lastPing >= this.heartbeatMs) {
        this.lastPing = now;
        this.raw(encodeFrame(Ids.ping, new Uint8Array(0)));
      }
    }, tick);
  }

  // -------------------------------------------------------------------------------
  // Closing

  /**
   * Closes the session: a resumable one says bye first, so the server closes it rather
   * than wait for a resume. Pending calls fail with a {@link ClosedError}.
   */
  close(reason = "closed by the client"): Promise<CloseInfo> {
    if (this.state === "open" && this.token) this.raw(encodeFrame(Ids.bye, new Uint8Array(0)));
    this.finish({ kind: "local", reason });
    return this.closed;
  }

  /**
   * Drops the connection as a network failure would, without a bye: a client with a
   * reconnect policy connects again and resumes its session. For tests, and for
   * applications that know the network changed.
   */
  dropConnection(): void {
    if (this.state !== "open") return;
    const ws = this.ws;
    this.generation++;
    ws?.close(4000, "dropped by the client");
    this.drop(new ClosedError("the connection was dropped by the client"));
  }

  private fail(error: GonetError): void {
    this.onErrorHook(error);
    this.finish({ kind: "error", error });
  }

  private failPending(error: GonetError): void {
    const calls = [...this.pending.values()];
    this.pending.clear();
    for (const call of calls) {
      clearTimeout(call.timer);
      call.reject(error);
    }
  }

  private finish(info: CloseInfo): void {
    if (this.state === "closed") return;
    this.state = "closed";
    if (this.ticker) clearInterval(this.ticker);
    if (this.ackTimer) clearTimeout(this.ackTimer);
    if (this.reconnectWait) {
      clearTimeout(this.reconnectWait.timer);
      this.reconnectWait.wake();
    }
    this.handshaking?.reject(new ClosedError("the session closed during the handshake"));
    const ws = this.ws;
    this.ws = undefined;
    this.generation++;
    try {
      ws?.close(1000, info.kind === "local" ? info.reason.slice(0, 100) : info.kind);
    } catch {
      // Already closing.
    }
    const why =
      info.kind === "error"
        ? info.error.message
        : info.kind === "refused"
          ? `refused: ${info.status.message}`
          : info.kind === "local"
            ? info.reason
            : info.kind;
    this.failPending(new ClosedError(`the session closed before the reply (${why})`));
    this.resolveClosed(info);
  }
}
