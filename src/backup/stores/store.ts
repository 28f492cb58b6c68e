import { readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { homedir, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import type { Readable, Writable } from 'node:stream';
import { z } from 'zod';
import { InputError } from '../../core/errors.js';
import type { Manifest } from './manifest.js';
import type { RetentionRule } from './retention.js';
import { parseRetentionDuration } from '../../core/duration.js';
import { LocalDirStore } from './local-dir-store.js';
import { SftpStore } from './sftp-store.js';
import { S3Store, type S3Credentials } from './s3-store.js';
import { resolveSecretString } from '../../secrets/refs.js';
import {
  decryptConfigSchema,
  encryptConfigSchema,
  encryptionSpecFromConfig,
  type DecryptConfig,
  type EncryptionSpec,
} from '../crypto/encryption.js';

/**
 * Where snapshots live. A store receives a snapshot as a stream into a temporary name and makes it
 * visible only on `commit`, after the caller has verified every byte; `abort` leaves no trace. Stores
 * are named in the inventory (`clusters.<c>.stores.<name>`) or given on the command line (`--to DIR`).
 */
export interface BackupStore {
  readonly kind: string;
  /** Where it is, for messages ("/var/backups/vault", "sftp://host/path"). */
  readonly location: string;
  readonly retention: RetentionRule;
  /** Starts writing snapshot `name` (or a free variant of it); nothing is visible until commit. */
  begin(name: string): Promise<SnapshotSink>;
  /** Snapshots in the store, newest first; entries without a valid manifest are listed as unverified. */
  list(): Promise<BackupEntry[]>;
  open(name: string): Promise<Readable>;
  /** A local path to the snapshot, when the store is local (restore streams from it). */
  localPath(name: string): string | undefined;
  remove(name: string): Promise<void>;
  /** Copies snapshot, manifest and sidecar into a local directory (remote stores); returns the local snapshot path. */
  download?(name: string, dir: string): Promise<string>;
  /** Releases connections (remote stores). */
  close?(): void;
  /** Recipients new backups are encrypted for (`encrypt:` in the inventory, or `--encrypt-to`). */
  encryption?: EncryptionSpec | undefined;
  /** Secret references that open this store's encrypted backups (`decrypt:`), resolved only when needed. */
  decryption?: DecryptConfig | undefined;
}

export interface SnapshotSink {
  /** The name the snapshot will have (the one asked for, or with -2, -3... if that was taken). */
  name: string;
  stream: Writable;
  /** Flushes to stable storage, writes the sidecar and manifest, then renames into place. */
  commit(manifest: Manifest): Promise<void>;
  /** Removes whatever was written. Safe to call twice or after a failed commit. */
  abort(): Promise<void>;
}

export interface BackupEntry {
  name: string;
  size: number;
  modifiedAt: Date;
  manifest?: Manifest | undefined;
  /** Why the manifest is missing or unusable, when it is. */
  problem?: string | undefined;
}

const retentionFields = {
  keep_last: z.number().int().min(1).optional().describe('Keep the newest N verified backups.'),
  keep_within: z
    .string()
    .regex(/^\d+(m|h|d|w)$/, 'a duration like 48h, 7d, 2w')
    .optional()
    .describe('Keep every verified backup younger than this.'),
  encrypt: encryptConfigSchema.optional(),
  decrypt: decryptConfigSchema.optional(),
};

export const storeConfigSchema = z.discriminatedUnion('type', [
  z.strictObject({ type: z.literal('dir'), path: z.string(), ...retentionFields }),
  z.strictObject({
    type: z.literal('sftp'),
    host: z.string().min(1),
    port: z.number().int().min(1).max(65535).optional(),
    user: z.string().optional().describe('SSH user (default root).'),
    key_file: z.string().optional().describe('Private key; without it the SSH agent ($SSH_AUTH_SOCK).'),
    key_passphrase: z
      .string()
      .regex(/^(env|file|cmd|prompt):/, 'a secret reference (env:NAME, file:PATH, cmd:COMMAND), never the passphrase')
      .optional()
      .describe("Secret reference to the key file's passphrase."),
    host_key: z.string().optional().describe('The server\'s host key, pinned ("ssh-ed25519 AAAA...").'),
    known_hosts: z.string().optional().describe('A known_hosts file that lists the server.'),
    path: z.string().regex(/^\//, 'an absolute directory on the SFTP server').describe('Directory on the server.'),
    ...retentionFields,
  }),
  z
    .strictObject({
      type: z.literal('s3'),
      endpoint: z
        .string()
        .regex(/^https?:\/\//, 'an http(s):// URL')
        .optional()
        .describe(
          'S3 endpoint, e.g. https://minio.example.com:9000 or https://s3.eu-west-1.amazonaws.com; without one, AWS S3 in `region`.',
        ),
      bucket: z.string().min(3),
      prefix: z.string().optional().describe('Key prefix, e.g. prod/vault/.'),
      region: z.string().optional().describe('Signing region (default: $AWS_REGION, else us-east-1).'),
      access_key_id: z
        .string()
        .min(1)
        .optional()
        .describe(
          "Access key id, or a secret reference to it. Without static keys, the AWS SDK's credential chain (environment, profile, web identity, ECS, EC2 instance metadata).",
        ),
      secret_access_key: z
        .string()
        .regex(/^(env|file|cmd|prompt):/, 'a secret reference (env:NAME, file:PATH, cmd:COMMAND), never the key itself')
        .optional()
        .describe('Secret reference to the secret access key.'),
      session_token: z
        .string()
        .regex(/^(env|file|cmd|prompt):/, 'a secret reference')
        .optional(),
      profile: z.string().min(1).optional().describe('AWS profile for the credential chain (~/.aws/config).'),
      force_path_style: z
        .boolean()
        .optional()
        .describe(
          'Path-style addressing (<endpoint>/<bucket>/<key>). Default: true with an endpoint, false (virtual-hosted) on AWS.',
        ),
      sse: z.enum(['AES256', 'aws:kms']).optional().describe('Server-side encryption of the stored objects.'),
      kms_key_id: z.string().min(1).optional().describe('KMS key for sse: aws:kms (default: the aws/s3 key).'),
      max_attempts: z
        .number()
        .int()
        .min(1)
        .max(20)
        .optional()
        .describe('Attempts per S3 request, retries with backoff included (default 3).'),
      retry_mode: z.enum(['standard', 'adaptive']).optional().describe('The SDK retry mode (default standard).'),
      checksum: z
        .enum(['CRC32', 'SHA256', 'none'])
        .optional()
        .describe(
          'Checksum of each uploaded part, checked by the server (default CRC32); none for services that refuse checksum headers.',
        ),
      ca_cert: z.string().optional().describe("PEM file of the CA that signed an https endpoint's certificate."),
      ...retentionFields,
    })
    .refine((c) => (c.access_key_id === undefined) === (c.secret_access_key === undefined), {
      message: 'give access_key_id and secret_access_key together, or neither (the AWS credential chain)',
      path: ['secret_access_key'],
    })
    .refine((c) => c.kms_key_id === undefined || c.sse === 'aws:kms', {
      message: 'kms_key_id needs sse: aws:kms',
      path: ['kms_key_id'],
    })
    .refine((c) => c.session_token === undefined || c.access_key_id !== undefined, {
      message: 'session_token goes with static keys (access_key_id, secret_access_key)',
      path: ['session_token'],
    }),
]);

export type StoreConfig = z.infer<typeof storeConfigSchema>;

export function retentionOf(config: {
  keep_last?: number | undefined;
  keep_within?: string | undefined;
}): RetentionRule {
  return {
    keepLast: config.keep_last,
    keepWithinMs: config.keep_within === undefined ? undefined : parseRetentionDuration(config.keep_within),
  };
}

/** Builds a store from an inventory entry; `base` resolves relative paths (the inventory's directory). */
export function openStore(name: string, raw: Record<string, unknown>, base: string): BackupStore {
  const parsed = storeConfigSchema.safeParse(raw);
  if (!parsed.success) {
    throw new InputError(
      `Backup store "${name}" in the inventory is not valid: ${parsed.error.issues.map((i) => `${i.path.join('.') || 'type'}: ${i.message}`).join('; ')}.`,
      {
        hint: 'A local store looks like `{ type: dir, path: /var/backups/vault, keep_last: 24, keep_within: 7d }` (add `encrypt: { age: [age1...] }` or `encrypt: { openpgp: [keys/ops.asc] }` to encrypt files at rest); an SFTP one like `{ type: sftp, host: backup.example.com, user: vaultbak, key_file: ~/.ssh/id_ed25519, known_hosts: ~/.ssh/known_hosts, path: /srv/vault-backups, keep_last: 48 }`; an S3 one like `{ type: s3, endpoint: https://s3.eu-west-1.amazonaws.com, bucket: vault-backups, prefix: prod, region: eu-west-1, access_key_id: AKIA..., secret_access_key: env:AWS_SECRET_ACCESS_KEY }`.',
      },
    );
  }
  const c = parsed.data;
  const store = openParsedStore(name, c, base);
  if (c.encrypt) store.encryption = encryptionSpecFromConfig(c.encrypt, base);
  if (c.decrypt) store.decryption = c.decrypt;
  return store;
}

/** A secret reference whose relative file: path is read against the inventory's directory, as every path in it. */
function refAgainst(base: string, r: string): string {
  return r.startsWith('file:') && !r.startsWith('file:/') ? `file:${resolve(base, r.slice(5))}` : r;
}

function openParsedStore(name: string, c: StoreConfig, base: string): BackupStore {
  if (c.type === 'dir') return new LocalDirStore(resolve(base, c.path), retentionOf(c));
  if (c.type === 's3') return openS3Store(name, c, base);
  if (c.host_key === undefined && c.known_hosts === undefined) {
    throw new InputError(
      `Backup store "${name}" (sftp) has neither host_key nor known_hosts: its server could not be verified.`,
      {
        hint: 'Pin the server\'s key (`host_key: "ssh-ed25519 AAAA..."` from its /etc/ssh/ssh_host_ed25519_key.pub) or name a known_hosts file.',
      },
    );
  }
  const local = (p: string | undefined) =>
    p === undefined ? undefined : p === '~' || p.startsWith('~/') ? join(homedir(), p.slice(1)) : resolve(base, p);
  const passphrase = c.key_passphrase;
  return new SftpStore(
    {
      host: c.host,
      port: c.port,
      user: c.user,
      keyFile: local(c.key_file),
      passphrase: passphrase === undefined ? undefined : () => resolveSecretString(refAgainst(base, passphrase)),
      hostKey: c.host_key,
      knownHosts: local(c.known_hosts),
      path: c.path,
      label: name,
    },
    retentionOf(c),
  );
}

function openS3Store(name: string, c: Extract<StoreConfig, { type: 's3' }>, base: string): BackupStore {
  const ref = (r: string) => refAgainst(base, r);
  const isRef = (v: string) => /^(env|file|cmd|prompt):/.test(v);
  let creds: Promise<S3Credentials> | undefined;
  const keyId = c.access_key_id;
  const secret = c.secret_access_key;
  const credentials =
    keyId === undefined || secret === undefined
      ? undefined
      : () =>
          (creds ??= (async () => ({
            accessKeyId: isRef(keyId) ? await resolveSecretString(ref(keyId)) : keyId,
            secretAccessKey: await resolveSecretString(ref(secret)),
            sessionToken: c.session_token === undefined ? undefined : await resolveSecretString(ref(c.session_token)),
          }))());
  let ca: string | undefined;
  if (c.ca_cert !== undefined) {
    try {
      ca = readFileSync(resolve(base, c.ca_cert), 'utf8');
    } catch (e) {
      throw new InputError(
        `Backup store "${name}": cannot read ca_cert ${c.ca_cert} (${(e as NodeJS.ErrnoException).code ?? 'error'}).`,
        { hint: "Give the PEM file of the CA that signed the S3 endpoint's certificate." },
      );
    }
  }
  return new S3Store(
    {
      endpoint: c.endpoint,
      bucket: c.bucket,
      prefix: c.prefix ?? '',
      region: c.region ?? process.env['AWS_REGION'] ?? process.env['AWS_DEFAULT_REGION'] ?? 'us-east-1',
      // Path style stays the default for a named endpoint (MinIO, Ceph, versitygw...), as before the SDK.
      forcePathStyle: c.force_path_style ?? c.endpoint !== undefined,
      credentials,
      profile: c.profile,
      ca,
      sse: c.sse,
      kmsKeyId: c.kms_key_id,
      maxAttempts: c.max_attempts,
      retryMode: c.retry_mode,
      checksum: c.checksum ?? 'CRC32',
      label: name,
    },
    retentionOf(c),
  );
}

/**
 * A local path to snapshot `name` of `store`: the file itself for a local store, else a copy (with
 * manifest and sidecar) in a private temp directory that `cleanup` removes.
 */
export async function localCopy(
  store: BackupStore,
  name: string,
): Promise<{ path: string; cleanup: () => Promise<void> }> {
  const path = store.localPath(name);
  if (path !== undefined) return { path, cleanup: async () => undefined };
  if (!store.download) throw new InputError(`Store ${store.location} cannot hand out ${name}.`);
  const dir = await mkdtemp(join(tmpdir(), 'vaultops-restore-'));
  try {
    return { path: await store.download(name, dir), cleanup: () => rm(dir, { recursive: true, force: true }) };
  } catch (e) {
    await rm(dir, { recursive: true, force: true });
    throw e;
  }
}

/**
 * The store a step or command names: `to` (a local directory), `store` (one of the cluster's
 * `stores:`), or the cluster's only store.
 */
export function resolveStore(
  choice: { store?: string | undefined; to?: string | undefined },
  clusterName: string,
  stores: Record<string, Record<string, unknown>> | undefined,
  base: string,
): BackupStore {
  if (choice.to !== undefined) {
    if (choice.store !== undefined) throw new InputError('Name either a store or a directory (to), not both.');
    return new LocalDirStore(resolve(base, choice.to));
  }
  const names = Object.keys(stores ?? {});
  const name = choice.store ?? (names.length === 1 ? names[0] : undefined);
  const raw = name === undefined ? undefined : stores?.[name];
  if (name === undefined || !raw) {
    throw new InputError(
      name === undefined
        ? `Cluster ${clusterName} has ${names.length === 0 ? 'no backup stores' : `${names.length} stores`}; say which one.`
        : `Cluster ${clusterName} has no store "${name}".`,
      {
        hint: names.length
          ? `Stores: ${names.join(', ')}; or give a directory.`
          : 'Give a directory, or add `stores: { local: { type: dir, path: /var/backups/vault } }` to the cluster.',
      },
    );
  }
  return openStore(name, raw, base);
}
