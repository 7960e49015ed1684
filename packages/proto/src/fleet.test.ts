import { describe, expect, it } from 'vitest';
import { ConfigError } from './errors.js';
import { configKey, parseEdgeSettings } from './fleet.js';

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
    ['{"latency_target_ms":-1}', /latency_target_ms must be milliseconds >= 0/],
  ])('refuses %s, naming the key and the field', (text, why) => {
    expect(() => parseEdgeSettings(text, configKey.edge('cam-1'))).toThrow(why);
    expect(() => parseEdgeSettings(text, configKey.edge('cam-1'))).toThrow(ConfigError);
  });
});
