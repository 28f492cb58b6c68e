/**
 * What actions need from a machine: run a command, put a file there, read a file. SSH
 * (`SshHost`) implements it for real hosts; tests and a local transport may implement it too.
 */
export interface Host {
  /** The inventory node name (for messages). */
  readonly name: string;
  exec(command: string, options?: ExecOptions): Promise<ExecResult>;
  /** Copies a local file to the host, verifies sha256 there, then renames it into place. */
  upload(localPath: string, remotePath: string, options?: UploadOptions): Promise<UploadResult>;
  /** Has the host download a URL itself, verifies sha256 there, then renames it into place. */
  fetch(url: string, remotePath: string, options: FetchOptions): Promise<UploadResult>;
  /** sha256 of a file on the host; undefined when it does not exist. */
  sha256(path: string): Promise<string | undefined>;
  /** The tail of a file (at most maxBytes). */
  readFile(path: string, options?: { maxBytes?: number }): Promise<string>;
  close(): void;
}

export interface ExecOptions {
  /** Keep at most this many bytes (the tail) of each stream. Default 64 KiB. */
  maxBytes?: number | undefined;
  timeoutMs?: number | undefined;
  /** Written to the command's stdin (how secrets reach a remote command: never in the command line). */
  stdin?: string | Buffer | undefined;
  /** Run this command through sudo even when the host is not configured for it. */
  sudo?: boolean | undefined;
}

export interface ExecResult {
  code: number | null;
  signal?: string | undefined;
  stdout: string;
  stderr: string;
  timedOut: boolean;
}

export interface UploadOptions {
  /** Refuse to send when the local file does not have this sha256. */
  sha256?: string | undefined;
  mode?: number | undefined;
  /** Told the bytes sent so far and the file's size as the upload goes (progress). */
  onBytes?: ((sent: number, total: number) => void) | undefined;
  /**
   * Arguments to run the file with once its sha256 was checked on the host, in the same remote
   * command and before it is renamed into place (`["version"]`): what runs is what was checked. A
   * non-zero exit does not stop the upload; the caller reads `ran`.
   */
  run?: readonly string[] | undefined;
}

export interface FetchOptions {
  /** The file's expected sha256: what the host downloaded is installed only when it has it. */
  sha256: string;
  mode?: number | undefined;
  /** As for an upload: run the checked file with these arguments before it is renamed into place. */
  run?: readonly string[] | undefined;
}

export interface UploadResult {
  sha256: string;
  bytes: number;
  /** With `run`: how the checked file answered. */
  ran?: { code: number | null; stdout: string; stderr: string } | undefined;
}

/** sha256 of the empty input: how `REMOTE_SHA256` tells that `openssl dgst` answers correctly. */
const EMPTY_SHA256 = 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855';

/**
 * Defines the shell function `vaultops_sha256`, which prints the sha256 (64 hex digits) of its stdin,
 * for remote commands that hash a server binary on its host. coreutils' sha256sum has no code for
 * the CPU's SHA instructions: a 182 MB OpenBao binary took it 2.5 s on the test machine (~70 MB/s,
 * slower than the SSH upload it checks), `openssl dgst` 0.2 s. openssl is used when it is there and
 * gives the known sum of the empty input (any OpenSSL from 1.0 on; Debian's ca-certificates depends
 * on it), else sha256sum.
 */
export const REMOTE_SHA256 = [
  `if [ "$(printf '' | openssl dgst -sha256 -r 2>/dev/null | cut -c1-64)" = ${EMPTY_SHA256} ]; then`,
  '  vaultops_sha256() { openssl dgst -sha256 -r | cut -c1-64; }',
  'else',
  '  vaultops_sha256() { sha256sum | cut -c1-64; }',
  'fi',
].join('\n');

/**
 * Quotes one word for a POSIX shell: the one helper for every value sent to a remote shell. Plain
 * words pass as they are; anything else goes in single quotes, where nothing is expanded (a `'`
 * inside becomes '\''). `=` is not plain: `NAME=value` in command position would be an assignment.
 */
export function shq(s: string): string {
  return /^[A-Za-z0-9_./:@%+-]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`;
}
