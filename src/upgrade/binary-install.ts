import { InputError, VaultopsError } from '../core/errors.js';
import { checkedFetchUrl, sha256File, shownUrl } from '../ssh/connection.js';
import { REMOTE_SHA256, shq, type Host } from '../ssh/host.js';

/**
 * Installing a server binary on hosts in two phases:
 *  1. stage: upload next to the live binary (same directory, so the swap is a rename on one
 *     filesystem), hashed on the host as it arrives and renamed to the staged name only when its
 *     sha256 is the expected one (with sudo, root's from its creation); nothing running changes;
 *  2. swap (per node, with the service stopped): hard-link the live binary to `.vaultops-prev`
 *     (the rollback copy, no extra disk), then rename the staged file over the live path: an
 *     atomic replace, so the path always holds a complete binary.
 */
export const STAGED_SUFFIX = '.vaultops-staged';
export const PREVIOUS_SUFFIX = '.vaultops-prev';

export interface BinarySource {
  /** The local file; with `url`, the URL as messages show it. */
  path: string;
  sha256: string;
  /**
   * The hosts download the binary from this URL themselves (`--fetch-on-hosts`), checked there
   * against `sha256`; nothing is uploaded and there is no local file.
   */
  url?: string | undefined;
  /** Told, per host, the bytes sent so far and the size while the binary is staged there (progress). */
  onUpload?: ((host: string, sent: number, total: number) => void) | undefined;
}

/**
 * A binary the hosts download themselves from `url` (`--fetch-on-hosts`), checked there against
 * `sha256`; messages show the URL without its query. Refuses a URL the hosts may not be given.
 */
export function fetchedBinary(url: string, sha256: string): BinarySource {
  const href = checkedFetchUrl(url);
  return { path: shownUrl(href), sha256, url: href };
}

/**
 * Refuses a local file whose sha256 differs from the expected one; nothing remote is touched. A
 * binary the hosts fetch themselves has no local file: only the sum's form is checked here, and
 * each host checks what it downloaded.
 */
export async function verifyLocalBinary(src: BinarySource): Promise<void> {
  if (!/^[0-9a-f]{64}$/i.test(src.sha256))
    throw new InputError(`--sha256 "${src.sha256}" is not a sha256 (64 hex digits).`, {
      hint: "Take it from the release's SHA256SUMS file, or run sha256sum on the binary.",
    });
  if (src.url) return;
  const { sha256 } = await sha256File(src.path);
  if (sha256 !== src.sha256.toLowerCase()) {
    throw new InputError(
      `${src.path} has sha256 ${sha256}, not the expected ${src.sha256.toLowerCase()}: refused before touching any node.`,
      {
        hint: "Download the binary again and compare with the release's SHA256SUMS (and its signature).",
      },
    );
  }
}

/**
 * Uploads the binary next to `livePath` unless an identical staged copy is already there (staged
 * ahead with `upgrade --stage-only`, or by a run that stopped). With `askVersion`, the file is asked
 * its version in the remote command that checked its sha256 (no second pass over it), whether it
 * was uploaded now or found staged.
 */
export async function stageBinary(
  host: Host,
  livePath: string,
  src: BinarySource,
  askVersion = false,
  lookedUp = false,
): Promise<{ uploaded: boolean; version?: string | undefined }> {
  const staged = `${livePath}${STAGED_SUFFIX}`;
  const want = src.sha256.toLowerCase();
  // `lookedUp`: the caller already asked `stagedCopyVersion` and found no usable copy there.
  if (!lookedUp) {
    if (askVersion) {
      const ran = await runIfSha256(host, staged, want);
      if (ran) return { uploaded: false, version: versionFrom(host, staged, ran.code, ran.stdout, ran.stderr) };
    } else if ((await host.sha256(staged)) === want) return { uploaded: false };
  }
  const run = askVersion ? ['version'] : undefined;
  const onBytes = src.onUpload && ((sent: number, total: number) => src.onUpload!(host.name, sent, total));
  const r = src.url
    ? await host.fetch(src.url, staged, { sha256: want, mode: 0o755, run })
    : await host.upload(src.path, staged, { sha256: want, mode: 0o755, onBytes, run });
  return { uploaded: true, version: r.ran ? versionFrom(host, staged, r.ran.code, r.ran.stdout, '') : undefined };
}

