import { describe, expect, it } from 'vitest';
import { compileEdgeOptions } from './options.js';

describe('state bits', () => {
  it('2 to 8 levels-as-bits for int8, 8 by default; other widths or encodings are refused, naming the field', () => {
    expect(compileEdgeOptions({ model: 'm' }).stateBits).toBe(8);
    expect(compileEdgeOptions({ model: 'm', stateBits: 6 }).stateBits).toBe(6);
    for (const b of [1, 9, 5.5]) expect(() => compileEdgeOptions({ model: 'm', stateBits: b })).toThrow(/stateBits/);
    expect(() => compileEdgeOptions({ model: 'm', stateBits: 6, encoding: 'fp16' })).toThrow(
      'stateBits applies to the int8 encoding, not fp16',
    );
  });
});

describe('edge id', () => {
  it('one subject token, or dot-separated parts for a camera at a site; its inbox follows it', () => {
    expect(compileEdgeOptions({ model: 'm', id: 'cam-1' }).natsAuth.inboxPrefix).toBe('_INBOX.cam-1');
    expect(compileEdgeOptions({ model: 'm', id: 'site-a.cam_2' }).natsAuth.inboxPrefix).toBe('_INBOX.site-a.cam_2');
  });

  it('wildcards, spaces, empty parts and stray dots are refused, naming the id', () => {
    for (const id of ['cam*', 'site.>', 'cam 1', 'site..cam', '.cam', 'cam.', ''])
      expect(() => compileEdgeOptions({ model: 'm', id }), id).toThrow(`id must be letters, digits`);
  });
});
