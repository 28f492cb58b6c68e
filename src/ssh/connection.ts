import { createHash } from 'node:crypto';
import { createReadStream, readFileSync } from 'node:fs';
import type { Client, ClientChannel, ConnectConfig, SFTPWrapper } from 'ssh2';
import { GateError, InputError, UnreachableError, VaultopsError } from '../core/errors.js';
import { redactor } from '../core/redact.js';
import {
  appendKnownHost,
  defaultKnownHosts,
  fingerprint,
  keyType,
  knownHostKeys,
  parsePublicKeyLine,
} from './host-key.js';
import { shq, type ExecOptions, type ExecResult, type Host, type UploadOptions, type UploadResult } from './host.js';

export interface SshTarget {
  host: string;
  port?: number | undefined;
  user?: string | undefined;
  /** Private key file (OpenSSH or PEM format); without it the agent in $SSH_AUTH_SOCK is used. */
  keyFile?: string | undefined;
  /** The host key pinned in the inventory ("ssh-ed25519 AAAA..."). Checked before known_hosts. */
  hostKey?: string | undefined;
  knownHosts?: string | undefined;
  /**
   * Accept a host that neither the pin nor known_hosts knows, and record it in known_hosts.
   * Only with an explicit flag: a first connection through an attacker would be trusted forever.
   * A key that differs from a known one is refused regardless.
   */
  trustOnFirstUse?: boolean | undefined;
  /** Jump host "user@host[:port]"; it is verified with the same known_hosts/agent/key. */
  jump?: string | SshTarget | undefined;
  /** Run commands through `sudo -n` (non-interactive: a password prompt would hang an unattended run). */
  sudo?: boolean | undefined;
  keepaliveIntervalMs?: number | undefined;
  readyTimeoutMs?: number | undefined;
  /** Name for messages (the inventory node name). */
  label?: string | undefined;
}

/** Parses "user@host:port" / "host" for a jump host. */
export function parseJump(spec: string, defaults: SshTarget): SshTarget {
  const m = /^(?:([^@]+)@)?(\[[^\]]+\]|[^:]+)(?::(\d+))?$/.exec(spec.trim());
  if (!m)
    throw new InputError(`Jump host "${spec}" is not user@host[:port].`, {
      hint: 'Write it as ops@bastion.example.com:22.',
    });
  return {
    host: m[2]!.replace(/^\[|\]$/g, ''),
    port: m[3] ? Number(m[3]) : 22,
    user: m[1] ?? defaults.user,
    keyFile: defaults.keyFile,
    knownHosts: defaults.knownHosts,
    trustOnFirstUse: defaults.trustOnFirstUse,
    keepaliveIntervalMs: defaults.keepaliveIntervalMs,
    label: `jump ${m[2]}`,
  };
}

/**
 * One SSH connection (ssh2) to one host, verified against a pinned key or known_hosts, optionally
 * through a jump host. Implements `Host`, so actions do not care about the transport.
 */
export class SshHost implements Host {
  readonly name: string;
  readonly target: SshTarget;
  #client: Client | undefined;
  #jump: SshHost | undefined;
  #sftp: SFTPWrapper | undefined;
  /** The fingerprint of the key the server presented (after connect). */
  hostFingerprint: string | undefined;

  private constructor(target: SshTarget) {
    this.target = target;
    this.name = target.label ?? target.host;
  }

  static async connect(target: SshTarget): Promise<SshHost> {
    const h = new SshHost(target);
    await h.#connect();
    return h;
  }

