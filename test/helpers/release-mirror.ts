import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/**
 * A release mirror laid out like the vendors' sites, served over loopback HTTP, signed with OpenPGP
 * keys the test makes with the real `gpg` (in a throw-away GNUPGHOME).
 */

export interface SigningKeys {
  home: string;
  /** Armored public key files. */
  vendorKey: string;
  otherKey: string;
  vendorFingerprint: string;
  cleanup(): void;
}

function gpg(home: string, args: string[], input?: string): string {
  return execFileSync('gpg', ['--homedir', home, '--batch', '--yes', '--no-tty', ...args], {
    input,
    stdio: ['pipe', 'pipe', 'pipe'],
  }).toString('utf8');
}

export function makeSigningKeys(): SigningKeys {
  const home = mkdtempSync(join(tmpdir(), 'vaultops-gpg-'));
  for (const who of ['vendor', 'other'])
    gpg(home, ['--passphrase', '', '--quick-gen-key', `Test ${who} <${who}@test.invalid>`, 'ed25519', 'sign', 'never']);
  const vendorKey = join(home, 'vendor.asc');
  const otherKey = join(home, 'other.asc');
  writeFileSync(vendorKey, gpg(home, ['--armor', '--export', 'vendor@test.invalid']));
  writeFileSync(otherKey, gpg(home, ['--armor', '--export', 'other@test.invalid']));
  const fpr = /^fpr:+([0-9A-F]{40}):/m.exec(gpg(home, ['--with-colons', '--fingerprint', 'vendor@test.invalid']))![1]!;
  return {
    home,
    vendorKey,
    otherKey,
    vendorFingerprint: fpr,
    cleanup: () => rmSync(home, { recursive: true, force: true }),
  };
}

/** Detached binary signature `sigFile` over `file`, by the key of `who` (vendor or other). */
export function sign(keys: SigningKeys, who: 'vendor' | 'other', file: string, sigFile: string): void {
  gpg(keys.home, ['--local-user', `${who}@test.invalid`, '--output', sigFile, '--detach-sign', file]);
}

export function sha256Of(file: string): string {
  return createHash('sha256').update(readFileSync(file)).digest('hex');
}

export interface MirrorRelease {
  /** Folder of this release in the mirror (…/vault/<v> or …/v<v>). */
  dir: string;
  sums: string;
  sig: string;
  archive: string;
}

/**
 * Writes one release into `root` as the vendor lays it out: the archive holding `binary` (renamed
 * to vault/bao), the checksum list naming it, and the list's detached signature by `signer`.
 * `layout` picks OpenBao's current (`checksums.txt`, openbao_…) or older GoReleaser naming.
 */
export function writeRelease(
  root: string,
  keys: SigningKeys,
  o: {
    flavor: 'vault' | 'openbao';
    version: string;
    binary: string;
    layout?: 'current' | 'goreleaser';
    signer?: 'vendor' | 'other';
    /** gzip level for the tar (1 = fast, for big real binaries). */
    fast?: boolean;
  },
): MirrorRelease {
  const v = o.version;
  const work = mkdtempSync(join(tmpdir(), 'vaultops-rel-'));
  try {
    let dir: string;
    let archiveName: string;
    let sumsName: string;
    let sigName: string;
    if (o.flavor === 'vault') {
      dir = join(root, 'vault', v);
      archiveName = `vault_${v}_linux_amd64.zip`;
      sumsName = `vault_${v}_SHA256SUMS`;
      sigName = `${sumsName}.sig`;
      mkdirSync(dir, { recursive: true });
      copyFileSync(o.binary, join(work, 'vault'));
      execFileSync('zip', ['-q', o.fast ? '-1' : '-6', '-j', join(dir, archiveName), join(work, 'vault')]);
    } else {
      dir = join(root, `v${v}`);
      const current = (o.layout ?? 'current') === 'current';
      archiveName = current ? `openbao_${v}_linux_amd64.tar.gz` : `bao_${v}_Linux_x86_64.tar.gz`;
      sumsName = current ? 'checksums.txt' : 'checksums-linux.txt';
      sigName = `${sumsName}.gpgsig`;
      mkdirSync(dir, { recursive: true });
      copyFileSync(o.binary, join(work, 'bao'));
      writeFileSync(join(work, 'LICENSE'), 'MPL-2.0\n');
      execFileSync('sh', [
        '-c',
        `tar -cf - -C "$1" LICENSE bao | gzip ${o.fast ? '-1' : '-6'} > "$2"`,
        'sh',
        work,
        join(dir, archiveName),
      ]);
    }
    // A real list names every artifact of the release, not only ours.
    const other = o.flavor === 'vault' ? `vault_${v}_darwin_arm64.zip` : `openbao_${v}_linux_arm64.tar.gz`;
    const sums = join(dir, sumsName);
    writeFileSync(sums, `${'0'.repeat(64)}  ${other}\n${sha256Of(join(dir, archiveName))}  ${archiveName}\n`);
    const sig = join(dir, sigName);
    sign(keys, o.signer ?? 'vendor', sums, sig);
    return { dir, sums, sig, archive: join(dir, archiveName) };
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

export interface Mirror {
  url: string;
  /** Paths requested so far (to prove what was, and was not, downloaded). */
  requests: string[];
  close(): Promise<void>;
}

/** Static files of `root` over loopback HTTP; anything absent is a 404, as on the real sites. */
export async function serveMirror(root: string, host = '127.0.0.1'): Promise<Mirror> {
  const requests: string[] = [];
  const server: Server = createServer((req, res) => {
    const path = decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname);
    requests.push(path);
    const file = join(root, path);
    if (!file.startsWith(root) || !existsSync(file) || !statSync(file).isFile()) {
      res.writeHead(404).end('not found');
      return;
    }
    res.writeHead(200, { 'content-length': statSync(file).size, 'content-type': 'application/octet-stream' });
    res.end(readFileSync(file));
  });
  await new Promise<void>((resolve) => server.listen(0, host, resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://${host}:${port}`,
    requests,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
