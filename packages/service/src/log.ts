import type { Log } from './link.js';

/** Structured logs: one JSON object a line on stderr, with its time and event name. */
export const stderrLog: Log = (event, fields) =>
  process.stderr.write(`${JSON.stringify({ t: new Date().toISOString(), event, ...fields })}\n`);
