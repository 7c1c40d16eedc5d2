/**
 * Message types and body codecs. A {@link MessageType} names a message (its id and
 * full proto name) and types its value; a {@link BodyCodec} turns values into bodies
 * and back. The client hard-codes no JSON mapping: {@link jsonCodec} writes values as
 * they are given, which is right for the server's `protojson` codec when the values
 * follow the canonical proto3 JSON mapping (as the code `gonet-cli gen ts` writes does),
 * and for its `json` codec when they follow Go's.
 *
 * @module
 */

import { CodecError } from "./errors.js";
import { fromUtf8, utf8 } from "./wire.js";

/**
 * A message type: its id, its full proto name, and (in generated code) how to fill in
 * the default values that a JSON mapping leaves out. `T` is the type of its values.
 */
export interface MessageType<T> {
  /** The message id (`option (gonet.id)`). */
  readonly id: number;
  /** The full proto name (`chat.Say`). */
  readonly name: string;
  /**
   * Fills in what a decoded value left out (proto3 JSON omits default values), in
   * place, and returns it.
   */
  readonly fill?: (value: any) => T;
  /** Never set: carries `T`. */
  readonly __type?: T;
}

/** The value type of a {@link MessageType}. */
export type ValueOf<M> = M extends MessageType<infer T> ? T : never;

/** A message type for values of type `T`. */
export function messageType<T>(id: number, name: string, fill?: (value: any) => T): MessageType<T> {
  return fill ? { id, name, fill } : { id, name };
}

/** Turns message values into bodies and back; the server's listener must use the same. */
export interface BodyCodec {
  /** The codec's name, for errors. */
  readonly name: string;
  /** Encodes `value`, a message of type `type`. */
  encode(type: MessageType<unknown>, value: unknown): Uint8Array;
  /**
   * Decodes a body of message `id`; `type` is its type when the client knows it (a
   * call's reply type, a push's registered type).
   */
  decode(id: number, body: Uint8Array, type: MessageType<unknown> | undefined): unknown;
}

/**
 * JSON in UTF-8 bodies, with values written as given (`JSON.stringify`) and read as
 * they come (`JSON.parse`), then filled in by the type's `fill` when it has one.
 */
export const jsonCodec: BodyCodec = {
  name: "json",
  encode(type, value) {
    let text: string | undefined;
    try {
      text = JSON.stringify(value);
    } catch (err) {
      throw new CodecError(`cannot encode ${type.name} (${type.id}) as JSON: ${(err as Error).message}`);
    }
    if (text === undefined) throw new CodecError(`cannot encode ${type.name} (${type.id}) as JSON: not a value`);
    return utf8(text);
  },
  decode(id, body, type) {
    const what = type ? `${type.name} (${id})` : `message ${id}`;
    let value: unknown;
    try {
      value = JSON.parse(body.length === 0 ? "{}" : fromUtf8(body));
    } catch (err) {
      throw new CodecError(`cannot decode ${what} as JSON: ${(err as Error).message}`);
    }
    return type?.fill ? type.fill(value) : value;
  },
};
