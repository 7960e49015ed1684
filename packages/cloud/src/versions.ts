// The model versions a worker serves: each with its stages, its batcher and a NATS service instance; added and
// dropped as the model's rollout asks, never leaving the worker without a version that serves.
import { CascadeError, clip, ERROR_CODES, subjects } from '@cascade/proto';
import { checkAgainstCpu, loadModelDir, StageRunner, warmUp, type ModelDir, type ParityReport } from '@cascade/runtime';
import { defaultModelCache, fetchModel, Serial, type Log } from '@cascade/service';
import { Svcm, type Service, type ServiceMsg } from '@nats-io/services';
import type { NatsConnection } from '@nats-io/transport-node';
import { Batcher } from './batcher.js';
import type { WorkerMetrics } from './metrics.js';
import type { CompiledWorkerOptions } from './options.js';

/** One model version a worker serves: its stages, its batcher, and a service instance with its endpoints. */
export interface Served {
  model: ModelDir;
  runner: StageRunner;
  batcher: Batcher;
  service?: Service;
  /** Dropped by a rollout: takes no new requests, finishes what it has. */
  draining: boolean;
}

/** Answers a request that came to a version's endpoints (`legacy`: on the model's unversioned subject). */
export type RequestHandler = (msg: ServiceMsg, s: Served, legacy: boolean) => void;

export class Versions {
  /** The versions loaded, in the order they were added. */
  readonly map = new Map<string, Served>();
  /** The versions the rollout asks for (undefined: no rollout), and the reconciliation with them. */
  private wanted: string[] | undefined;
  private readonly reconciler = new Serial(() => this.reconcile());
  /** Versions that failed to load, not tried again until the rollout changes. */
  private readonly refused = new Map<string, string>();
  /** Versions being dropped, until their requests are answered and their stages closed. */
  private readonly drops = new Map<string, Promise<void>>();

  /** `running` says whether the worker still takes work; `nc` is its connection once it serves. */
  constructor(
    first: Served,
    private readonly o: CompiledWorkerOptions,
    private readonly metrics: WorkerMetrics,
    private readonly log: Log,
    private readonly nc: () => NatsConnection,
    private readonly running: () => boolean,
    private readonly onRequest: RequestHandler,
  ) {
    this.map.set(first.model.manifest.version, first);
  }

  /** The model version served first (the oldest still served). */
  get first(): Served {
    return [...this.map.values()][0]!;
  }

  get name(): string {
    return this.first.model.manifest.name;
  }

  /** The model versions served now, oldest first (not those being dropped). */
  get served(): string[] {
    return [...this.map].filter(([, s]) => !s.draining).map(([v]) => v);
  }

  /** Regular requests waiting, over every version. */
  get queueDepth(): number {
    let n = 0;
    for (const s of this.map.values()) n += s.batcher.depth;
    return n;
  }

  /** Follows the rollout's list of versions (added first, then the others dropped). */
  follow(wanted: string[]): void {
    this.wanted = wanted;
    this.refused.clear();
    this.reconciler.kick();
  }

  /** Stops every version's endpoints and answers what is queued (a rollout under way finishes first). */
  async drain(): Promise<void> {
    await this.reconciler.idle();
    await Promise.all([...this.map.values()].map(async (s) => void (await s.service?.stop().catch(() => undefined))));
    await Promise.all([...this.map.values()].map((s) => s.batcher.idle()));
  }

  /** After drain(): waits for the versions being dropped, then closes every version's stages. */
  async close(): Promise<void> {
    await Promise.all(this.drops.values());
    for (const s of this.map.values()) await s.runner.close();
  }

  /** Starts a version's service instance: its own subject and the unversioned one, in the queue group. */
  async serve(s: Served): Promise<void> {
    const m = s.model.manifest;
    s.service = await new Svcm(this.nc()).add({
      name: 'cascade-worker',
      version: '0.1.0',
      description: `finishes ${m.name}@${m.version} frames from stage 1 on`,
      metadata: {
        model: m.name,
        model_version: m.version,
        worker: this.o.id,
        ep: this.o.executionProvider,
      },
      queue: this.o.queue,
    });
    const handler = (legacy: boolean) => (err: Error | null, msg: ServiceMsg) => {
      if (err) this.log('endpoint_error', { error: err.message });
      else this.onRequest(msg, s, legacy);
    };
    s.service.addEndpoint('infer', { subject: subjects.infer(m.name, m.version), handler: handler(false) });
    s.service.addEndpoint('infer-unversioned', { subject: subjects.infer(m.name), handler: handler(true) });
    await this.nc().flush(); // the server has the subscriptions before the version counts as served
  }

