// Worker-thread side of StageRunner: owns the onnxruntime sessions, whose run() blocks its thread.
import { parentPort, workerData } from 'node:worker_threads';
import { runCascade, type ExitRule, type StagePass } from './cascade.js';
import { StageSessions, type Feeds, type StageSessionOptions } from './stages.js';
import type { ModelDir } from './manifest.js';

interface Init {
  model: ModelDir;
  options: StageSessionOptions;
}
export interface RunMessage {
  id: number;
  stage: number;
  feeds: Feeds;
  /** Run stages `stage`.. as one joined graph. */
  fused?: boolean;
  /** Run the cascade from `stage` with this exit rule (runCascade) and answer with its passes. */
  rule?: ExitRule;
}

const port = parentPort!;
const { model, options } = workerData as Init;
const ready = StageSessions.create(model, options);
ready.then(
  () => port.postMessage({ ready: true }),
  (err: Error) => port.postMessage({ ready: false, error: err.message }),
);

port.on('message', async (msg: RunMessage | 'close') => {
  const sessions = await ready;
  if (msg === 'close') {
    await sessions.release();
    port.close();
    return;
  }
  const started = performance.now();
  try {
    if (msg.rule) {
      // Each pass as its stage finishes, copied (logits and rows are small; their buffers may be shared or still in
      // use), then the end of the run.
      const onPass = (pass: StagePass) => port.postMessage({ id: msg.id, pass });
      await runCascade(sessions, model.manifest, msg.stage, msg.feeds, msg.rule, msg.fused ?? false, onPass);
      port.postMessage({ id: msg.id, done: true });
      return;
    }
    const out = msg.fused ? await sessions.runFused(msg.stage, msg.feeds) : await sessions.run(msg.stage, msg.feeds);
    const transfer = Object.values(out).map((t) => t.data.buffer as ArrayBuffer);
    port.postMessage({ id: msg.id, out, ms: performance.now() - started }, transfer);
  } catch (err) {
    port.postMessage({ id: msg.id, error: (err as Error).message });
  }
});
