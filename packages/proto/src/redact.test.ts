import { describe, expect, it } from 'vitest';
import { redactSecrets } from './redact.js';

describe('redactSecrets - no credential reaches a log line', () => {
  it("hides a URL's password and secret query parameters, and keeps what names the camera or server", () => {
    expect(redactSecrets('source rtsp://admin:hunter2@10.0.0.7:554/Streaming/101: ffmpeg failed')).toBe(
      'source rtsp://admin:***@10.0.0.7:554/Streaming/101: ffmpeg failed',
    );
    expect(redactSecrets('cannot connect to NATS at nats://a:p%40ss@h:4222,tls://b:c@i:4222 (set by --nats)')).toBe(
      'cannot connect to NATS at nats://a:***@h:4222,tls://b:***@i:4222 (set by --nats)',
    );
    expect(redactSecrets('rtsp://admin:p@ss@cam:554/1')).toBe('rtsp://admin:***@cam:554/1'); // the last @ ends it
    expect(redactSecrets('http://cam/snap.jpg?user=admin&password=hunter2&size=720')).toBe(
      'http://cam/snap.jpg?user=admin&password=***&size=720',
    );
    expect(redactSecrets('{"url":"rtsp://cam.local/live?token=abc123"}')).toBe(
      '{"url":"rtsp://cam.local/live?token=***"}',
    );
  });

  it('leaves text without credentials as it is', () => {
    for (const s of ['rtsp://cam.local:554/live', 'nats://127.0.0.1:4222', '/dev/video0', 'a: b @ c', 'x=1&key'])
      expect(redactSecrets(s)).toBe(s);
  });
});
