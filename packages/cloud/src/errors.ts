import { type ErrorCode } from '@cascade/proto';

/** A request the worker refuses; `code` travels on the wire, the message says what was wrong. */
export class RequestError extends Error {
  override name = 'RequestError';
  constructor(
    readonly code: ErrorCode,
    message: string,
    options?: ErrorOptions,
  ) {
    super(message, options);
  }
}

/** Invalid worker options, naming the field. */
export class ConfigError extends Error {
  override name = 'ConfigError';
}