/**
 * The version of the copy already staged next to `livePath` (by `upgrade --stage-only` or a run that
 * stopped) when its sha256 there is the expected one, hashed and run in one remote command;
 * undefined when there is none, it differs, or it does not answer: staging then runs as usual and
 * reports what is wrong. Only reads the host (and runs the checked file's `version`).
 */
export async function stagedCopyVersion(host: Host, livePath: string, sha256: string): Promise<string | undefined> {
  const staged = `${livePath}${STAGED_SUFFIX}`;
  try {
    const ran = await runIfSha256(host, staged, sha256.toLowerCase());
    return ran ? versionFrom(host, staged, ran.code, ran.stdout, ran.stderr) : undefined;
  } catch {
    return undefined;
  }
}

/**
 * The version a binary reports (`vault version` / `bao version`) when run on the host. It runs only
 * when its sha256 there is the expected one, checked in the same remote command right before it
 * runs (with sudo, when the host uses it): a file changed after staging never runs.
 */
export async function remoteBinaryVersion(host: Host, path: string, expectedSha256: string): Promise<string> {
  const ran = await runIfSha256(host, path, expectedSha256.toLowerCase());
  if (!ran) {
    throw new VaultopsError(
      `The staged binary ${host.name}:${path} is missing or does not have the expected sha256: it was not run.`,
      {
        hint: 'Someone or something changed it after it was staged. Run the upgrade again: it stages and verifies the binary first.',
      },
    );
  }
  return versionFrom(host, path, ran.code, ran.stdout, ran.stderr);
}

/**
 * Runs `FILE version` on the host when, and only when, the file's sha256 there is `want`, checked
 * in the same remote command right before it runs; undefined when the file is missing or differs
 * (it is not run then).
 */
async function runIfSha256(
  host: Host,
  path: string,
  want: string,
): Promise<{ code: number | string | null | undefined; stdout: string; stderr: string } | undefined> {
  if (!/^[0-9a-f]{64}$/.test(want)) throw new InputError(`"${want}" is not a sha256 (64 hex digits).`);
  const r = await host.exec(
    `${REMOTE_SHA256}\nf=${shq(path)}; [ -f "$f" ] && s=$(vaultops_sha256 < "$f") && [ "$s" = ${want} ] || exit 86; exec "$f" version`,
    { timeoutMs: 360_000, maxBytes: 4096 },
  );
  if (r.code === 86) return undefined;
  return { code: r.code ?? r.signal, stdout: r.stdout, stderr: r.stderr };
}

/** The version in what `BINARY version` printed; a binary that did not answer with one is refused. */
function versionFrom(
  host: Host,
  path: string,
  code: number | string | null | undefined,
  stdout: string,
  stderr: string,
): string {
  const v = /v(\d+\.\d+\.\d+(?:[-+][0-9A-Za-z.+-]+)?)/.exec(stdout)?.[1];
  if (code !== 0 || !v) {
    throw new VaultopsError(`The new binary does not run on ${host.name} (\`${path} version\` exit ${code}).`, {
      details: [...stdout.split('\n'), ...stderr.split('\n')].filter(Boolean).slice(-8),
      hint: "Check that the file is the right build for this host's OS and CPU; nothing was changed on any node.",
    });
  }
  return v;
}

/** Checks the staged file again right before its node goes down (it may have been changed since staging). */
export async function verifyStaged(host: Host, livePath: string, expectedSha256: string): Promise<void> {
  const staged = `${livePath}${STAGED_SUFFIX}`;
  if ((await host.sha256(staged)) !== expectedSha256.toLowerCase())
    throw new VaultopsError(
      `The staged binary ${host.name}:${staged} is missing or changed since it was verified; the node was not touched.`,
      { hint: 'Run the upgrade again: it stages and verifies the binary first.' },
    );
}

