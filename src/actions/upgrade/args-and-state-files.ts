import { z } from 'zod';
import { InputError } from '../../core/errors.js';
import { checkedFetchUrl, shownUrl } from '../../ssh/connection.js';
import { fetchedBinary, type BinarySource } from '../../upgrade/binary-install.js';
import type { ActionContext } from '../types.js';
import { upgradeStateFiles } from '../../upgrade/state-files.js';

/** Arguments every upgrade action takes: the new binary and its expected sha256. */
export const binaryArgs = {
  binary: z.string().min(1).describe('Local path of the new server binary (with fetch_on_hosts: its http(s) URL).'),
  sha256: z
    .string()
    .regex(/^[0-9a-fA-F]{64}$/, '64 hex digits')
    .describe("Its expected sha256 (from the release's SHA256SUMS)."),
  fetch_on_hosts: z
    .boolean()
    .default(false)
    .describe(
      'When true, binary is an http(s) URL that each host downloads itself (curl or wget), checked there against sha256; nothing is sent over SSH.',
    ),
  trust_on_first_use: z
    .boolean()
    .default(false)
    .describe(
      "Refused when true: only the operator's --trust-on-first-use flag (vaultops upgrade/check) may accept unknown SSH host keys; pin ssh.host_key or ssh.known_hosts in the inventory.",
    ),
};

/** The binary the upgrade actions stage: a local file, or a URL the hosts fetch (`fetch_on_hosts`). */
export function binarySourceOf(args: {
  binary: string;
  sha256: string;
  fetch_on_hosts?: boolean | undefined;
}): BinarySource {
  return args.fetch_on_hosts ? fetchedBinary(args.binary, args.sha256) : { path: args.binary, sha256: args.sha256 };
}

/**
 * The binary as a plan shows it: a URL without its query (a signed URL's signature is there). A URL
 * that will be refused is not shown at all: it may hold a password.
 */
export function shownBinary(args: { binary: string; fetch_on_hosts?: boolean | undefined }): string {
  if (!args.fetch_on_hosts) return args.binary;
  try {
    return shownUrl(checkedFetchUrl(args.binary));
  } catch {
    return 'the binary (its URL is refused when the step runs)';
  }
}

/**
 * Trust-on-first-use is the operator's decision (a flag on the command line), never a playbook's:
 * a playbook that turns it on would let a first connection through an attacker be trusted forever.
 */
export function noPlaybookTofu(args: { trust_on_first_use?: boolean | undefined }): false {
  if (args.trust_on_first_use) {
    throw new InputError(
      'trust_on_first_use: true is refused in a playbook: only the operator may turn trust-on-first-use on.',
      {
        hint: 'Pin ssh.host_key or ssh.known_hosts in the inventory (or record the keys once with `vaultops check --trust-on-first-use`), and drop the argument.',
      },
    );
  }
  return false;
}

export function defaultUnit(ctx: ActionContext): string {
  return ctx.spec.flavor === 'openbao' ? 'openbao' : 'vault';
}

/** The same record `vaultops upgrade` keeps, so either can resume what the other started. */
export function progressFile(ctx: ActionContext): string {
  return upgradeStateFiles(ctx.stateDir, ctx.clusterName).rolling;
}

/** The record an immutable upgrade keeps while under way (shared by `vaultops upgrade --strategy immutable` and the playbook). */
export function immutableStateFile(ctx: ActionContext): string {
  return upgradeStateFiles(ctx.stateDir, ctx.clusterName).immutable;
}
