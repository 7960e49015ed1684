import { describe, expect, it } from 'vitest';
import { compileEdgeOptions } from './options.js';

describe('edge id', () => {
  it('one subject token, or dot-separated parts for a camera at a site; its inbox follows it', () => {
    expect(compileEdgeOptions({ model: 'm', id: 'cam-1' }).natsAuth.inboxPrefix).toBe('_INBOX.cam-1');
    expect(compileEdgeOptions({ model: 'm', id: 'site-a.cam_2' }).natsAuth.inboxPrefix).toBe('_INBOX.site-a.cam_2');
  });

  it('wildcards, spaces, empty parts and stray dots are refused, naming the id', () => {
    for (const id of ['cam*', 'site.>', 'cam 1', 'site..cam', '.cam', 'cam.', ''])
      expect(() => compileEdgeOptions({ model: 'm', id }), id).toThrow(`id "${id}" must be letters, digits`);
  });
});