  get #where(): string {
    return `${this.target.user ?? 'root'}@${this.target.host}:${this.target.port ?? 22}`;
  }

  async #connect(): Promise<void> {
    const t = this.target;
    const port = t.port ?? 22;
    let sock: ClientChannel | undefined;
    if (t.jump) {
      const jt = typeof t.jump === 'string' ? parseJump(t.jump, t) : t.jump;
      this.#jump = await SshHost.connect(jt);
      sock = await this.#jump.#forward(t.host, port);
    }
    const config: ConnectConfig = {
      host: t.host,
      port,
      username: t.user ?? 'root',
      readyTimeout: t.readyTimeoutMs ?? 15_000,
      keepaliveInterval: t.keepaliveIntervalMs ?? 10_000,
      keepaliveCountMax: 3,
      ...(sock ? { sock } : {}),
    };
    if (t.keyFile) {
      try {
        config.privateKey = readFileSync(t.keyFile);
      } catch (e) {
        throw new InputError(
          `SSH key ${t.keyFile} for ${this.name} cannot be read (${(e as NodeJS.ErrnoException).code ?? 'error'}).`,
          { hint: 'Fix ssh.key_file in the inventory, or remove it to use the SSH agent.' },
        );
      }
    } else if (process.env['SSH_AUTH_SOCK']) {
      config.agent = process.env['SSH_AUTH_SOCK'];
    } else {
      throw new InputError(
        `No way to authenticate to ${this.name}: no ssh.key_file and no SSH agent ($SSH_AUTH_SOCK).`,
        { hint: 'Set ssh.key_file for the node, or start ssh-agent and add the key.' },
      );
    }
    let refusal: VaultopsError | undefined;
    config.hostVerifier = (blob: Buffer): boolean => {
      refusal = this.#checkHostKey(blob, port);
      this.hostFingerprint = fingerprint(blob);
      return refusal === undefined;
    };
    // ssh2 (and its crypto) is loaded on the first connection, not by every command that can reach one.
    const { Client } = await import('ssh2');
    const client = new Client();
    await new Promise<void>((resolve, reject) => {
      client.once('ready', () => resolve());
      client.once('error', (e: Error & { level?: string }) => {
        if (refusal) return reject(refusal);
        if (e.level === 'client-authentication') {
          return reject(
            new GateError(`SSH to ${this.name} (${this.#where}): the server refused our key.`, {
              hint: "Check ssh.user and ssh.key_file, and that the public key is in the user's authorized_keys.",
            }),
          );
        }
        reject(
          new UnreachableError(`SSH to ${this.name} (${this.#where}) failed: ${e.message}.`, {
            hint: 'Check that sshd runs there and that ssh.host/ssh.port are right.',
          }),
        );
      });
      client.connect(config);
    });
    client.on('error', () => undefined); // later errors surface through the pending call
    this.#client = client;
  }

  #checkHostKey(blob: Buffer, port: number): VaultopsError | undefined {
    const t = this.target;
    const fp = fingerprint(blob);
    const seen = `${keyType(blob)} ${fp}`;
    if (t.hostKey) {
      const pinned = parsePublicKeyLine(t.hostKey);
      if (!pinned)
        return new InputError(`ssh.host_key of ${this.name} is not a public key line.`, {
          hint: 'Write it as "ssh-ed25519 AAAA..." (from the host\'s /etc/ssh/ssh_host_*_key.pub).',
        });
      if (pinned.blob.equals(blob)) return undefined;
      return new GateError(`Host key of ${this.name} (${this.#where}) does not match the pinned key: refused.`, {
        details: [`pinned:    ${pinned.type} ${fingerprint(pinned.blob)}`, `presented: ${seen}`],
        hint: 'Someone may be intercepting the connection, or the host was rebuilt. Check the fingerprint on the host (`ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub`) and update ssh.host_key.',
      });
    }
    // Without a known_hosts of its own, the target uses vaultops' file in the state dir: what
    // trust-on-first-use accepted is recorded there and checked on every later connection.
    const file = t.knownHosts ?? defaultKnownHosts();
    const { keys, revoked } = knownHostKeys(file, t.host, port);
    if (revoked.some((k) => k.equals(blob)))
      return new GateError(`Host key of ${this.name} (${seen}) is marked @revoked in ${file}: refused.`);
    if (keys.some((k) => k.equals(blob))) return undefined;
    if (keys.length) {
      // Listed with other keys (of this type or another): never a first use, always refused.
      return new GateError(`Host key of ${this.name} (${this.#where}) differs from the one in ${file}: refused.`, {
        details: [...keys.map((k) => `known:     ${keyType(k)} ${fingerprint(k)}`), `presented: ${seen}`],
        hint: 'Someone may be intercepting the connection, or the host was rebuilt. Verify the fingerprint on the host, then `ssh-keygen -R` the old entry.',
      });
    }
    if (revoked.length)
      return new GateError(`Host ${this.name} (${this.#where}) has only revoked keys in ${file}: refused.`);
    if (t.trustOnFirstUse) {
      try {
        appendKnownHost(file, t.host, port, blob);
      } catch (e) {
        return new InputError(
          `Trust-on-first-use: cannot record the host key of ${this.name} in ${file} (${(e as NodeJS.ErrnoException).code ?? 'error'}), so it was not accepted.`,
          { hint: 'Set ssh.known_hosts to a writable file, or pin ssh.host_key.' },
        );
      }
      return undefined;
    }
    return new GateError(`Host key of ${this.name} (${this.#where}) is unknown: ${seen}.`, {
      hint: `Pin it as ssh.host_key or add it to ssh.known_hosts (${file}) after checking the fingerprint on the host; --trust-on-first-use records it (only when the network path is trusted).`,
    });
  }

  #forward(host: string, port: number): Promise<ClientChannel> {
    return new Promise((resolve, reject) => {
      this.#live().forwardOut('127.0.0.1', 0, host, port, (e, ch) =>
        e
          ? reject(new UnreachableError(`Jump host ${this.name} could not reach ${host}:${port}: ${e.message}.`))
          : resolve(ch),
      );
    });
  }

  #live(): Client {
    if (!this.#client) throw new VaultopsError(`SSH connection to ${this.name} is closed.`);
    return this.#client;
  }

  /** Whether commands go through sudo: asked for, and not already root. */
  get #sudo(): boolean {
    return this.target.sudo === true && (this.target.user ?? 'root') !== 'root';
  }

  /**
   * Runs a command through the remote shell; resolves with its exit code (never rejects on a
   * non-zero exit). Output is bounded: the last `maxBytes` of each stream are kept.
   */
  exec(command: string, options: ExecOptions = {}): Promise<ExecResult> {
    return this.#exec(command, options, this.#sudo || options.sudo === true);
  }

  #exec(command: string, options: ExecOptions, sudo: boolean): Promise<ExecResult> {
    const max = options.maxBytes ?? 64 * 1024;
    // The whole command is one single-quoted word for sudo's shell: nothing in it is expanded twice.
    const full = sudo ? `sudo -n -- sh -c ${shq(command)}` : command;
    return new Promise((resolve, reject) => {
      this.#live().exec(full, (e, stream) => {
        if (e) return reject(new UnreachableError(`SSH exec on ${this.name} failed: ${e.message}.`));
        let stdout = Buffer.alloc(0);
        let stderr = Buffer.alloc(0);
        let timedOut = false;
        const timer = options.timeoutMs
          ? setTimeout(() => {
              timedOut = true;
              stream.signal('KILL');
              stream.close();
            }, options.timeoutMs)
          : undefined;
        // A tail cut may fall inside a secret, whose start the redactor then cannot see: keep a margin
        // longer than any secret before the tail, and mask from there (a cut secret is masked whole).
        const margin = Math.max(4096, redactor.longest * 4 + 16);
        const cut = { out: false, err: false };
        const keep = (acc: Buffer, chunk: Buffer, which: 'out' | 'err') => {
          const b = Buffer.concat([acc, chunk]);
          if (b.length <= max + margin) return b;
          cut[which] = true;
          return b.subarray(b.length - max - margin);
        };
        const text = (b: Buffer, wasCut: boolean) => {
          const s = b.toString('utf8');
          if (!wasCut && b.length <= max) return s;
          // Cut: what lies in the margin may start inside a secret, so it is dropped, never shown.
          return redactor.redactTail(s, wasCut ? Math.max(0, s.length - margin) : max);
        };
        stream.on('data', (c: Buffer) => (stdout = keep(stdout, c, 'out')));
        stream.stderr.on('data', (c: Buffer) => (stderr = keep(stderr, c, 'err')));
        if (options.stdin !== undefined) stream.end(options.stdin);
        else stream.end();
        stream.on('close', (code: number | null, signal?: string) => {
          if (timer) clearTimeout(timer);
          resolve({
            code: timedOut ? null : (code ?? null),
            signal: signal ?? (timedOut ? 'timeout' : undefined),
            stdout: text(stdout, cut.out),
            stderr: text(stderr, cut.err),
            timedOut,
          });
        });
      });
    });
  }

  /** The connection's SFTP session (opened once, ended by close()); for streaming stores such as SftpStore. */
  sftp(): Promise<SFTPWrapper> {
    return this.#sftpSession();
  }

  async #sftpSession(): Promise<SFTPWrapper> {
    if (this.#sftp) return this.#sftp;
    this.#sftp = await new Promise<SFTPWrapper>((resolve, reject) =>
      this.#live().sftp((e, s) =>
        e ? reject(new UnreachableError(`SFTP to ${this.name} failed: ${e.message}.`)) : resolve(s),
      ),
    );
    return this.#sftp;
  }

  /**
   * Uploads a file over SFTP to `remotePath.part`, checks the remote sha256 (sha256sum on the host),
   * then renames it into place. With sudo, the upload goes to /tmp first and `install` moves it.
   */
  async upload(localPath: string, remotePath: string, options: UploadOptions = {}): Promise<UploadResult> {
    const local = await sha256File(localPath);
    if (options.sha256 && local.sha256 !== options.sha256.toLowerCase()) {
      throw new InputError(
        `${localPath} has sha256 ${local.sha256}, not the expected ${options.sha256}: not uploaded.`,
      );
    }
    const sudo = this.#sudo;
    let part = `${remotePath}.part`;
    if (sudo) {
      // The SSH user cannot write the target, so the file goes to a temp file first: made by mktemp
      // on the host as that user (exclusive create, 0600, a random name in the sticky /tmp), never a
      // predictable name another user could have planted a symlink or file at.
      const m = await this.#exec('mktemp "${TMPDIR:-/tmp}/vaultops-upload.XXXXXXXXXX"', {}, false);
      const made = m.stdout.trim();
      if (m.code !== 0 || !/^\/[^\n]+$/.test(made))
        throw new VaultopsError(`Upload to ${this.name}: mktemp failed on the host: ${m.stderr.trim()}`);
      part = made;
    }
    const sftp = await this.#sftpSession();
    await new Promise<void>((resolve, reject) =>
      sftp.fastPut(
        localPath,
        part,
        {
          mode: options.mode ?? 0o644,
          concurrency: 16,
          chunkSize: 128 * 1024,
          step: options.onBytes && ((sent, _n, size) => options.onBytes!(sent, size)),
        },
        (e) =>
          e
            ? reject(new VaultopsError(`Upload of ${localPath} to ${this.name}:${part} failed: ${e.message}.`))
            : resolve(),
      ),
    );
    const remote = await this.sha256(part);
    if (remote !== local.sha256) {
      await this.exec(`rm -f ${shq(part)}`);
      throw new VaultopsError(
        `Upload to ${this.name}:${remotePath} arrived with sha256 ${remote ?? 'unknown'}, not ${local.sha256}: removed.`,
        { hint: 'Check the disk on the host and the network path, then try again.' },
      );
    }
    const mode = (options.mode ?? 0o644).toString(8);
    const move = sudo
      ? `install -m ${mode} ${shq(part)} ${shq(remotePath)} && rm -f ${shq(part)}`
      : `chmod ${mode} ${shq(part)} && mv -f ${shq(part)} ${shq(remotePath)}`;
    const r = await this.exec(move, { sudo });
    if (r.code !== 0)
      throw new VaultopsError(`Could not move the upload into ${this.name}:${remotePath}: ${r.stderr.trim()}`);
    return { sha256: local.sha256, bytes: local.bytes };
  }

  /** sha256 of a file on the host, undefined when it does not exist. */
  async sha256(path: string): Promise<string | undefined> {
    const r = await this.exec(`sha256sum -- ${shq(path)}`, { timeoutMs: 300_000 });
    if (r.code !== 0) return undefined;
    return /^([0-9a-f]{64})\b/.exec(r.stdout)?.[1];
  }

  async readFile(path: string, options: { maxBytes?: number } = {}): Promise<string> {
    const max = options.maxBytes ?? 1024 * 1024;
    const r = await this.exec(`tail -c ${max} -- ${shq(path)}`, { maxBytes: max });
    if (r.code !== 0) throw new VaultopsError(`Cannot read ${this.name}:${path}: ${redactor.redact(r.stderr.trim())}`);
    return r.stdout;
  }

  close(): void {
    this.#sftp?.end();
    this.#client?.end();
    this.#client = undefined;
    this.#jump?.close();
  }
}

export async function sha256File(path: string): Promise<{ sha256: string; bytes: number }> {
  const hash = createHash('sha256');
  let bytes = 0;
  try {
    for await (const chunk of createReadStream(path)) {
      hash.update(chunk as Buffer);
      bytes += (chunk as Buffer).length;
    }
  } catch (e) {
    throw new InputError(`Cannot read ${path} (${(e as NodeJS.ErrnoException).code ?? 'error'}).`);
  }
  return { sha256: hash.digest('hex'), bytes };
}
