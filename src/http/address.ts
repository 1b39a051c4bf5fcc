// The address a client on this machine dials to reach a listener: a wildcard bind (0.0.0.0, ::) is reached on the
// loopback, an IPv6 literal goes in brackets. Every listener reports its URL or target this way.

export function dialAddress(host: string, port: number): string {
  const reachable = host === '0.0.0.0' || host === '::' ? '127.0.0.1' : host;
  return `${reachable.includes(':') ? `[${reachable}]` : reachable}:${port}`;
}
