import { describe, expect, it } from 'vitest';
import { fallTimeMs, healthPath, planLoadBalancer, renderHaproxy } from '../../src/lb/config.js';
import type { ClusterSpec } from '../../src/inventory/schema.js';

const spec = (over: Partial<ClusterSpec> = {}): ClusterSpec => ({
  tls: { ca_cert: '/etc/vaultops/ca.pem' },
  nodes: [
    { name: 'n1', api_addr: 'https://10.0.0.11:8200' },
    { name: 'n2', api_addr: 'https://[fd00::12]:8300' },
  ],
  ...over,
});

describe('lb config plans from the inventory', () => {
  it('active mode asks plain sys/health; read mode turns standby and perf standby into 200', () => {
    expect(healthPath('active')).toBe('/v1/sys/health');
    expect(healthPath('read')).toBe('/v1/sys/health?standbyok=true&perfstandbyok=true');
  });

  it('takes mode and timing from load_balancer, --mode wins, and IPv6 servers are bracketed', () => {
    const s = spec({
      load_balancer: { address: 'https://10.0.0.5:8200', mode: 'read', interval: '250ms', fall: 3, rise: 1 },
    });
    const p = planLoadBalancer('c', s);
    expect(p).toMatchObject({ mode: 'read', bind: '10.0.0.5:8200', intervalMs: 250, fall: 3, rise: 1 });
    expect(fallTimeMs(p)).toBe(1000);
    expect(planLoadBalancer('c', s, 'active').mode).toBe('active');
    expect(renderHaproxy(p)).toMatch(/^\s*server n2 \[fd00::12\]:8300$/m);
  });

  it('refuses a node without TLS and a cluster without a CA, saying what to add', () => {
    expect(() => planLoadBalancer('c', spec({ nodes: [{ name: 'n1', api_addr: 'http://10.0.0.11:8200' }] }))).toThrow(
      /plain HTTP/,
    );
    const { tls: _tls, ...noCa } = spec();
    expect(() => planLoadBalancer('c', noCa)).toThrow(/no tls\.ca_cert/);
  });
});
