/**
 * Credentials out of text that may reach a log, an error or a metric label: the password of a URL's user
 * (`rtsp://admin:pw@cam/1`, `nats://u:pw@host:4222`) and secret-looking query parameters (`?password=`, `token=`,
 * `secret=`, `key=`, `pass=`, `auth=`) become `***`. The user name and the rest stay, so the text still says which
 * camera or server it was about. Browser-safe.
 */
export function redactSecrets(text: string): string {
  return text
    .replace(/\b([a-z][a-z0-9+.-]*:\/\/)([^\s/?#@:]*):([^\s/?#]*)@/gi, '$1$2:***@')
    .replace(/([?&;](?:password|passwd|pass|pwd|token|secret|key|auth|access_token)=)[^&;\s"']*/gi, '$1***');
}
