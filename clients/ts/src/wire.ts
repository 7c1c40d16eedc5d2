/**
 * The gonet wire format, without any I/O: frames, and the framework's own messages
 * (the protocol extension of gonet-rs, PROTOCOL.md in the repository).
 *
 * ```text
 * +----------------+--------------------+-----------------------+
 * | length: u16 LE | message id: u32 LE | body: length - 4 bytes |
 * +----------------+--------------------+-----------------------+
 * ```
 *
 * `length` counts the id and the body, not itself. A WebSocket binary message carries
 * exactly one frame; a stream (TCP) carries frames back to back, which
 * {@link FrameDecoder} splits.
 *
 * @module
 */

import { FrameError, StatusError } from "./errors.js";

/** The largest value of the length field, and so of `4 + body length`. */
export const MAX_FRAME_LEN = 0xffff;
/** The size of a frame's header: the length (2 bytes) and the id (4 bytes). */
export const HEADER_LEN = 6;
/** The first id reserved for the framework's own messages. */
export const RESERVED_IDS = 0xffff_ff00;
/** The version of the handshake and resume this client speaks. */
export const PROTOCOL_VERSION = 1;
/** The length of a resume token. */
export const TOKEN_LEN = 16;

/** Ids of the framework's messages. */
export const Ids = {
  request: 0xffff_ff01,
  response: 0xffff_ff02,
  error: 0xffff_ff03,
  metadata: 0xffff_ff04,
  ping: 0xffff_ff10,
  pong: 0xffff_ff11,
  bye: 0xffff_ff12,
  hello: 0xffff_ff20,
  welcome: 0xffff_ff21,
  refused: 0xffff_ff22,
  goAway: 0xffff_ff23,
  resume: 0xffff_ff24,
  resumed: 0xffff_ff25,
  ack: 0xffff_ff26,
} as const;

/** One frame: its message id and its body (a view into the bytes it was read from). */
export interface Frame {
  /** The message id. */
  readonly id: number;
  /** The body, without the header. */
  readonly body: Uint8Array;
  /** The frame's size on the wire, header included (`length + 2`). */
  readonly size: number;
}

const utf8Encoder = new TextEncoder();
const utf8Decoder = new TextDecoder("utf-8", { fatal: true });

/** UTF-8 bytes of `text`. */
export function utf8(text: string): Uint8Array {
  return utf8Encoder.encode(text);
}

/** `bytes` as text; throws a `TypeError` when they are not UTF-8. */
export function fromUtf8(bytes: Uint8Array): string {
  return utf8Decoder.decode(bytes);
}

function hex(id: number): string {
  return "0x" + id.toString(16).padStart(8, "0");
}

/** Formats a message id as gonet's logs do (`0xffffff01`). */
export const formatId = hex;

/**
 * Encodes one frame. Throws a {@link FrameError} when the frame would be larger than
 * `maxFrameLen` (65535 at most: a body of at most 65531 bytes).
 */
export function encodeFrame(id: number, body: Uint8Array, maxFrameLen: number = MAX_FRAME_LEN): Uint8Array {
  checkId(id);
  const length = 4 + body.length;
  const max = Math.min(maxFrameLen, MAX_FRAME_LEN);
  if (length > max) {
    throw new FrameError(
      `a frame of message ${hex(id)} with a body of ${body.length} bytes is too large: ` +
        `its length would be ${length}, past the limit of ${max} (a body holds at most ${max - 4} bytes)`,
    );
  }
  const frame = new Uint8Array(2 + length);
  const view = new DataView(frame.buffer);
  view.setUint16(0, length, true);
  view.setUint32(2, id, true);
  frame.set(body, HEADER_LEN);
  return frame;
}

function checkId(id: number): void {
  if (!Number.isInteger(id) || id < 0 || id > 0xffff_ffff) {
    throw new FrameError(`message id ${id} is not a u32`);
  }
}

/**
 * Reads the one frame a WebSocket message (or a datagram) carries. Throws a
 * {@link FrameError} when the message holds less or more than exactly one frame.
 */
export function decodeMessage(message: Uint8Array, maxFrameLen: number = MAX_FRAME_LEN): Frame {
  if (message.length < HEADER_LEN) {
    throw new FrameError(`a message of ${message.length} bytes is shorter than a frame header (6 bytes)`);
  }
  const view = new DataView(message.buffer, message.byteOffset, message.byteLength);
  const length = view.getUint16(0, true);
  checkLength(length, maxFrameLen);
  if (length + 2 !== message.length) {
    throw new FrameError(
      `a message of ${message.length} bytes must hold exactly one frame, and its length field says ${length} (a frame of ${length + 2} bytes)`,
    );
  }
  return { id: view.getUint32(2, true), body: message.subarray(HEADER_LEN), size: message.length };
}

