import { CascadeError, type ErrorCode } from '@cascade/proto';

/** A request the worker refuses; `code` is the wire's and travels in the reply, the message says what was wrong. */
export class RequestError extends CascadeError<ErrorCode> {}
