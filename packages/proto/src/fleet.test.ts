import { describe, expect, it } from 'vitest';
import { ConfigError } from './errors.js';
import { canaryShare, configKey, edgeVersion, parseEdgeSettings, parseModelRollout } from './fleet.js';

describe('fleet settings', () => {
  it('accepts every setting with a valid value', () => {
    const s = parseEdgeSettings(
      '{"operating_point":"economy","thresholds":[0.9,0.5,0],"shadow_rate":0.05,"controller":true,' +
        '"accuracy_budget":0.01,"latency_target_ms":250,"bandwidth_bytes_per_s":100000}',
      configKey.edge('cam-1'),
    );
    expect(s).toMatchObject({ operating_point: 'economy', controller: true, shadow_rate: 0.05 });
    expect(parseEdgeSettings('{}', configKey.default)).toEqual({});
  });

  it.each([
    ['not json', /edges.cam-1: not JSON/],
    ['[1]', /must be a JSON object/],
    ['{"shadow_rate":2}', /shadow_rate must be a number from 0 to 1, got 2/],
    ['{"controller":"yes"}', /controller must be true or false, got "yes"/],
    ['{"thresholds":[0.5,"x"]}', /thresholds must be a list of numbers/],
    ['{"operating_point":"a b"}', /operating_point must be a name/],
    ['{"shadow_rte":0.1}', /unknown setting "shadow_rte"; the settings are operating_point, thresholds/],
    ['{"latency_target_ms":-1}', /latency_target_ms must be a number from 0 to 3600000, got -1/],
  ])('refuses %s, naming the key and the field', (text, why) => {
    expect(() => parseEdgeSettings(text, configKey.edge('cam-1'))).toThrow(why);
    expect(() => parseEdgeSettings(text, configKey.edge('cam-1'))).toThrow(ConfigError);
  });
});

describe('model rollouts', () => {
  const key = configKey.model('ranet');
  it('accepts a rollout with a canary and the one it replaced', () => {
    const r = parseModelRollout(
      '{"workers":["a1","b2"],"edges":"a1","canary":{"version":"b2","percent":10,"edges":["cam-1"]},' +
        '"previous":{"workers":["a1"],"edges":"a1"}}',
      key,
    );
    expect(r.canary?.version).toBe('b2');
    expect(r.previous?.workers).toEqual(['a1']);
  });

  it.each([
    ['{"edges":"a1"}', /models.ranet: workers must be a list of 1 to 8 versions, got undefined/],
    ['{"workers":[],"edges":"a1"}', /workers must be a list of 1 to 8 versions/],
    ['{"workers":["a 1"],"edges":"a1"}', /workers must be a list/],
    ['{"workers":["a1"]}', /edges must be a version, got undefined/],
    ['{"workers":["a1"],"edges":"a1","canary":{"version":"b2","percent":101}}', /canary.percent must be a number from 0 to 100/], // prettier-ignore
    ['{"workers":["a1"],"edges":"a1","canary":{"percent":5}}', /canary.version must be a version/],
    ['{"workers":["a1"],"edges":"a1","verison":"x"}', /unknown field "verison"/],
    ['{"workers":["a1"],"edges":"a1","previous":{"workers":["a0"],"edges":"a0","previous":{}}}', /previous: unknown field "previous"/], // prettier-ignore
  ])('refuses %s, naming the field', (text, why) => {
    expect(() => parseModelRollout(text, key)).toThrow(why);
  });

  it('picks canary edges by their id: the same ones everywhere, more of them as the share grows', () => {
    const ids = Array.from({ length: 2000 }, (_, i) => `cam-${i}`);
    const at = (percent: number) =>
      ids.filter((id) => edgeVersion({ workers: ['a', 'b'], edges: 'a', canary: { version: 'b', percent } }, id) === 'b'); // prettier-ignore
    const ten = at(10);
    expect(ten.length / ids.length).toBeGreaterThan(0.08);
    expect(ten.length / ids.length).toBeLessThan(0.12);
    expect(at(30).filter((id) => ten.includes(id))).toEqual(ten);
    expect(at(0)).toEqual([]);
    expect(at(100)).toEqual(ids);
    expect(canaryShare('cam-1')).toBe(canaryShare('cam-1'));
    expect(edgeVersion({ workers: ['a', 'b'], edges: 'a', canary: { version: 'b', edges: ['cam-7'] } }, 'cam-7')).toBe('b'); // prettier-ignore
    expect(edgeVersion({ workers: ['a'], edges: 'a' }, 'cam-7')).toBe('a');
  });
});
