import { describe, expect, it } from 'vitest';
import { shownBinary } from '../../src/actions/upgrade/args-and-state-files.js';
import { checkedFetchUrl, shownUrl } from '../../src/ssh/connection.js';

/**
 * The URL a host is asked to download (`upgrade --fetch-on-hosts`) goes into a curl config line
 * and into messages: what may pass, and what messages show of it.
 */
describe('URLs the hosts fetch', () => {
  it('takes http and https URLs in their normalized form', () => {
    expect(checkedFetchUrl('https://Mirror.example/vault/1.21.0/vault')).toBe(
      'https://mirror.example/vault/1.21.0/vault',
    );
    expect(checkedFetchUrl('http://10.0.0.5:8080/bao?x=1')).toBe('http://10.0.0.5:8080/bao?x=1');
    // Characters a curl config line could not carry are percent-encoded by the normalization.
    expect(checkedFetchUrl('https://mirror.example/a b/"vault"')).toBe('https://mirror.example/a%20b/%22vault%22');
  });

  it('refuses other schemes, credentials in the URL and what is not a URL, without echoing a password', () => {
    expect(() => checkedFetchUrl('ftp://mirror.example/vault')).toThrow(/only http and https/);
    expect(() => checkedFetchUrl('file:///opt/vault')).toThrow(/only http and https/);
    expect(() => checkedFetchUrl('/opt/vault')).toThrow(/is not a URL/);
    let message = '';
    try {
      checkedFetchUrl('https://ops:hunter2@mirror.example/vault');
    } catch (e) {
      message = (e as Error).message;
    }
    expect(message).toMatch(/user or password/);
    expect(message).not.toContain('hunter2');
  });

  it('shows a URL without its query or fragment, where a signed URL keeps its signature', () => {
    expect(shownUrl('https://bucket.example/vault?X-Amz-Signature=abc123')).toBe('https://bucket.example/vault?...');
    expect(shownUrl('https://mirror.example/vault#part')).toBe('https://mirror.example/vault?...');
    expect(shownUrl('https://mirror.example/vault')).toBe('https://mirror.example/vault');
  });
});

describe('the binary as a playbook plan shows it', () => {
  it('a local path as given; a fetched URL without its query; a refused URL not at all', () => {
    expect(shownBinary({ binary: '/opt/vault-1.21.0' })).toBe('/opt/vault-1.21.0');
    expect(shownBinary({ binary: 'https://m.example/vault?sig=abc', fetch_on_hosts: true })).toBe(
      'https://m.example/vault?...',
    );
    const refused = shownBinary({ binary: 'https://ops:hunter2@m.example/vault', fetch_on_hosts: true });
    expect(refused).not.toContain('hunter2');
    expect(refused).toContain('refused');
  });
});
