import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { cacheDir } from '../core/cache-dir.js';
import { writeFileAtomicSync } from '../core/atomic-write.js';
import { parseVersion } from '../core/version.js';
import { requestVia } from '../vault/proxied-request.js';
import { BUNDLED_RELEASES_DATE, KNOWN_RELEASES } from './versions.js';

/**
 * The releases a version is judged against: the upstream release list (HashiCorp's releases API for
 * Vault, OpenBao's GitHub releases), cached for a day; the list bundled with vaultops when upstream
 * cannot be reached (air-gapped sites, a proxy that refuses), shown with its date so an old list is
 * seen to be old.
 */
export interface ReleaseList {
  versions: string[];
  source: 'upstream' | 'cache' | 'bundled';
  /** When the list was fetched (upstream, cache) or compiled (bundled): ISO date. */
  asOf: string;
  /** Where it came from: the URL, or "bundled". */
  origin: string;
  /** Why upstream was not used, when it was not. */
  why?: string | undefined;
}

export const UPSTREAM_RELEASE_URLS: Record<string, string> = {
  vault: 'https://api.releases.hashicorp.com/v1/releases/vault?limit=20',
  openbao: 'https://api.github.com/repos/openbao/openbao/releases?per_page=100',
};

const FRESH_MS = 24 * 3600_000;
/** After a failed fetch, upstream is not asked again for this long: `check` from cron stays fast offline. */
const RETRY_AFTER_FAILURE_MS = 3600_000;
const FETCH_TIMEOUT_MS = 4_000;

interface CacheFile {
  url: string;
  fetched_at?: string | undefined;
  versions?: string[] | undefined;
  failed_at?: string | undefined;
  failure?: string | undefined;
}

export interface ReleaseListOptions {
  env?: NodeJS.ProcessEnv | undefined;
  now?: Date | undefined;
  /** No network: the cached list however old, else the bundled one. */
  offline?: boolean | undefined;
  fetchText?: ((url: string, signal: AbortSignal, env: NodeJS.ProcessEnv) => Promise<string>) | undefined;
}

/** The upstream URL for a flavour: VAULTOPS_RELEASES_URL_VAULT / _OPENBAO override it (mirrors, tests). */
export function releaseListUrl(flavor: string, env: NodeJS.ProcessEnv = process.env): string | undefined {
  return env[`VAULTOPS_RELEASES_URL_${flavor.toUpperCase()}`] || UPSTREAM_RELEASE_URLS[flavor];
}

export async function releaseList(flavor: string, o: ReleaseListOptions = {}): Promise<ReleaseList> {
  const env = o.env ?? process.env;
  const now = o.now ?? new Date();
  const bundled = (why: string): ReleaseList => ({
    versions: [...(KNOWN_RELEASES[flavor] ?? [])],
    source: 'bundled',
    asOf: BUNDLED_RELEASES_DATE,
    origin: 'bundled',
    why,
  });
  const url = releaseListUrl(flavor, env);
  if (!url) return bundled(`no upstream release list for ${flavor}`);
  const file = join(cacheDir(env), 'releases', `${flavor}.json`);
  const cached = readCache(file, url);
  const fromCache = (why?: string): ReleaseList | undefined =>
    cached?.versions?.length && cached.fetched_at
      ? { versions: cached.versions, source: 'cache', asOf: cached.fetched_at, origin: url, why }
      : undefined;
  const age = (iso: string | undefined) => (iso ? now.getTime() - Date.parse(iso) : Infinity);

  if (age(cached?.fetched_at) < FRESH_MS) return fromCache()!;
  if (o.offline) return fromCache('offline: the cached list, however old') ?? bundled('offline');
  if (age(cached?.failed_at) < RETRY_AFTER_FAILURE_MS) {
    const why = `upstream failed at ${cached!.failed_at} (${cached!.failure ?? 'error'}); asked again an hour later`;
    return fromCache(why) ?? bundled(why);
  }
  try {
    const text = await (o.fetchText ?? fetchText)(url, AbortSignal.timeout(FETCH_TIMEOUT_MS), env);
    const versions = parseReleaseList(flavor, text);
    if (!versions.length) throw new Error('the answer lists no release');
    writeCache(file, { url, fetched_at: now.toISOString(), versions });
    return { versions, source: 'upstream', asOf: now.toISOString(), origin: url };
  } catch (e) {
    const why = `upstream ${url} not reached: ${describe(e)}`;
    writeCache(file, { ...cached, url, failed_at: now.toISOString(), failure: describe(e) });
    return fromCache(why) ?? bundled(why);
  }
}

/**
 * Stable releases from an upstream answer. HashiCorp's API: an array of {version, is_prerelease,
 * license_class}; enterprise builds (+ent, license_class enterprise) are not the open line. GitHub's:
 * an array of {tag_name, draft, prerelease}.
 */
export function parseReleaseList(flavor: string, text: string): string[] {
  const data: unknown = JSON.parse(text);
  const items = Array.isArray(data)
    ? data
    : Array.isArray((data as { releases?: unknown }).releases)
      ? (data as { releases: unknown[] }).releases
      : [];
  const out = new Set<string>();
  for (const raw of items) {
    if (!raw || typeof raw !== 'object') continue;
    const r = raw as Record<string, unknown>;
    if (r['draft'] === true || r['prerelease'] === true || r['is_prerelease'] === true) continue;
    if (typeof r['license_class'] === 'string' && r['license_class'] !== 'oss') continue;
    const v = String(r['version'] ?? r['tag_name'] ?? '').replace(/^v/, '');
    const p = parseVersion(v);
    if (!p || p.pre || v.includes('+')) continue;
    out.add(p.parts.join('.'));
  }
  if (!out.size && flavor && items.length) throw new Error(`no stable ${flavor} release in ${items.length} entries`);
  return [...out];
}

/** One GET, through HTTPS_PROXY unless NO_PROXY names the host. A release list is a few hundred kB. */
async function fetchText(url: string, signal: AbortSignal, env: NodeJS.ProcessEnv): Promise<string> {
  const headers = { accept: 'application/json', 'user-agent': 'vaultops (release check)' };
  const r = await requestVia(new URL(url), { headers, signal, env, maxBytes: 8 << 20 });
  if (r.status < 200 || r.status > 299) throw new Error(`HTTP ${r.status}`);
  return r.body.toString('utf8');
}

function readCache(file: string, url: string): CacheFile | undefined {
  try {
    const c = JSON.parse(readFileSync(file, 'utf8')) as CacheFile;
    return c.url === url ? c : undefined;
  } catch {
    return undefined;
  }
}

function writeCache(file: string, c: CacheFile): void {
  try {
    mkdirSync(join(file, '..'), { recursive: true, mode: 0o700 });
    writeFileAtomicSync(file, JSON.stringify(c, null, 2) + '\n');
  } catch {
    // A read-only cache costs a fetch next time, nothing else.
  }
}

function describe(e: unknown): string {
  const err = e as Error & { cause?: { code?: string } };
  if (err.name === 'TimeoutError' || err.name === 'AbortError') return `no answer within ${FETCH_TIMEOUT_MS / 1000} s`;
  return err.cause?.code ?? err.message;
}
