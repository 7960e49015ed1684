// Runs in every test process: whatever child processes a test started and did not stop (it failed, timed out or
// was interrupted) are killed when the process ends, so a failed run leaves nothing behind.
import { killTracked } from '@cascade/demo';

process.once('exit', () => void killTracked());
for (const signal of ['SIGTERM', 'SIGINT'] as const) {
  process.once(signal, () => {
    killTracked();
    process.exit(1);
  });
}
