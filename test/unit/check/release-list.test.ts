import { createServer, type Server } from 'node:http';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { releaseList } from '../../../src/check/release-list.js';
import { BUNDLED_RELEASES_DATE } from '../../../src/check/versions.js';

/**
 * The release list behind `check`'s version.support, read from a local server that answers in the
 * shape of the real upstream APIs (HashiCorp's releases API, GitHub's releases list): no internet here.
 */
const fixture = (name: string) => readFileSync(join(import.meta.dirname, '..', '..', 'fixtures', 'releases', name));

describe('release lists from upstream, cached, with the bundled list as the fallback', () => {
  let server: Server;
  let base: string;
  let cache: string;
  let hits: string[];
  let answer: { status: number; body?: Buffer } | 'hang' = { status: 200 };

  beforeAll(async () => {
    server = createServer((req, res) => {
      hits.push(req.url!);
      if (answer === 'hang') return; // never answers: the fetch's own timeout must end it
      res.writeHead(answer.status, { 'content-type': 'application/json' });
      res.end(answer.body ?? fixture(req.url!.startsWith('/vault') ? 'vault.json' : 'openbao.json'));
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    base = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
  });
  afterAll(() => {
    server.closeAllConnections();
    server.close();
  });
  beforeEach(() => {
    cache = mkdtempSync(join(tmpdir(), 'vaultops-releases-'));
    hits = [];
    answer = { status: 200 };
    return () => rmSync(cache, { recursive: true, force: true });
  });
  const env = () => ({
    VAULTOPS_CACHE_DIR: cache,
    VAULTOPS_RELEASES_URL_VAULT: `${base}/vault`,
    VAULTOPS_RELEASES_URL_OPENBAO: `${base}/openbao`,
  });

  it('reads the stable open-source releases: no pre-release, draft or enterprise build', async () => {
    const vault = await releaseList('vault', { env: env() });
    expect(vault.source).toBe('upstream');
    expect(vault.versions.sort()).toEqual(['1.19.14', '1.20.8', '1.20.9', '1.21.0', '1.21.1', '1.21.3', '1.21.4']);
    const bao = await releaseList('openbao', { env: env() });
    expect(bao.versions.sort()).toEqual(['2.5.9', '2.6.4', '2.6.5', '2.7.2', '2.7.3', '2.7.4']);
  });

  it('asks upstream once a day: the second check reads the cache, a day later it asks again', async () => {
    const now = new Date('2026-12-02T10:00:00Z');
    await releaseList('vault', { env: env(), now });
    const again = await releaseList('vault', { env: env(), now: new Date('2026-12-02T20:00:00Z') });
    expect(again).toMatchObject({ source: 'cache', asOf: now.toISOString() });
    expect(hits).toHaveLength(1);
    await releaseList('vault', { env: env(), now: new Date('2026-12-03T11:00:00Z') });
    expect(hits).toHaveLength(2);
  });

  it('upstream down: the old cached list if there is one, else the bundled list with its date; asked again an hour later', async () => {
    const t0 = new Date('2026-12-02T10:00:00Z');
    answer = { status: 503 };
    const first = await releaseList('vault', { env: env(), now: t0 });
    expect(first).toMatchObject({ source: 'bundled', asOf: BUNDLED_RELEASES_DATE });
    expect(first.why).toContain('HTTP 503');
    // Within the hour, upstream is not asked again: a cron'd check stays fast when offline.
    await releaseList('vault', { env: env(), now: new Date('2026-12-02T10:30:00Z') });
    expect(hits).toHaveLength(1);
    answer = { status: 200 };
    const later = await releaseList('vault', { env: env(), now: new Date('2026-12-02T11:01:00Z') });
    expect(later.source).toBe('upstream');
    // Two days on, upstream fails again: the cached list, older than a day, is better than the bundled one.
    answer = { status: 500 };
    const stale = await releaseList('vault', { env: env(), now: new Date('2026-12-04T12:00:00Z') });
    expect(stale).toMatchObject({ source: 'cache', asOf: '2026-12-02T11:01:00.000Z' });
    expect(stale.versions).toContain('1.21.4');
  });

  it('an answer that is not a release list, or a server that never answers, falls back the same way', async () => {
    answer = { status: 200, body: Buffer.from('<html>captive portal</html>') };
    expect((await releaseList('openbao', { env: env() })).source).toBe('bundled');
    rmSync(cache, { recursive: true, force: true });
    answer = 'hang';
    const t = Date.now();
    const hung = await releaseList('openbao', { env: env() });
    expect(hung.source).toBe('bundled');
    expect(hung.why).toContain('no answer within');
    expect(Date.now() - t).toBeLessThan(15_000);
  });

  it('goes through HTTP_PROXY as every other client of vaultops does (a forward proxy sees the absolute URL)', async () => {
    const seen: string[] = [];
    const proxy = createServer((req, res) => {
      seen.push(req.url!);
      const target = new URL(req.url!);
      fetch(target)
        .then(async (r) => {
          res.writeHead(r.status, { 'content-type': 'application/json' });
          res.end(Buffer.from(await r.arrayBuffer()));
        })
        .catch(() => res.writeHead(502).end());
    });
    await new Promise<void>((r) => proxy.listen(0, '127.0.0.1', r));
    try {
      const viaProxy = { ...env(), HTTP_PROXY: `http://127.0.0.1:${(proxy.address() as { port: number }).port}` };
      const list = await releaseList('vault', { env: viaProxy });
      expect(list.source).toBe('upstream');
      expect(seen).toEqual([`${base}/vault`]);
      // NO_PROXY naming the host: straight to it.
      rmSync(cache, { recursive: true, force: true });
      await releaseList('vault', { env: { ...viaProxy, NO_PROXY: '127.0.0.1' } });
      expect(seen).toHaveLength(1);
    } finally {
      proxy.closeAllConnections();
      proxy.close();
    }
  });

  it('--offline asks no one: the cached list however old, else the bundled one', async () => {
    expect((await releaseList('vault', { env: env(), offline: true })).source).toBe('bundled');
    await releaseList('vault', { env: env(), now: new Date('2026-01-01T00:00:00Z') });
    const offline = await releaseList('vault', { env: env(), offline: true });
    expect(offline.source).toBe('cache');
    expect(hits).toHaveLength(1);
  });
});
