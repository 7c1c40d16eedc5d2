// The frame format without I/O: encoding, one frame per WebSocket message, and a byte
// stream split anyhow.

import assert from "node:assert/strict";
import { test } from "node:test";

import { FrameDecoder, FrameError, decodeMessage, encodeFrame } from "../src/index.js";
import { encodeHello, encodeMetadata, encodeResume, fromUtf8, utf8 } from "../src/wire.js";

const hex = (bytes: Uint8Array) => Buffer.from(bytes).toString("hex").replace(/(..)/g, "$1 ").trim();

test("a frame is u16 LE length (4 + body), u32 LE id, body (PROTOCOL.md's example)", () => {
  const frame = encodeFrame(101, utf8('{"content":"hi"}'));
  assert.equal(hex(frame), "14 00 65 00 00 00 7b 22 63 6f 6e 74 65 6e 74 22 3a 22 68 69 22 7d");
  const back = decodeMessage(frame);
  assert.equal(back.id, 101);
  assert.equal(back.size, 22);
  assert.equal(fromUtf8(back.body), '{"content":"hi"}');
});

test("the framework's frames match PROTOCOL.md's examples", () => {
  const hello = encodeFrame(
    0xffffff20,
    encodeHello({ clientVersion: "1.0", platform: "ios", payloadId: 7, payload: Uint8Array.of(8, 1) }),
  );
  assert.equal(hex(hello), "14 00 20 ff ff ff 01 00 03 31 2e 30 03 69 6f 73 07 00 00 00 08 01");
  const token = Uint8Array.from(Buffer.from("5b0e91c427d86af302b74e198c60d5a1", "hex"));
  const resume = encodeFrame(0xffffff24, encodeResume(7n, token, 30));
  assert.equal(
    hex(resume),
    "26 00 24 ff ff ff 01 00 07 00 00 00 00 00 00 00 5b 0e 91 c4 27 d8 6a f3 02 b7 4e 19 8c 60 d5 a1 1e 00 00 00 00 00 00 00",
  );
  const meta = encodeFrame(0xffffff04, encodeMetadata({ "trace-id": "4bf92f35" }));
  assert.equal(hex(meta), "17 00 04 ff ff ff 08 74 72 61 63 65 2d 69 64 08 00 34 62 66 39 32 66 33 35");
});

test("a frame split at every byte comes out whole, once", () => {
  const frame = encodeFrame(7, utf8("split me"));
  const decoder = new FrameDecoder();
  const out = [];
  for (const byte of frame) out.push(...decoder.push(Uint8Array.of(byte)));
  assert.equal(out.length, 1);
  assert.equal(out[0]!.id, 7);
  assert.equal(fromUtf8(out[0]!.body), "split me");
  assert.equal(decoder.pending, 0);
});

test("several frames in one chunk, and one cut across chunks, come out in order", () => {
  const frames = [encodeFrame(1, utf8("a")), encodeFrame(2, new Uint8Array(0)), encodeFrame(3, utf8("ccc"))];
  const all = Buffer.concat(frames);
  const decoder = new FrameDecoder();
  const first = decoder.push(all.subarray(0, 15)); // two frames and part of the third
  assert.deepEqual(first.map((f) => f.id), [1, 2]);
  assert.equal(decoder.pending, 15 - 7 - 6);
  const rest = decoder.push(all.subarray(15));
  assert.deepEqual(rest.map((f) => [f.id, fromUtf8(f.body)]), [[3, "ccc"]]);
});

test("a length under 4 or over the limit is an error from the header alone", () => {
  assert.throws(() => new FrameDecoder().push(Uint8Array.of(3, 0)), {
    name: "FrameError",
    message: "frame length 3 is less than 4 (the length counts the 4-byte id)",
  });
  const decoder = new FrameDecoder(1000);
  assert.throws(() => decoder.push(Uint8Array.of(0xe9, 0x03)), /frame length 1001 is larger than the limit of 1000/);
  // The decoder stays failed.
  assert.throws(() => decoder.push(encodeFrame(1, new Uint8Array(0))), FrameError);
});

test("an oversize body is refused when encoding, naming the sizes", () => {
  assert.equal(encodeFrame(9, new Uint8Array(65531)).length, 65537);
  assert.throws(() => encodeFrame(9, new Uint8Array(65532)), {
    name: "FrameError",
    message:
      "a frame of message 0x00000009 with a body of 65532 bytes is too large: its length would be 65536, past the limit of 65535 (a body holds at most 65531 bytes)",
  });
});

test("a WebSocket message must hold exactly one frame", () => {
  const two = Buffer.concat([encodeFrame(1, utf8("a")), encodeFrame(2, utf8("b"))]);
  assert.throws(() => decodeMessage(two), /must hold exactly one frame, and its length field says 5/);
  assert.throws(() => decodeMessage(Uint8Array.of(4, 0, 1)), /shorter than a frame header/);
});
