import { redactSecrets } from '@cascade/proto';
import type { Log } from './link.js';

/**
 * Structured logs: one JSON object a line on stderr, with its time and event name. Credentials in any field (a
 * camera's or a server's URL with a password) are written as `***` (redactSecrets).
 */
export const stderrLog: Log = (event, fields) =>
  process.stderr.write(`${redactSecrets(JSON.stringify({ t: new Date().toISOString(), event, ...fields }))}\n`);
