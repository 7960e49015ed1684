import { existsSync, mkdirSync, rmdirSync, writeFileSync } from 'node:fs';

/** A cgroup (v1 cpu controller or v2) that limits the CPU of the processes put in it. */
export class CpuLimit {
  private constructor(
    readonly dir: string,
    private readonly v2: boolean,
  ) {}

  static create(name: string): CpuLimit {
    for (const [root, v2] of [
      ['/sys/fs/cgroup/cpu', false],
      ['/sys/fs/cgroup', true],
    ] as const) {
      if (!existsSync(`${root}/${v2 ? 'cgroup.controllers' : 'cpu.cfs_quota_us'}`)) continue;
      const dir = `${root}/${name}`;
      mkdirSync(dir, { recursive: true });
      return new CpuLimit(dir, v2);
    }
    throw new Error('no writable cgroup CPU controller (run as root on Linux): CPU-limited benchmarks need one');
  }

  /** Limits to `cores` of CPU time (0.5: half a core), over a 10 ms period. */
  set(cores: number): void {
    const period = 10_000;
    const quota = Math.max(1000, Math.round(cores * period));
    if (this.v2) writeFileSync(`${this.dir}/cpu.max`, `${quota} ${period}`);
    else {
      writeFileSync(`${this.dir}/cpu.cfs_period_us`, String(period));
      writeFileSync(`${this.dir}/cpu.cfs_quota_us`, String(quota));
    }
  }

  add(pid: number): void {
    writeFileSync(`${this.dir}/cgroup.procs`, String(pid));
  }

  remove(): void {
    try {
      rmdirSync(this.dir);
    } catch {
      // still has processes: they are gone soon, and an empty cgroup is harmless
    }
  }
}
