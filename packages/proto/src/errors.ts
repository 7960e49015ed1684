/**
 * Every error Cascade throws is a CascadeError: a stable `code` from ERROR_CODES (what kind of failure, for programs
 * and exit statuses), a message that says what was wrong and what to do (for people), and the `cause` it came from.
 * Wire errors (a worker refusing a request) carry the wire's own codes (`ErrorCode`) instead.
 */
export const ERROR_CODES = {
  /** A bad command-line flag or value. */
  USAGE: 'USAGE',
  /** Options that are invalid together or alone (a threshold count, an unknown operating point, an id). */
  CONFIG: 'CONFIG',
  /** A model directory that cannot be read or does not match its manifest. */
  MODEL_DIR: 'MODEL_DIR',
  /** A frame source that cannot be opened or decoded. */
  SOURCE: 'SOURCE',
  /** A tensor that cannot be encoded or decoded. */
  CODEC: 'CODEC',
  /** onnxruntime failed. */
  INFERENCE: 'INFERENCE',
  /** NATS cannot be reached, or the connection was lost for good. */
  NATS: 'NATS',
  /** A program Cascade needs (nats-server, ffmpeg) is missing or would not start. */
  DEPENDENCY: 'DEPENDENCY',
  /** An operation on something in the wrong state (run() twice, after close()). */
  STATE: 'STATE',
} as const;
export type CascadeErrorCode = (typeof ERROR_CODES)[keyof typeof ERROR_CODES];

/** The base of every error Cascade throws. */
export class CascadeError<C extends string = CascadeErrorCode> extends Error {
  constructor(
    readonly code: C,
    message: string,
    options?: ErrorOptions,
  ) {
    super(message, options);
    this.name = new.target.name;
  }
}

/** Codes that mean the command was asked for something wrong: exit status 2. */
const USER_ERRORS: ReadonlySet<string> = new Set([
  ERROR_CODES.USAGE,
  ERROR_CODES.CONFIG,
  ERROR_CODES.MODEL_DIR,
  ERROR_CODES.SOURCE,
]);

/**
 * The exit status of a command that failed with `err`: 2 when it was asked for something wrong (usage, configuration,
 * model directory, source), 1 for failures while running.
 */
export function exitStatus(err: unknown): 1 | 2 {
  return err instanceof CascadeError && USER_ERRORS.has(err.code) ? 2 : 1;
}

/** Invalid options, naming the field. */
export class ConfigError extends CascadeError {
  constructor(message: string, options?: ErrorOptions) {
    super(ERROR_CODES.CONFIG, message, options);
  }
}