  /**
   * Brings the versions served to what the rollout wants: first adds the missing ones (fetched from the registry,
   * checked, warmed up, served), then drops the others, but never the last version that serves: a rollout none of
   * whose versions loads leaves the worker as it was.
   */
  private async reconcile(): Promise<void> {
    const wanted = this.wanted;
    if (!wanted) return;
    for (const version of wanted) {
      await this.drops.get(version); // wanted again while being dropped: added again once it is gone
      if (!this.running() || this.map.has(version) || this.refused.has(version)) continue;
      await this.add(version);
    }
    if (!this.running()) return;
    const serving = this.served;
    if (!wanted.some((v) => serving.includes(v))) {
      this.log('model_rollout_unserved', { wanted, serving, hint: 'none of the versions wanted loaded: the worker keeps serving what it serves' }); // prettier-ignore
      return;
    }
    for (const version of serving) if (!wanted.includes(version)) this.drop(version);
  }

  private async add(version: string): Promise<void> {
    const name = this.name;
    const o = this.o;
    if (this.served.length >= o.maxVersions) {
      this.refuse(version, `the worker serves ${o.maxVersions} versions already (--max-versions)`);
      return;
    }
    const started = performance.now();
    let s: Served | undefined;
    try {
      const { dir, from } = await fetchModel(this.nc(), name, version, o.modelCache ?? defaultModelCache());
      const model = await loadModelDir(dir);
      if (model.manifest.name !== name || model.manifest.version !== version)
        throw new CascadeError(ERROR_CODES.MODEL_DIR, `${dir} holds ${model.manifest.name}@${model.manifest.version}`);
      s = await loadVersion(model, o, this.metrics, this.log);
      if (!this.running()) throw new CascadeError(ERROR_CODES.STATE, 'the worker is shutting down');
      this.map.set(version, s);
      await this.serve(s);
      this.metrics.setVersions(this.served);
      this.metrics.modelVersions.inc({ result: 'added' });
      this.log('model_version_added', { model: name, version, from, ms: Math.round(performance.now() - started), serving: this.served }); // prettier-ignore
    } catch (err) {
      if (s) {
        this.map.delete(version);
        await s.service?.stop().catch(() => undefined);
        await s.runner.close();
      }
      this.refuse(version, (err as Error).message);
    }
  }

  private refuse(version: string, why: string): void {
    this.refused.set(version, why);
    this.metrics.modelVersions.inc({ result: 'refused' });
    this.log('model_version_refused', { model: this.name, version, error: clip(why, 300), serving: this.served, hint: 'the worker keeps serving the versions it has' }); // prettier-ignore
  }

  /** Stops a version's endpoints, answers what it has queued, then closes its stages. */
  private drop(version: string): void {
    const s = this.map.get(version);
    if (!s || s.draining) return;
    s.draining = true;
    this.metrics.setVersions(this.served);
    const dropped = (async () => {
      await s.service?.stop().catch(() => undefined);
      await s.batcher.idle();
      await s.runner.close();
      this.map.delete(version);
      this.metrics.modelVersions.inc({ result: 'dropped' });
      this.log('model_version_dropped', { model: this.name, version, serving: this.served });
    })();
    this.drops.set(version, dropped);
    void dropped.finally(() => this.drops.delete(version));
  }
}

/**
 * Loads a model version's stages on the worker's provider, warms them up and checks them against the CPU provider
 * (a provider that cannot run the graphs, or miscomputes a kernel, fails here, not on the first request).
 */
export async function loadVersion(
  model: ModelDir,
  o: CompiledWorkerOptions,
  metrics: WorkerMetrics,
  log: Log,
): Promise<Served> {
  const stages = model.manifest.stages.length;
  const runner = await StageRunner.create(model, {
    executionProvider: o.executionProvider,
    threads: o.threads,
    // Every first stage a request can name, but the last (one stage is one graph already).
    fused: o.fuse === 'on' ? Array.from({ length: stages - 1 }, (_, s) => s) : [],
  });
  const warm = performance.now();
  let parity: ParityReport;
  try {
    await warmUp(runner, model, o.executionProvider);
    parity = await checkAgainstCpu(runner, model, o.executionProvider);
  } catch (err) {
    await runner.close();
    throw err;
  }
  log('worker_warmed_up', {
    version: model.manifest.version,
    ep: o.executionProvider,
    ...(runner.fused.length ? { one_graph_from_stages: runner.fused } : {}),
    ms: Math.round(performance.now() - warm),
    ...(parity.images ? { cpu_parity_max_relative_diff: Number(parity.maxRelativeDiff.toPrecision(3)) } : {}),
  });
  const batcher = new Batcher(runner, model.manifest, o, {
    batch: (size, queued) => {
      metrics.batchSize.observe(size);
      for (const q of queued) metrics.queueSeconds.observe(q);
    },
    stage: (stage, seconds) => metrics.computeSeconds.observe({ stage: String(stage) }, seconds),
  });
  return { model, runner, batcher, draining: false };
}
