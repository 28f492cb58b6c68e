import { z } from 'zod';
import type { ActionContext } from '../types.js';
import { upgradeStateFiles } from '../../upgrade/state-files.js';

/** Arguments every upgrade action takes: the new binary and its expected sha256. */
export const binaryArgs = {
  binary: z.string().min(1).describe('Local path of the new server binary.'),
  sha256: z.string().regex(/^[0-9a-fA-F]{64}$/, '64 hex digits').describe('Its expected sha256 (from the release\'s SHA256SUMS).'),
  trust_on_first_use: z.boolean().default(false).describe('Accept SSH host keys that neither ssh.host_key nor known_hosts knows.'),
};

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
