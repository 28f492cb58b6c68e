import { createReadStream, createWriteStream, existsSync, mkdirSync, readFileSync, renameSync, rmSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { join } from 'node:path';
import { PassThrough, Writable, type Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGunzip, createInflateRaw } from 'node:zlib';
import type * as Pgp from 'openpgp';
import { InputError, VaultopsError } from '../core/errors.js';
import { getBytes, getFile, MissingFileError } from '../http/release-files.js';
import { sha256File } from '../ssh/connection.js';
import type { Host } from '../ssh/host.js';
import { HASHICORP_FINGERPRINT, HASHICORP_RELEASE_KEY, OPENBAO_FINGERPRINT, OPENBAO_KEY_URL } from './release-keys.js';

/**
 * `upgrade --version X`: the new server binary as real hosts get it, from the vendor's release
 * files, checked in this order before anything reaches a node:
 *  1. the checksum list and its detached OpenPGP signature are fetched;
 *  2. the signature over the checksum list is verified against the vendor's public key (bundled
 *     for HashiCorp, `--release-key FILE` for OpenBao or to override): a bad or foreign signature
 *     stops here, before the archive is even downloaded;
 *  3. the archive for the nodes' OS/CPU is downloaded and its sha256 compared with the signed list;
 *  4. the server binary is extracted from it; its sha256 then drives staging exactly as
 *     `--binary --sha256` does (checked again on every host).
 *
 * Layouts (as published):
 *  - Vault: https://releases.hashicorp.com/vault/<v>/vault_<v>_SHA256SUMS, `…_SHA256SUMS.sig`
 *    (binary detached signature by HashiCorp's key), `vault_<v>_<os>_<arch>.zip`.
 *  - OpenBao: https://github.com/openbao/openbao/releases/download/v<v>/checksums.txt and
 *    `checksums.txt.gpgsig` (releases built by its release scripts, with archives
 *    `openbao_<v>_<os>_<arch>.tar.gz`); older GoReleaser releases publish `checksums-<os>.txt`
 *    (`.gpgsig`) and `bao_<v>_<Os>_<x86_64|arch>.tar.gz`. Both are tried; the archive name is taken
 *    from the signed list. OpenBao also signs with cosign (`.sigstore.json`, keyless); vaultops
 *    verifies the GPG signature, which works offline against a pinned key.
 */

export type ReleaseFlavor = 'vault' | 'openbao';

export interface Platform {
  os: string;
  arch: string;
}

export const DEFAULT_MIRRORS: Record<ReleaseFlavor, string> = {
  vault: 'https://releases.hashicorp.com',
  openbao: 'https://github.com/openbao/openbao/releases/download',
};

export interface ReleaseRequest {
  flavor: ReleaseFlavor;
  version: string;
  platform: Platform;
  /** Base URL laid out like the vendor's site; default DEFAULT_MIRRORS[flavor]. */
  mirror?: string | undefined;
  /** An armored or binary OpenPGP public key file that replaces the bundled key. */
  keyFile?: string | undefined;
  /** Where the archive and the extracted binary are kept (a later run reuses a verified archive). */
  dir: string;
  signal?: AbortSignal | undefined;
  onProgress?: ((message: string) => void) | undefined;
  onBytes?: ((received: number, total: number | undefined) => void) | undefined;
}

export interface VerifiedRelease {
  /** The extracted server binary, ready for staging. */
  binary: string;
  sha256: string;
  archive: string;
  archiveUrl: string;
  archiveSha256: string;
  sumsUrl: string;
  signatureUrl: string;
  /** Fingerprint of the (primary) key whose signature over the checksum list verified. */
  signer: string;
  keySource: string;
}

interface Layout {
  base: string;
  sums: { name: string; sig: string }[];
  archives: string[];
  binaryName: string;
}

export function releaseLayout(flavor: ReleaseFlavor, version: string, p: Platform, mirror?: string): Layout {
  const base = (mirror ?? DEFAULT_MIRRORS[flavor]).replace(/\/+$/, '');
  if (flavor === 'vault') {
    return {
      base: `${base}/vault/${version}`,
      sums: [{ name: `vault_${version}_SHA256SUMS`, sig: `vault_${version}_SHA256SUMS.sig` }],
      archives: [`vault_${version}_${p.os}_${p.arch}.zip`],
      binaryName: 'vault',
    };
  }
  const title = p.os.charAt(0).toUpperCase() + p.os.slice(1);
  const oldArch = p.arch === 'amd64' ? 'x86_64' : p.arch === '386' ? 'i386' : p.arch;
  return {
    base: `${base}/v${version}`,
    sums: ['checksums.txt', `checksums-${p.os}.txt`].map((name) => ({ name, sig: `${name}.gpgsig` })),
    archives: [`openbao_${version}_${p.os}_${p.arch}.tar.gz`, `bao_${version}_${title}_${oldArch}.tar.gz`],
    binaryName: 'bao',
  };
}

/** `uname -s -m` on a host, in Go's names (the vendors name their archives by GOOS/GOARCH). */
export async function hostPlatform(host: Host): Promise<Platform> {
  const r = await host.exec('uname -s -m', { timeoutMs: 30_000, maxBytes: 1024 });
  const [sys, machine] = r.stdout.trim().split(/\s+/);
  if (r.code !== 0 || !sys || !machine)
    throw new VaultopsError(`Cannot tell the OS and CPU of ${host.name} (\`uname -s -m\` exit ${r.code}).`, {
      hint: 'Download the release yourself and pass --binary FILE --sha256 HEX instead of --version.',
    });
  const arches: Record<string, string> = {
    x86_64: 'amd64',
    amd64: 'amd64',
    aarch64: 'arm64',
    arm64: 'arm64',
    armv7l: 'arm',
    armv6l: 'arm',
    i686: '386',
    i386: '386',
    ppc64le: 'ppc64le',
    s390x: 's390x',
    riscv64: 'riscv64',
  };
  const arch = arches[machine];
  if (!arch)
    throw new VaultopsError(`${host.name} runs on a CPU vaultops does not know (${machine}).`, {
      hint: 'Download the release for it yourself and pass --binary FILE --sha256 HEX.',
    });
  return { os: sys.toLowerCase(), arch };
}

/** The one platform all hosts share; a mixed fleet cannot take one archive. */
export function commonPlatform(named: { node: string; platform: Platform }[]): Platform {
  const first = named[0];
  if (!first) throw new InputError('No node to upgrade.');
  const odd = named.filter((n) => n.platform.os !== first.platform.os || n.platform.arch !== first.platform.arch);
  if (odd.length)
    throw new InputError(
      `The nodes do not share one OS/CPU: ${named.map((n) => `${n.node} ${n.platform.os}/${n.platform.arch}`).join(', ')}.`,
      { hint: 'Upgrade them in groups of one platform, or pass --binary FILE --sha256 HEX for the platform of all.' },
    );
  return first.platform;
}

/** The sums file as published: "<sha256>  <name>" per line (a "*" before the name marks binary mode). */
export function parseSums(text: string): Map<string, string> {
  const m = new Map<string, string>();
  for (const line of text.split('\n')) {
    const hit = /^([0-9a-fA-F]{64})\s+\*?(\S.*?)\s*$/.exec(line);
    if (hit) m.set(hit[2]!.replace(/^\.\//, ''), hit[1]!.toLowerCase());
  }
  return m;
}

let loaded: Promise<typeof Pgp> | undefined;
const loadOpenpgp = (): Promise<typeof Pgp> => (loaded ??= import('openpgp'));

async function releaseKeys(
  flavor: ReleaseFlavor,
  keyFile: string | undefined,
): Promise<{ keys: Pgp.PublicKey[]; source: string }> {
  const openpgp = await loadOpenpgp();
  let bytes: Buffer;
  let source: string;
  if (keyFile) {
    try {
      bytes = readFileSync(keyFile);
    } catch (e) {
      throw new InputError(`Cannot read --release-key ${keyFile} (${(e as NodeJS.ErrnoException).code ?? 'error'}).`, {
        hint: 'Give the vendor public key file (armored .asc or binary), e.g. from `gpg --export --armor KEYID`.',
      });
    }
    source = keyFile;
  } else if (flavor === 'vault') {
    bytes = Buffer.from(HASHICORP_RELEASE_KEY, 'utf8');
    source = `HashiCorp's release key ${HASHICORP_FINGERPRINT} (bundled)`;
  } else {
    throw new InputError(
      'OpenBao releases are verified against the OpenBao signing key: give it with --release-key FILE.',
      {
        hint: `Download ${OPENBAO_KEY_URL}, check that \`gpg --show-keys FILE\` prints the fingerprint ${OPENBAO_FINGERPRINT} (as openbao.org/docs/install says), then pass --release-key FILE.`,
      },
    );
  }
  const text = bytes.toString('utf8');
  if (/-----BEGIN PGP PRIVATE KEY BLOCK-----/.test(text))
    throw new InputError(`${source} holds a private key; a release key is a public key.`, {
      hint: 'Export the public part: gpg --export --armor KEYID > release-key.asc',
    });
  try {
    const keys = text.includes('-----BEGIN PGP PUBLIC KEY BLOCK-----')
      ? await openpgp.readKeys({ armoredKeys: text })
      : await openpgp.readKeys({ binaryKeys: new Uint8Array(bytes) });
    return { keys: keys.map((k) => k.toPublic()), source };
  } catch (e) {
    throw new InputError(`${source} is not an OpenPGP public key (${(e as Error).message}).`, {
      hint: 'Give the vendor public key file (armored .asc or binary).',
    });
  }
}

/**
 * Verifies a detached signature (armored or binary) over `data` against `keys`; returns the
 * fingerprint of the primary key that made it. Throws, saying which case it is: signed by a key
 * not given, or a signature that does not match the data.
 */
export async function verifyDetached(
  data: Uint8Array,
  sig: Uint8Array,
  keys: Pgp.PublicKey[],
  what: { data: string; signature: string; keySource: string },
): Promise<string> {
  const openpgp = await loadOpenpgp();
  let signature: Pgp.Signature;
  try {
    const text = Buffer.from(sig).toString('utf8');
    signature = text.includes('-----BEGIN PGP SIGNATURE-----')
      ? await openpgp.readSignature({ armoredSignature: text })
      : await openpgp.readSignature({ binarySignature: sig });
  } catch (e) {
    throw new VaultopsError(
      `${what.signature} is not an OpenPGP signature (${(e as Error).message}): refused, nothing staged.`,
      {
        hint: 'Check that the mirror serves the signature file unchanged.',
      },
    );
  }
  const issuers = signature.getSigningKeyIDs().map((k) => k.toHex().toUpperCase());
  const known = keys.filter((k) => signature.getSigningKeyIDs().some((id) => k.getKeys(id).length > 0));
  if (!known.length)
    throw new VaultopsError(
      `${what.data} is signed by key ${issuers.join(', ') || '(unnamed)'}, not by ${what.keySource}: refused, nothing staged.`,
      {
        hint: 'The files did not come from the vendor, or the key is the wrong one. Get the release from the vendor site (or a mirror of it) and the key from the vendor; --release-key FILE gives another key.',
      },
    );
  const message = await openpgp.createMessage({ binary: data });
  const r = await openpgp.verify({ message, signature, verificationKeys: known, format: 'binary' });
  for (const s of r.signatures) {
    try {
      await s.verified;
      const signer = known.find((k) => k.getKeys(s.keyID).length > 0)!;
      return signer.getFingerprint().toUpperCase();
    } catch (e) {
      throw new VaultopsError(
        `The signature ${what.signature} does not verify over ${what.data} (${(e as Error).message}): refused, nothing staged.`,
        {
          hint: 'The checksum list was changed after it was signed, or the download is damaged. Fetch the release again from the vendor or a faithful mirror.',
        },
      );
    }
  }
  throw new VaultopsError(`${what.signature} holds no signature: refused, nothing staged.`);
}

/** Fetches, verifies and unpacks a release; nothing remote is touched. See the top of this file. */
export async function fetchVerifiedRelease(req: ReleaseRequest): Promise<VerifiedRelease> {
  if (!/^\d+\.\d+\.\d+(?:[-+][0-9A-Za-z.+-]+)?$/.test(req.version))
    throw new InputError(`--version "${req.version}" is not a release version.`, {
      hint: 'Give it as the vendor names it, e.g. --version 1.21.0 (no "v").',
    });
  const progress = req.onProgress ?? (() => undefined);
  const layout = releaseLayout(req.flavor, req.version, req.platform, req.mirror);
  const { keys, source: keySource } = await releaseKeys(req.flavor, req.keyFile);

  // 1. The checksum list: the first published name that exists.
  let sums: { bytes: Buffer; url: string; sigUrl: string } | undefined;
  const tried: string[] = [];
  for (const s of layout.sums) {
    const url = `${layout.base}/${s.name}`;
    tried.push(url);
    try {
      sums = { bytes: await getBytes(url, 1 << 20, { signal: req.signal }), url, sigUrl: `${layout.base}/${s.sig}` };
      break;
    } catch (e) {
      if (!(e instanceof MissingFileError)) throw e;
    }
  }
  if (!sums)
    throw new VaultopsError(
      `No checksum list for ${req.flavor} ${req.version}: ${tried.join(' and ')} ${tried.length > 1 ? 'are' : 'is'} not there.`,
      {
        hint: `Check --version (is ${req.version} released?) and that --release-mirror (${layout.base}) is laid out like the vendor site. Nothing was staged.`,
      },
    );

  // 2. Its signature, before anything else is downloaded.
  let sig: Buffer;
  try {
    sig = await getBytes(sums.sigUrl, 64 << 10, { signal: req.signal });
  } catch (e) {
    if (!(e instanceof MissingFileError)) throw e;
    throw new VaultopsError(
      `The signature ${sums.sigUrl} is missing: an unsigned checksum list is refused, nothing staged.`,
      {
        hint: 'A mirror must carry the signature file next to the checksum list, unchanged.',
      },
    );
  }
  const signer = await verifyDetached(sums.bytes, sig, keys, {
    data: sums.url,
    signature: sums.sigUrl,
    keySource,
  });
  progress(`Signature of ${sums.url} verified: signed by ${signer} (${keySource}).`);

  // 3. The archive named in the signed list, checked against it.
  const listed = parseSums(sums.bytes.toString('utf8'));
  const name = layout.archives.find((a) => listed.has(a));
  if (!name)
    throw new VaultopsError(
      `The signed checksum list names no archive for ${req.platform.os}/${req.platform.arch} (looked for ${layout.archives.join(', ')}).`,
      {
        hint: "This release is not built for the nodes' platform; pass --binary FILE --sha256 HEX for a build of your own.",
      },
    );
  const expected = listed.get(name)!;
  const dir = join(req.dir, req.flavor, req.version);
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const archive = join(dir, name);
  const archiveUrl = `${layout.base}/${name}`;
  if (!(existsSync(archive) && (await sha256File(archive)).sha256 === expected)) {
    rmSync(archive, { force: true });
    progress(`Downloading ${archiveUrl}...`);
    await getFile(archiveUrl, archive, { signal: req.signal, onBytes: req.onBytes });
    const got = (await sha256File(archive)).sha256;
    if (got !== expected) {
      rmSync(archive, { force: true });
      throw new VaultopsError(
        `${archiveUrl} has sha256 ${got}, but the signed checksum list says ${expected}: refused and deleted, nothing staged.`,
        { hint: 'The archive was changed or damaged on the way. Fetch it again from the vendor or a faithful mirror.' },
      );
    }
  }
  progress(`${name}: sha256 ${expected} matches the signed checksum list.`);

  // 4. The server binary out of the archive.
  const binary = join(dir, `${layout.binaryName}-${req.platform.os}-${req.platform.arch}`);
  if (name.endsWith('.zip')) await extractFromZip(archive, layout.binaryName, binary);
  else await extractFromTarGz(archive, layout.binaryName, binary);
  const { sha256 } = await sha256File(binary);
  return {
    binary,
    sha256,
    archive,
    archiveUrl,
    archiveSha256: expected,
    sumsUrl: sums.url,
    signatureUrl: sums.sigUrl,
    signer,
    keySource,
  };
}

/** Writes through `dest.part`, renamed when complete, mode 0755. */
async function writeOut(dest: string, source: NodeJS.ReadableStream, transform: Transform | undefined): Promise<void> {
  const part = `${dest}.part`;
  try {
    if (transform) await pipeline(source, transform, createWriteStream(part, { mode: 0o755 }));
    else await pipeline(source, createWriteStream(part, { mode: 0o755 }));
  } catch (e) {
    rmSync(part, { force: true });
    throw new VaultopsError(`Cannot unpack ${dest}: ${(e as Error).message}.`, { cause: e });
  }
  renameSync(part, dest);
}

/** The one member named `member` (at the top or in a folder) of a zip: stored or deflated, not zip64. */
async function extractFromZip(zip: string, member: string, dest: string): Promise<void> {
  const fh = await open(zip, 'r');
  let entry: { method: number; size: number; dataStart: number } | undefined;
  try {
    const { size } = await fh.stat();
    const tailLen = Math.min(size, 65_557);
    const tail = Buffer.alloc(tailLen);
    await fh.read(tail, 0, tailLen, size - tailLen);
    const eocd = tail.lastIndexOf(Buffer.from([0x50, 0x4b, 0x05, 0x06]));
    if (eocd < 0) throw new VaultopsError(`${zip} is not a zip archive (no end of central directory).`);
    const count = tail.readUInt16LE(eocd + 10);
    const cdSize = tail.readUInt32LE(eocd + 12);
    const cdOffset = tail.readUInt32LE(eocd + 16);
    const cd = Buffer.alloc(cdSize);
    await fh.read(cd, 0, cdSize, cdOffset);
    let at = 0;
    for (let i = 0; i < count && at + 46 <= cd.length; i++) {
      if (cd.readUInt32LE(at) !== 0x02014b50) throw new VaultopsError(`${zip}: damaged central directory.`);
      const method = cd.readUInt16LE(at + 10);
      const csize = cd.readUInt32LE(at + 20);
      const nameLen = cd.readUInt16LE(at + 28);
      const extraLen = cd.readUInt16LE(at + 30);
      const commentLen = cd.readUInt16LE(at + 32);
      const local = cd.readUInt32LE(at + 42);
      const name = cd.subarray(at + 46, at + 46 + nameLen).toString('utf8');
      at += 46 + nameLen + extraLen + commentLen;
      if (name.split('/').pop() !== member) continue;
      if (csize === 0xffffffff || local === 0xffffffff)
        throw new VaultopsError(`${zip}: zip64 members are not supported.`, {
          hint: 'Unpack it yourself and pass --binary FILE --sha256 HEX.',
        });
      const lh = Buffer.alloc(30);
      await fh.read(lh, 0, 30, local);
      if (lh.readUInt32LE(0) !== 0x04034b50) throw new VaultopsError(`${zip}: damaged local header for ${name}.`);
      entry = { method, size: csize, dataStart: local + 30 + lh.readUInt16LE(26) + lh.readUInt16LE(28) };
      break;
    }
  } finally {
    await fh.close();
  }
  if (!entry) throw new VaultopsError(`${zip} holds no file named ${member}.`);
  if (entry.method !== 0 && entry.method !== 8)
    throw new VaultopsError(`${zip}: ${member} is compressed with method ${entry.method}, not stored or deflate.`);
  const source = createReadStream(zip, {
    start: entry.dataStart,
    end: entry.dataStart + Math.max(0, entry.size - 1),
  });
  await writeOut(dest, source, entry.method === 8 ? createInflateRaw() : undefined);
}

/** The one regular file named `member` (at the top or in a folder) of a .tar.gz, streamed out. */
async function extractFromTarGz(archive: string, member: string, dest: string): Promise<void> {
  const part = `${dest}.part`;
  let out: ReturnType<typeof createWriteStream> | undefined;
  let found = false;
  let header = Buffer.alloc(0);
  let bodyLeft = 0;
  let padLeft = 0;
  let writing = false;
  let done = false;
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      let buf = chunk;
      const step = (): void => {
        while (buf.length && !done) {
          if (bodyLeft > 0) {
            const n = Math.min(bodyLeft, buf.length);
            const piece = buf.subarray(0, n);
            buf = buf.subarray(n);
            bodyLeft -= n;
            if (writing && out) {
              // The member is complete once its last byte is handed over, whatever the write returns.
              if (bodyLeft === 0) {
                writing = false;
                done = true;
              }
              if (!out.write(piece)) {
                out.once('drain', step);
                return;
              }
            }
            continue;
          }
          if (padLeft > 0) {
            const n = Math.min(padLeft, buf.length);
            buf = buf.subarray(n);
            padLeft -= n;
            continue;
          }
          const need = 512 - header.length;
          header = Buffer.concat([header, buf.subarray(0, need)]);
          buf = buf.subarray(need);
          if (header.length < 512) continue;
          const h = header;
          header = Buffer.alloc(0);
          if (h.every((b) => b === 0)) continue;
          const name = h.subarray(0, 100).toString('utf8').replace(/\0.*$/s, '');
          const prefix = h.subarray(345, 500).toString('utf8').replace(/\0.*$/s, '');
          const full = prefix ? `${prefix}/${name}` : name;
          const size = parseInt(h.subarray(124, 136).toString('ascii').replace(/\0.*$/s, '').trim() || '0', 8);
          const type = String.fromCharCode(h[156]!);
          bodyLeft = size;
          padLeft = (512 - (size % 512)) % 512;
          if ((type === '0' || type === '\0') && full.split('/').pop() === member) {
            found = true;
            writing = true;
            out = createWriteStream(part, { mode: 0o755 });
            if (size === 0) done = true;
          }
        }
        cb();
      };
      step();
    },
  });
  try {
    await pipeline(createReadStream(archive), createGunzip(), new PassThrough(), sink);
    if (out) await new Promise<void>((resolve, reject) => out!.end((e?: Error | null) => (e ? reject(e) : resolve())));
  } catch (e) {
    out?.destroy();
    rmSync(part, { force: true });
    throw new VaultopsError(`Cannot unpack ${archive}: ${(e as Error).message}.`, { cause: e });
  }
  if (!found || !done) {
    rmSync(part, { force: true });
    throw new VaultopsError(`${archive} holds no complete file named ${member}.`);
  }
  renameSync(part, dest);
}
