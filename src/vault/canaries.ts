import { createHash } from 'node:crypto';
import { VaultopsError } from '../core/errors.js';
import { redactor } from '../core/redact.js';
import type { VaultClient } from './client.js';

export interface CanarySpec {
  path: string;
  field?: string | undefined;
  expect_sha256?: string | undefined;
}

export interface CanaryResult {
  path: string;
  field?: string | undefined;
  /** `match`: the hash is the expected one; `mismatch`: another value; `missing`: not readable. */
  result: 'match' | 'mismatch' | 'missing';
  /** Where the expected hash came from. */
  expected_from: 'inventory' | 'live-cluster' | 'none';
  /** Why it is missing, when it is (Vault's error, never the value). */
  problem?: string | undefined;
  read_at?: string | undefined;
}

/**
 * The value a canary stands for, as a string: the named field, else the only field, else the
 * whole data object as sorted JSON. KV v2 (`<mount>/data/<path>`) nests the fields under data.data.
 * sha256 of this string (UTF-8) is what `expect_sha256` holds: `printf %s "$value" | sha256sum`.
 */
export function canaryValue(body: unknown, spec: CanarySpec): string | undefined {
  const outer = (body as { data?: unknown })?.data;
  const kv2 =
    /\/data\//.test(spec.path) && outer && typeof outer === 'object' && 'data' in outer && 'metadata' in outer;
  const fields = (kv2 ? (outer as { data: unknown }).data : outer) as Record<string, unknown> | undefined | null;
  if (!fields || typeof fields !== 'object') return undefined;
  let value: unknown;
  if (spec.field !== undefined) value = fields[spec.field];
  else {
    const keys = Object.keys(fields).sort();
    value = keys.length === 1 ? fields[keys[0]!] : JSON.stringify(Object.fromEntries(keys.map((k) => [k, fields[k]])));
  }
  if (value === undefined || value === null) return undefined;
  const text = typeof value === 'string' ? value : JSON.stringify(value);
  // The value is a secret: from here on it may only be hashed.
  redactor.add(text);
  return text;
}

export function sha256Hex(text: string): string {
  return createHash('sha256').update(text, 'utf8').digest('hex');
}

/** Reads one canary and returns the hash of its value (undefined when absent), never the value. */
export async function readCanaryHash(
  client: VaultClient,
  spec: CanarySpec,
): Promise<{ sha256?: string | undefined; problem?: string | undefined }> {
  try {
    const body = await client.read(spec.path);
    const value = canaryValue(body, spec);
    if (value === undefined)
      return { problem: spec.field === undefined ? 'no data at this path' : `no field "${spec.field}"` };
    return { sha256: sha256Hex(value) };
  } catch (e) {
    const status = (e as { status?: number }).status;
    return {
      problem:
        status === 404
          ? 'not found (404)'
          : status === 403
            ? 'permission denied (403)'
            : redactor.redact(e instanceof Error ? e.message : String(e)),
    };
  }
}

export class CanaryMismatchError extends VaultopsError {}
