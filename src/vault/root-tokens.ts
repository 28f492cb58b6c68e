import { VaultopsError } from '../core/errors.js';
import { redactor } from '../core/redact.js';
import type { VaultClient } from './client.js';
import {
  isPermissionDenied,
  listAccessors,
  lookupAccessor,
  revokeAccessor,
  revokeSelf,
  type TokenAccessorInfo,
} from './ceremonies.js';

export interface RootTokenReport {
  accessor: string;
  /** ISO time; the token store keeps seconds since the epoch. */
  created: string;
  displayName: string;
  path: string;
  /** Is this the token this process is using (revoked last, with revoke-self)? */
  isOwn: boolean;
}

/**
 * Finds tokens carrying the `root` policy: LIST auth/token/accessors (sudo), then
 * lookup-accessor for each, which never returns the token itself. Selection is by
 * policy, not display name: a root token made by `auth/token/create` shows its creator's path.
 */
export async function huntRootTokens(client: VaultClient): Promise<RootTokenReport[]> {
  const own = await client.lookupSelf().catch(() => undefined);
  const accessors = await listAccessors(client);
  const found: RootTokenReport[] = [];
  for (const accessor of accessors) {
    let info: TokenAccessorInfo;
    try {
      info = await lookupAccessor(client, accessor);
    } catch {
      continue; // revoked between the list and the lookup
    }
    if (!info.policies.includes('root')) continue;
    found.push({
      accessor,
      created: new Date(info.creation_time * 1000).toISOString(),
      displayName: info.display_name,
      path: info.path,
      isOwn: own?.accessor === accessor,
    });
  }
  return found.sort((a, b) => a.created.localeCompare(b.created));
}

/** Revokes by accessor; the token this client uses goes last and by revoke-self. */
export async function revokeRootTokens(
  client: VaultClient,
  reports: readonly RootTokenReport[],
  log: (m: string) => void = () => undefined,
): Promise<string[]> {
  const revoked: string[] = [];
  for (const r of [...reports].sort((a, b) => Number(a.isOwn) - Number(b.isOwn))) {
    if (r.isOwn) await revokeSelf(client);
    else await revokeAccessor(client, r.accessor);
    revoked.push(r.accessor);
    log(`revoked ${r.accessor}${r.isOwn ? ' (the token this run used)' : ''}`);
  }
  return revoked;
}

/**
 * Revokes one token by value, using the token itself (revoke-self needs no other privilege), and
 * confirms it is gone: lookup-self must then be refused.
 */
export async function revokeTokenValue(
  anyClient: VaultClient,
  token: string,
): Promise<{ accessor: string | undefined }> {
  redactor.add(token);
  const own = anyClient.withToken(token);
  let accessor: string | undefined;
  try {
    accessor = (await own.lookupSelf()).accessor;
  } catch (e) {
    if (isPermissionDenied(e)) return { accessor: undefined }; // already revoked (or never valid)
    throw e;
  }
  await revokeSelf(own);
  await assertTokenDead(own);
  return { accessor };
}

export async function assertTokenDead(client: VaultClient): Promise<void> {
  try {
    await client.lookupSelf();
  } catch (e) {
    if (isPermissionDenied(e)) return;
    throw e;
  }
  throw new VaultopsError('The token still works after it was revoked.', {
    hint: 'Revoke it by accessor with a privileged token, and check for a snapshot restore that resurrected it.',
  });
}
