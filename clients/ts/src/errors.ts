/**
 * The errors of the client: a status from the server ({@link StatusError}), a call that
 * timed out ({@link TimeoutError}), a session that is closed ({@link ClosedError}) and
 * bad bytes ({@link FrameError}). All extend {@link GonetError}.
 *
 * @module
 */

/** The status codes of gonet (PROTOCOL.md, "Error codes"). */
export const Code = {
  Unknown: 1,
  InvalidArgument: 2,
  NotFound: 3,
  AlreadyExists: 4,
  PermissionDenied: 5,
  Unauthenticated: 6,
  ResourceExhausted: 7,
  FailedPrecondition: 8,
  Unavailable: 9,
  Internal: 10,
  Unimplemented: 11,
  NoReply: 12,
} as const;

/** A status code's name, or `Other(n)` for a code gonet does not name. */
export function codeName(code: number): string {
  for (const [name, value] of Object.entries(Code)) {
    if (value === code) return name;
  }
  return `Other(${code})`;
}

/** Every error the client raises. */
export class GonetError extends Error {
  override name = "GonetError";
}

/**
 * A status: the server answered a call with an error frame, or refused the handshake.
 *
 * ```ts
 * try {
 *   await chat.say({ content: "hi" });
 * } catch (err) {
 *   if (err instanceof StatusError && err.code === Code.FailedPrecondition) { ... }
 * }
 * ```
 */
export class StatusError extends GonetError {
  override name = "StatusError";
  /** The message the server gave. */
  readonly details: string;

  constructor(
    /** The status code (see {@link Code}). */
    readonly code: number,
    message: string,
  ) {
    super(`${codeName(code)}: ${message}`);
    this.details = message;
  }

  /** The code's name (`InvalidArgument`). */
  get codeName(): string {
    return codeName(this.code);
  }
}

/** A call that had no answer within its timeout. */
export class TimeoutError extends GonetError {
  override name = "TimeoutError";
}

/** The session is closed (or, without a reconnect policy, its connection is gone). */
export class ClosedError extends GonetError {
  override name = "ClosedError";
}

/** Bytes that are not valid frames, or a message too large for one frame. */
export class FrameError extends GonetError {
  override name = "FrameError";
}

/** A body the codec could not encode or decode. */
export class CodecError extends GonetError {
  override name = "CodecError";
}
