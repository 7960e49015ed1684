import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { REPO, requireProgram } from './harness.js';

const DIR = join(REPO, 'deploy/prometheus');
const promtool = (...args: string[]) =>
  (requireProgram('promtool'), execFileSync)('promtool', args, {
    cwd: DIR,
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'pipe'],
  });

describe('prometheus - shipped config and rules', () => {
  it('promtool check config accepts prometheus.yml and its rule files', () => {
    expect(promtool('check', 'config', 'prometheus.yml')).toMatch(/SUCCESS: prometheus.yml is valid/);
  });

  it("promtool check config accepts a site's Prometheus agent", () => {
    expect(promtool('check', 'config', '--agent', 'site/prometheus-agent.yml')).toMatch(/SUCCESS/);
  });

  it('promtool check rules accepts the recording and alert rules', () => {
    const out = promtool('check', 'rules', 'rules/recording.yml', 'rules/alerts.yml');
    expect(out).toMatch(/recording\.yml\s+SUCCESS: 7 rules found/);
    expect(out).toMatch(/alerts\.yml\s+SUCCESS: 15 rules found/);
  });

  it('promtool test rules: recorded rates and every alert behave as specified', () => {
    expect(promtool('test', 'rules', 'tests/rules.test.yml')).toMatch(/SUCCESS/);
  });
});