function checkLength(length: number, maxFrameLen: number): void {
  if (length < 4) {
    throw new FrameError(`frame length ${length} is less than 4 (the length counts the 4-byte id)`);
  }
  const max = Math.min(maxFrameLen, MAX_FRAME_LEN);
  if (length > max) {
    throw new FrameError(`frame length ${length} is larger than the limit of ${max}`);
  }
}

/**
 * Splits a byte stream into frames: give it chunks as they arrive, in any sizes, and it
 * returns the frames they complete. A frame may span chunks, and a chunk may hold many
 * frames. A length field under 4 or over the limit throws a {@link FrameError}, read
 * from the header alone; the decoder is unusable after it.
 */
export class FrameDecoder {
  private buffer: Uint8Array = new Uint8Array(0);
  private failed: FrameError | undefined;

  /** `maxFrameLen`: the largest length field accepted (65535 at most). */
  constructor(readonly maxFrameLen: number = MAX_FRAME_LEN) {}

  /** Bytes held of a frame not yet complete. */
  get pending(): number {
    return this.buffer.length;
  }

  /** Adds `chunk` and returns every frame now complete, in order. */
  push(chunk: Uint8Array): Frame[] {
    if (this.failed) throw this.failed;
    let data: Uint8Array;
    if (this.buffer.length === 0) {
      data = chunk;
    } else {
      data = new Uint8Array(this.buffer.length + chunk.length);
      data.set(this.buffer);
      data.set(chunk, this.buffer.length);
    }
    const frames: Frame[] = [];
    let at = 0;
    while (data.length - at >= 2) {
      const length = data[at]! | (data[at + 1]! << 8);
      try {
        checkLength(length, this.maxFrameLen);
      } catch (err) {
        this.failed = err as FrameError;
        throw err;
      }
      if (data.length - at < length + 2) break;
      const view = new DataView(data.buffer, data.byteOffset + at + 2, 4);
      // Copies, so that the frame does not keep a large buffer alive.
      const body = data.slice(at + HEADER_LEN, at + 2 + length);
      frames.push({ id: view.getUint32(0, true), body, size: length + 2 });
      at += length + 2;
    }
    this.buffer = at === data.length ? new Uint8Array(0) : data.slice(at);
    return frames;
  }
}

// ---------------------------------------------------------------------------------
// The protocol extension

function concat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const part of parts) {
    out.set(part, at);
    at += part.length;
  }
  return out;
}

function u32(n: number): Uint8Array {
  const b = new Uint8Array(4);
  new DataView(b.buffer).setUint32(0, n, true);
  return b;
}

function u64(n: bigint): Uint8Array {
  const b = new Uint8Array(8);
  new DataView(b.buffer).setBigUint64(0, n, true);
  return b;
}

function view(body: Uint8Array): DataView {
  return new DataView(body.buffer, body.byteOffset, body.byteLength);
}

function short(what: string, id: number, need: number, got: number): FrameError {
  return new FrameError(`malformed ${what} frame ${hex(id)}: a body of ${got} bytes, at least ${need} needed`);
}

/** The body of a request frame: `call u32`, `message id u32`, the message's body. */
export function encodeRequest(call: number, id: number, body: Uint8Array): Uint8Array {
  return concat(u32(call), u32(id), body);
}

/** A response's or a request's envelope. */
export interface Envelope {
  readonly call: number;
  readonly id: number;
  readonly body: Uint8Array;
}

/** Reads the envelope of a request or response frame. */
export function decodeEnvelope(frame: Frame): Envelope {
  if (frame.body.length < 8) throw short("call", frame.id, 8, frame.body.length);
  const v = view(frame.body);
  return { call: v.getUint32(0, true), id: v.getUint32(4, true), body: frame.body.subarray(8) };
}

/** The body of an error frame: `call u32`, `code u16`, the UTF-8 message. */
export function encodeError(call: number, code: number, message: string): Uint8Array {
  const head = new Uint8Array(6);
  const v = new DataView(head.buffer);
  v.setUint32(0, call, true);
  v.setUint16(4, code, true);
  return concat(head, utf8(message));
}

