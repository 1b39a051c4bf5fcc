// The address of a connection's peer, as the gateway reports it (logs, X-Forwarded-For, rate-limit keys).

/** The connection's peer address, with IPv4-mapped IPv6 (`::ffff:10.0.0.1`) shown as plain IPv4. */
export function peerAddress(remote: string | undefined): string {
  if (remote === undefined) return '';
  return remote.startsWith('::ffff:') && remote.includes('.') ? remote.slice(7) : remote;
}