/**
 * Atomic swap: the live binary becomes `.vaultops-prev`, the staged one becomes live. Call
 * `verifyStaged` first, while the node still runs: hashing a 200-360 MB file here would add to
 * the time the node is down.
 */
export async function swapBinary(host: Host, livePath: string): Promise<void> {
  const staged = `${livePath}${STAGED_SUFFIX}`;
  const prev = `${livePath}${PREVIOUS_SUFFIX}`;
  const r = await host.exec(
    `set -e; if [ -e ${shq(livePath)} ]; then ln -f ${shq(livePath)} ${shq(prev)}; fi; mv -f ${shq(staged)} ${shq(livePath)}`,
  );
  if (r.code !== 0) throw new VaultopsError(`Binary swap on ${host.name} failed: ${r.stderr.trim()}`);
}

/** Puts `.vaultops-prev` back as the live binary (it stays as `.vaultops-prev` too). */
export async function rollbackBinary(host: Host, livePath: string): Promise<void> {
  const prev = `${livePath}${PREVIOUS_SUFFIX}`;
  const tmp = `${livePath}.vaultops-rollback`;
  const r = await host.exec(
    `set -e; [ -e ${shq(prev)} ]; ln -f ${shq(prev)} ${shq(tmp)}; mv -f ${shq(tmp)} ${shq(livePath)}`,
  );
  if (r.code !== 0) throw new VaultopsError(`Rollback on ${host.name}: no previous binary at ${prev}.`);
}

/** Room asked for beyond the binary's size when staging: the file system must not be left full. */
export const STAGING_MARGIN_BYTES = 64 * 1024 * 1024;

/**
 * What staging needs on a host, asked before any change on any host (one remote command): the
 * command runs (sudo -n, when the host uses it); the directory of the live binary exists and is
 * writable; it has room for the binary plus a margin (the upload is written there from its first
 * byte, with sudo too). A copy already staged counts as room. Without `bytes` (the host downloads
 * the binary itself, and its size is not known before) the live binary's size plus a quarter
 * stands in for it. Throws a VaultopsError that says what is missing; changes nothing.
 */
export async function checkStagingRoom(host: Host, livePath: string, bytes: number | undefined): Promise<void> {
  const dir = livePath.slice(0, livePath.lastIndexOf('/')) || '/';
  const staged = `${livePath}${STAGED_SUFFIX}`;
  const marginKb = STAGING_MARGIN_BYTES / 1024;
  const needKb =
    bytes === undefined
      ? `$(( $(stat -c %s ${shq(livePath)} 2>/dev/null || echo 0) * 5 / 4 / 1024 + ${marginKb} ))`
      : String(Math.ceil(bytes / 1024) + marginKb);
  const r = await host.exec(
    [
      `d=${shq(dir)}; need=${needKb}`,
      `[ -d "$d" ] || { echo "$d does not exist" >&2; exit 87; }`,
      `[ -w "$d" ] || { echo "$d is not writable ($(id -un))" >&2; exit 87; }`,
      // A staged copy already there is replaced in place: its blocks count as free.
      `have=0; [ -f ${shq(staged)} ] && have=$(( $(stat -c %s ${shq(staged)}) / 1024 ))`,
      `free=$(df -Pk -- "$d" | awk 'NR==2 {print $4}')`,
      `[ $((free + have)) -ge "$need" ] || { echo "$d has $((free / 1024)) MiB free, staging needs $((need / 1024)) MiB" >&2; exit 87; }`,
    ].join('\n'),
    { timeoutMs: 30_000 },
  );
  if (r.code === 0) return;
  const why = r.stderr.trim().split('\n').filter(Boolean).slice(-3);
  throw new VaultopsError(
    r.code === 87
      ? `${host.name}: the new binary cannot be staged: ${why.join('; ')}.`
      : `${host.name}: the staging check did not run (exit ${r.code ?? r.signal}): ${why.join('; ') || 'no output'}.`,
    {
      hint:
        r.code === 87
          ? `Make room or make ${dir} writable on ${host.name}, then run the upgrade again.`
          : 'Check that the SSH user can run commands there (with sudo -n when the inventory says sudo).',
    },
  );
}