/** Reads an error frame: the call it answers and the status. */
export function decodeError(frame: Frame): { call: number; status: StatusError } {
  if (frame.body.length < 6) throw short("error", frame.id, 6, frame.body.length);
  const v = view(frame.body);
  return {
    call: v.getUint32(0, true),
    status: new StatusError(v.getUint16(4, true), lossyUtf8(frame.body.subarray(6))),
  };
}

function lossyUtf8(bytes: Uint8Array): string {
  return new TextDecoder("utf-8").decode(bytes);
}

/**
 * The body of a metadata frame: key/value pairs for the message that follows
 * (`key length u8`, key, `value length u16 LE`, value, for each pair).
 */
export function encodeMetadata(pairs: Record<string, string>): Uint8Array {
  const parts: Uint8Array[] = [];
  for (const [key, value] of Object.entries(pairs)) {
    const k = utf8(key);
    const val = utf8(value);
    if (k.length > 0xff) throw new FrameError(`metadata key "${key}" is longer than 255 bytes`);
    if (val.length > 0xffff) throw new FrameError(`metadata value of "${key}" is longer than 65535 bytes`);
    const lens = new Uint8Array(3);
    lens[0] = k.length;
    new DataView(lens.buffer).setUint16(1, val.length, true);
    parts.push(lens.subarray(0, 1), k, lens.subarray(1), val);
  }
  return concat(...parts);
}

/** What a hello says: the client's version and platform, and the payload message. */
export interface HelloParts {
  readonly clientVersion: string;
  readonly platform: string;
  /** The payload's message id (0: none). */
  readonly payloadId: number;
  /** The payload, encoded by the session's codec. */
  readonly payload: Uint8Array;
}

function shortString(what: string, text: string): Uint8Array {
  const bytes = utf8(text);
  if (bytes.length > 0xff) throw new FrameError(`the hello's ${what} is longer than 255 bytes`);
  return concat(Uint8Array.of(bytes.length), bytes);
}

/** The body of a hello frame. */
export function encodeHello(hello: HelloParts): Uint8Array {
  const version = new Uint8Array(2);
  new DataView(version.buffer).setUint16(0, PROTOCOL_VERSION, true);
  return concat(
    version,
    shortString("client version", hello.clientVersion),
    shortString("platform", hello.platform),
    u32(hello.payloadId),
    hello.payload,
  );
}

/** A welcome: the server's id of the session, and its resume token if it keeps sessions. */
export interface Welcome {
  readonly version: number;
  readonly sessionId: bigint;
  readonly token: Uint8Array | undefined;
}

/** Reads a welcome frame (10 bytes, or 26 with a token). */
export function decodeWelcome(frame: Frame): Welcome {
  const n = frame.body.length;
  if (n !== 10 && n !== 10 + TOKEN_LEN) {
    throw new FrameError(
      `malformed handshake frame ${hex(frame.id)}: a welcome of ${n} bytes (10, or 26 with a resume token)`,
    );
  }
  const v = view(frame.body);
  return {
    version: v.getUint16(0, true),
    sessionId: v.getBigUint64(2, true),
    token: n === 26 ? frame.body.slice(10, 26) : undefined,
  };
}

/** Reads a refused frame: the status the server refused the handshake or resume with. */
export function decodeRefused(frame: Frame): StatusError {
  if (frame.body.length < 2) throw short("handshake", frame.id, 2, frame.body.length);
  return new StatusError(view(frame.body).getUint16(0, true), lossyUtf8(frame.body.subarray(2)));
}

/** The body of a resume frame. */
export function encodeResume(sessionId: bigint, token: Uint8Array, received: number): Uint8Array {
  const version = new Uint8Array(2);
  new DataView(version.buffer).setUint16(0, PROTOCOL_VERSION, true);
  return concat(version, u64(sessionId), token, u64(BigInt(received)));
}

/** The body of a resumed or ack frame: a received count. */
export function encodeCount(received: number): Uint8Array {
  return u64(BigInt(received));
}

/** Reads the count of a resumed or ack frame. */
export function decodeCount(frame: Frame): number {
  if (frame.body.length < 8) throw short("handshake", frame.id, 8, frame.body.length);
  return Number(view(frame.body).getBigUint64(0, true));
}

/**
 * Whether a frame counts for a resume: all do but the link's own (ping, pong, hello,
 * welcome, refused, resume, resumed, ack).
 */
export function isCounted(id: number): boolean {
  switch (id) {
    case Ids.ping:
    case Ids.pong:
    case Ids.hello:
    case Ids.welcome:
    case Ids.refused:
    case Ids.resume:
    case Ids.resumed:
    case Ids.ack:
      return false;
    default:
      return true;
  }
}
