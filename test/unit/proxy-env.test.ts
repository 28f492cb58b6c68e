import { describe, expect, it } from 'vitest';
import { noProxyMatches, proxyFor, proxyName } from '../../src/vault/proxy.js';
import { UnreachableError } from '../../src/core/errors.js';
import { redactor } from '../../src/core/redact.js';

describe('NO_PROXY is matched as curl matches it', () => {
  it('names match themselves and every name below them, with or without a leading dot or *.', () => {
    for (const entry of ['example.com', '.example.com', '*.example.com'])
      expect(noProxyMatches('vault.example.com', 443, entry), entry).toBe(true);
    expect(noProxyMatches('example.com', 443, 'example.com')).toBe(true);
    expect(noProxyMatches('badexample.com', 443, 'example.com')).toBe(false);
    expect(noProxyMatches('example.com.evil.net', 443, 'example.com')).toBe(false);
    expect(noProxyMatches('Vault.Example.COM.', 443, 'example.com')).toBe(true);
  });

  it('* alone matches everything; lists split on commas and spaces', () => {
    expect(noProxyMatches('anything', 1, '*')).toBe(true);
    expect(noProxyMatches('b.net', 443, 'a.org, b.net')).toBe(true);
    expect(noProxyMatches('b.net', 443, 'a.org b.net')).toBe(true);
    expect(noProxyMatches('c.net', 443, 'a.org,,b.net')).toBe(false);
    expect(noProxyMatches('x', 443, '')).toBe(false);
  });

  it('IP addresses match exactly or by CIDR range, never as name suffixes', () => {
    expect(noProxyMatches('10.1.2.3', 8200, '10.1.2.3')).toBe(true);
    expect(noProxyMatches('10.1.2.3', 8200, '10.0.0.0/8')).toBe(true);
    expect(noProxyMatches('11.1.2.3', 8200, '10.0.0.0/8')).toBe(false);
    expect(noProxyMatches('110.1.2.3', 8200, '10.1.2.3')).toBe(false);
    expect(noProxyMatches('[::1]', 8200, '::1')).toBe(true);
    expect(noProxyMatches('fd00::5', 8200, 'fd00::/8')).toBe(true);
    expect(noProxyMatches('fd00::5', 8200, '10.0.0.0/8')).toBe(false);
  });

  it('host:port limits an entry to that port', () => {
    expect(noProxyMatches('vault.example.com', 8200, 'example.com:8200')).toBe(true);
    expect(noProxyMatches('vault.example.com', 443, 'example.com:8200')).toBe(false);
    expect(noProxyMatches('10.0.0.1', 8200, '10.0.0.1:8200')).toBe(true);
    expect(noProxyMatches('10.0.0.1', 8201, '10.0.0.1:8200')).toBe(false);
  });
});

describe('the proxy comes from the environment, lower-case name first', () => {
  const url = (u: string) => new URL(u);
  it('https targets use https_proxy/HTTPS_PROXY, http targets http_proxy/HTTP_PROXY', () => {
    expect(proxyFor(url('https://v:8200'), { HTTPS_PROXY: 'http://p:3128' })?.proxy.host).toBe('p:3128');
    expect(proxyFor(url('https://v:8200'), { https_proxy: 'http://a:1', HTTPS_PROXY: 'http://b:2' })?.variable).toBe(
      'https_proxy',
    );
    expect(proxyFor(url('http://v:8200'), { HTTPS_PROXY: 'http://p:3128' })).toBeUndefined();
    expect(proxyFor(url('http://v:8200'), { HTTP_PROXY: 'http://p:3128' })?.variable).toBe('HTTP_PROXY');
    expect(proxyFor(url('https://v:8200'), {})).toBeUndefined();
    expect(proxyFor(url('https://v:8200'), { HTTPS_PROXY: '  ' })).toBeUndefined();
  });

  it('NO_PROXY (or no_proxy) sends matching hosts direct; a scheme-less proxy is http://', () => {
    const e = { HTTPS_PROXY: 'p:3128', no_proxy: '.internal' };
    expect(proxyFor(url('https://vault.internal:8200'), e)).toBeUndefined();
    expect(proxyFor(url('https://vault.example.com:8200'), e)?.proxy.href).toBe('http://p:3128/');
  });

  it('refuses a proxy it cannot speak to, and keeps credentials out of names and logs', () => {
    expect(() => proxyFor(url('https://v'), { HTTPS_PROXY: 'socks5://p:1080' })).toThrow(UnreachableError);
    const r = proxyFor(url('https://v'), { HTTPS_PROXY: 'http://ops:s3cr3t-proxy-pw@p:3128' })!;
    expect(proxyName(r)).toBe('http://p:3128 (from HTTPS_PROXY)');
    expect(redactor.redact('pw=s3cr3t-proxy-pw')).not.toContain('s3cr3t-proxy-pw');
  });
});
