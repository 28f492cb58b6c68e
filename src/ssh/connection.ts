import { createHash } from 'node:crypto';
import { createReadStream, readFileSync, statSync } from 'node:fs';
import { homedir } from 'node:os';
import { join, posix } from 'node:path';
import type { Readable } from 'node:stream';
import type { AnyAuthMethod, Client, ClientChannel, ConnectConfig, ParsedKey, SFTPWrapper } from 'ssh2';
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
import { defaultSshConfigFile, expandTokens, sshConfigFor, type SshConfigEntry } from './ssh-config.js';
import {
  REMOTE_SHA256,
  shq,
  type ExecOptions,
  type ExecResult,
  type FetchOptions,
  type Host,
  type UploadOptions,
  type UploadResult,
} from './host.js';

/** ssh2's key parser; the module itself is loaded on the first connection. */
type Ssh2Utils = (typeof import('ssh2'))['utils'];

export interface SshTarget {
  host: string;
  port?: number | undefined;
  user?: string | undefined;
  /** Private key file (OpenSSH or PEM format); without it the agent in $SSH_AUTH_SOCK is used. */
  keyFile?: string | undefined;
  /** The passphrase of an encrypted key file (already resolved from its secret reference). */
  passphrase?: string | undefined;
  /** The host key pinned in the inventory ("ssh-ed25519 AAAA..."). Checked before known_hosts. */
  hostKey?: string | undefined;
  /**
   * The one known_hosts file to check (and where trust-on-first-use records). Without it: the
   * files OpenSSH reads (~/.ssh/known_hosts, /etc/ssh/ssh_known_hosts, or what the SSH config's
   * UserKnownHostsFile/GlobalKnownHostsFile say) and vaultops' own file in the state dir, which is
   * where trust-on-first-use records.
   */
  knownHosts?: string | undefined;
  /**
   * The ssh_config file whose Host blocks fill what this target leaves out (HostName, User, Port,
   * IdentityFile, ProxyJump, UserKnownHostsFile, IdentityAgent); the target's own fields win.
   * Default ~/.ssh/config; false reads none.
   */
  sshConfig?: string | false | undefined;
  /** The user when neither the target nor the SSH config names one (a jump host takes its target's). */
  fallbackUser?: string | undefined;
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

/**
 * Parses a jump host, "[user@]host[:port]" or "ssh://[user@]host[:port]" (ProxyJump syntax); a
 * comma list is a chain, the first hop first. Fields it leaves out come from the SSH config of the
 * jump host's own name, then from `defaults` (the key file, known_hosts and passphrase of the target).
 */
export function parseJump(spec: string, defaults: SshTarget): SshTarget {
  const hops = spec
    .split(',')
    .map((h) => h.trim())
    .filter(Boolean);
  let prev: SshTarget | undefined;
  for (const hop of hops) {
    const m = /^(?:ssh:\/\/)?(?:([^@]+)@)?(\[[^\]]+\]|[^:@/]+)(?::(\d+))?\/?$/.exec(hop);
    if (!m)
      throw new InputError(`Jump host "${hop}" is not user@host[:port].`, {
        hint: 'Write it as ops@bastion.example.com:22.',
      });
    prev = {
      host: m[2]!.replace(/^\[|\]$/g, ''),
      port: m[3] ? Number(m[3]) : undefined,
      user: m[1],
      fallbackUser: defaults.user ?? defaults.fallbackUser,
      keyFile: defaults.keyFile,
      passphrase: defaults.passphrase,
      knownHosts: defaults.knownHosts,
      sshConfig: defaults.sshConfig,
      trustOnFirstUse: defaults.trustOnFirstUse,
      keepaliveIntervalMs: defaults.keepaliveIntervalMs,
      label: `jump ${m[2]}`,
      ...(prev ? { jump: prev } : {}),
    };
  }
  if (!prev) throw new InputError(`Jump host "${spec}" is empty.`, { hint: 'Write it as ops@bastion.example.com:22.' });
  return prev;
}

/**
 * What is piped into a command's stdin: `open` makes the stream once the channel is open (so no
 * byte flows before it can be written); `error` is set when reading it failed.
 */
interface ExecInput {
  open: () => Readable;
  error?: Error | undefined;
}

/** A target with the SSH config applied: where to connect, as whom, with which keys. */
interface Resolved {
  host: string;
  port: number;
  user: string;
  jump: string | SshTarget | undefined;
  auth: AnyAuthMethod[];
  /** Files checked for the host key, and the one trust-on-first-use records in. */
  knownHostsFiles: string[];
  recordFile: string;
}

/**
 * The end of an upload's or a fetch's remote command, once the temporary file "$t" holds the
 * checked bytes: the mode, then the run, then the rename into place.
 */
function installCheckedFile(remotePath: string, mode: string, run: readonly string[] | undefined): string[] {
  return [
    `chmod ${mode} "$t" || { rm -f "$t"; exit 1; }`,
    // The file runs here, checked and not yet where anyone else would run it; its exit code is
    // passed on after the rename, and its output is marked off from the rename's.
    ...(run
      ? [`echo vaultops-run-begin; "$t" ${run.map(shq).join(' ')} 2>&1; rc=$?; echo "vaultops-run-end $rc"`]
      : []),
    `mv -f -- "$t" ${shq(remotePath)} || { rm -f "$t"; exit 1; }`,
  ];
}

/** What the checked file printed when it was run (see installCheckedFile). */
function ranOutput(stdout: string, run: readonly string[] | undefined): UploadResult['ran'] {
  const out = /vaultops-run-begin\n([\s\S]*)vaultops-run-end (\d+)/.exec(stdout);
  return run && out ? { code: Number(out[2]), stdout: out[1]!, stderr: '' } : undefined;
}

/**
 * A URL hosts may be asked to download: http or https, no user or password in it (they would be
 * shown in messages), and nothing a curl config line could not carry. Returns its normalized form.
 */
export function checkedFetchUrl(url: string): string {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new InputError(`"${url}" is not a URL.`, { hint: 'Give an http:// or https:// URL of the binary.' });
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:')
    throw new InputError(`${u.protocol} URLs cannot be fetched on the hosts: only http and https.`);
  if (u.username || u.password)
    throw new InputError('A URL with a user or password in it is refused: it would be shown in messages.', {
      hint: "Give the hosts access another way (a .netrc in root's home on each host, or a mirror that needs none).",
    });
  if (/["\\\s]/.test(u.href))
    throw new InputError(`The URL ${shownUrl(u.href)} holds characters that cannot be passed on.`);
  return u.href;
}

/** wget -q prints nothing (its messages would show the URL): its exit code, said in words. */
function explainWget(stderr: string): string {
  const code = /wget exit (\d+)$/.exec(stderr)?.[1];
  const why: Record<string, string> = {
    '4': 'network failure',
    '5': 'TLS certificate not trusted',
    '6': 'authentication failure',
    '8': 'the server answered with an error',
  };
  return code && why[code] ? `${stderr} (${why[code]})` : stderr;
}

/** A URL as messages show it: without its query and fragment (a signed URL's signature is there). */
export function shownUrl(href: string): string {
  const u = new URL(href);
  return `${u.origin}${u.pathname}${u.search || u.hash ? '?...' : ''}`;
}

const DEFAULT_IDENTITIES = ['id_ed25519', 'id_ecdsa', 'id_rsa'];

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
    const r = this.#resolved;
    return r
      ? `${r.user}@${r.host}:${r.port}`
      : `${this.target.user ?? 'root'}@${this.target.host}:${this.target.port ?? 22}`;
  }

  #resolved: Resolved | undefined;

  /**
   * Applies the SSH config to what the target leaves out. The target (the inventory) wins field by
   * field; its host is the name looked up in the config's Host blocks, so HostName maps it as ssh does.
   */
  #resolve(utils: Ssh2Utils): Resolved {
    const t = this.target;
    const cfgFile = t.sshConfig === false ? undefined : (t.sshConfig ?? defaultSshConfigFile());
    const cfg: SshConfigEntry = cfgFile ? sshConfigFor(t.host, cfgFile) : { identityFiles: [] };
    const host = cfg.hostName ?? t.host;
    const port = t.port ?? cfg.port ?? 22;
    const user = t.user ?? cfg.user ?? t.fallbackUser ?? 'root';
    const jump = t.jump ?? (cfg.proxyJump && cfg.proxyJump !== 'none' ? cfg.proxyJump : undefined);
    const home = homedir();
    const knownHostsFiles = t.knownHosts
      ? [t.knownHosts]
      : [
          ...(cfg.userKnownHostsFiles ?? [join(home, '.ssh', 'known_hosts'), join(home, '.ssh', 'known_hosts2')]),
          ...(cfg.globalKnownHostsFiles ?? ['/etc/ssh/ssh_known_hosts', '/etc/ssh/ssh_known_hosts2']),
          defaultKnownHosts(),
        ];
    return {
      host,
      port,
      user,
      jump,
      auth: this.#authMethods(t, cfg, user, host, utils),
      knownHostsFiles,
      recordFile: t.knownHosts ?? defaultKnownHosts(),
    };
  }

  /**
   * The keys to offer, in order: the target's key file (the inventory's: an unreadable one is an
   * error), else the SSH config's IdentityFiles, else ssh's default identities that exist; then the
   * agent ($SSH_AUTH_SOCK, or the config's IdentityAgent). An encrypted key needs the passphrase;
   * without one it is left to the agent, which may hold it unlocked.
   */
  #authMethods(t: SshTarget, cfg: SshConfigEntry, username: string, host: string, utils: Ssh2Utils): AnyAuthMethod[] {
    const agentSetting = cfg.identityAgent;
    const agent =
      agentSetting === 'none'
        ? undefined
        : agentSetting && agentSetting !== 'SSH_AUTH_SOCK'
          ? expandTokens(agentSetting.replace(/^\$\{?SSH_AUTH_SOCK\}?$/, process.env['SSH_AUTH_SOCK'] ?? ''), {
              host,
              user: username,
            }) || undefined
          : process.env['SSH_AUTH_SOCK'] || undefined;
    const explicit = t.keyFile !== undefined;
    const files = explicit
      ? [t.keyFile!]
      : cfg.identityFiles.length
        ? cfg.identityFiles
        : DEFAULT_IDENTITIES.map((f) => join(homedir(), '.ssh', f));
    const methods: AnyAuthMethod[] = [];
    const locked: string[] = [];
    for (const file of files) {
      let data: Buffer;
      try {
        data = readFileSync(file);
      } catch (e) {
        if (!explicit) continue; // ssh skips identity files that are not there
        throw new InputError(
          `SSH key ${file} for ${this.name} cannot be read (${(e as NodeJS.ErrnoException).code ?? 'error'}).`,
          { hint: 'Fix ssh.key_file in the inventory, or remove it to use the SSH agent.' },
        );
      }
      const parsed = utils.parseKey(data, t.passphrase);
      const key = Array.isArray(parsed) ? parsed[0] : parsed;
      if (key instanceof Error || key === undefined) {
        const encrypted = /encrypted|passphrase/i.test(key?.message ?? '');
        if (encrypted && t.passphrase === undefined) {
          locked.push(file);
          continue;
        }
        // The message is ssh2's about the key's format; it never holds the passphrase.
        throw new InputError(
          encrypted
            ? `The passphrase from key_passphrase does not open SSH key ${file} (for ${this.name}).`
            : `SSH key ${file} for ${this.name} is not a private key ssh2 can read (${key?.message ?? 'empty'}).`,
          {
            hint: encrypted
              ? 'Check the secret the reference points at (`ssh-keygen -y -f KEY` asks for the passphrase and prints the public key).'
              : 'Use an OpenSSH or PEM private key (ssh-keygen makes one).',
          },
        );
      }
      methods.push({ type: 'publickey', username, key: key as ParsedKey });
    }
    if (agent) methods.push({ type: 'agent', username, agent });
    if (methods.length) return methods;
    if (locked.length)
      throw new InputError(
        `SSH key ${locked.join(', ')} for ${this.name} is protected by a passphrase, and no passphrase or agent was given.`,
        {
          hint: 'Set ssh.key_passphrase to a secret reference (env:, file:, prompt:, cmd:), or add the key to ssh-agent (ssh-add) and set $SSH_AUTH_SOCK.',
        },
      );
    throw new InputError(
      `No way to authenticate to ${this.name}: no ssh.key_file, no IdentityFile or default key in ~/.ssh, and no SSH agent ($SSH_AUTH_SOCK).`,
      { hint: 'Set ssh.key_file for the node, or start ssh-agent and add the key.' },
    );
  }

  async #connect(): Promise<void> {
    // ssh2 (and its crypto) is loaded on the first connection, not by every command that can reach one.
    // It is CommonJS: Node's ESM loader does not see `utils` as a named export, so it comes off the default.
    const ssh2 = (await import('ssh2')).default;
    const r = (this.#resolved = this.#resolve(ssh2.utils));
    let sock: ClientChannel | undefined;
    if (r.jump) {
      const jt = typeof r.jump === 'string' ? parseJump(r.jump, this.target) : r.jump;
      this.#jump = await SshHost.connect(jt);
      sock = await this.#jump.#forward(r.host, r.port);
    }
    const config: ConnectConfig = {
      host: r.host,
      port: r.port,
      username: r.user,
      readyTimeout: this.target.readyTimeoutMs ?? 15_000,
      keepaliveInterval: this.target.keepaliveIntervalMs ?? 10_000,
      keepaliveCountMax: 3,
      authHandler: r.auth,
      ...(sock ? { sock } : {}),
    };
    let refusal: VaultopsError | undefined;
    config.hostVerifier = (blob: Buffer): boolean => {
      refusal = this.#checkHostKey(blob, r);
      this.hostFingerprint = fingerprint(blob);
      return refusal === undefined;
    };
    const client = new ssh2.Client();
    // What the server said before it closed (pam_nologin's "System is booting up...", a login banner).
    let banner = '';
    client.on(
      'banner',
      (m: string) =>
        (banner = m
          .replace(/\s+/g, ' ')
          .trim()
          .replace(/^"(.*)"$/, '$1')
          .slice(0, 300)),
    );
    await new Promise<void>((resolve, reject) => {
      client.once('ready', () => resolve());
      // A server can close the connection during login without an SSH error (pam_nologin while the
      // host boots or /etc/nologin is there, MaxStartups, AllowUsers): without this the wait never ends.
      client.once('close', () =>
        reject(
          new UnreachableError(
            `SSH to ${this.name} (${this.#where}): the server closed the connection during login${banner ? ` ("${banner}")` : ''}.`,
            {
              hint: "Look at the host's sshd log; a host still booting or with /etc/nologin refuses every user but root.",
            },
          ),
        ),
      );
      client.once('error', (e: Error & { level?: string }) => {
        if (refusal) return reject(refusal);
        if (e.level === 'client-authentication') {
          return reject(
            new GateError(`SSH to ${this.name} (${this.#where}): the server refused our key.`, {
              hint: "Check ssh.user and ssh.key_file (or the SSH config's User and IdentityFile, or the keys in the agent), and that the public key is in the user's authorized_keys.",
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
      // Without TCP_NODELAY, Nagle holds each small SSH packet that follows another (a channel's
      // exec request, then its EOF) until the server's delayed ACK: ~40 ms at a time, ~100 ms per
      // remote command, where OpenSSH's own client takes ~10 ms.
      client.setNoDelay(true);
    });
    client.on('error', () => undefined); // later errors surface through the pending call
    this.#client = client;
  }

  #checkHostKey(blob: Buffer, r: Resolved): VaultopsError | undefined {
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
    // Without a known_hosts of its own, the target is checked against the files ssh reads and
    // vaultops' file in the state dir: what trust-on-first-use accepted is recorded there.
    const files = r.knownHostsFiles;
    const file = files.length === 1 ? files[0]! : files.join(', ');
    const { keys, revoked, certAuthorities } = knownHostKeys(files, r.host, r.port);
    if (revoked.some((k) => k.equals(blob)))
      return new GateError(`Host key of ${this.name} (${seen}) is marked @revoked in ${file}: refused.`, {
        hint: 'The key was revoked on purpose: find out why before changing anything. A rebuilt host gets a new key, which you pin as ssh.host_key.',
      });
    if (keys.some((k) => k.equals(blob))) return undefined;
    if (keys.length) {
      // Listed with other keys (of this type or another): never a first use, always refused.
      return new GateError(`Host key of ${this.name} (${this.#where}) differs from the one in ${file}: refused.`, {
        details: [...keys.map((k) => `known:     ${keyType(k)} ${fingerprint(k)}`), `presented: ${seen}`],
        hint: 'Someone may be intercepting the connection, or the host was rebuilt. Verify the fingerprint on the host, then `ssh-keygen -R` the old entry.',
      });
    }
    if (t.trustOnFirstUse) {
      try {
        appendKnownHost(r.recordFile, r.host, r.port, blob);
      } catch (e) {
        return new InputError(
          `Trust-on-first-use: cannot record the host key of ${this.name} in ${r.recordFile} (${(e as NodeJS.ErrnoException).code ?? 'error'}), so it was not accepted.`,
          { hint: 'Set ssh.known_hosts to a writable file, or pin ssh.host_key.' },
        );
      }
      return undefined;
    }
    return new GateError(`Host key of ${this.name} (${this.#where}) is unknown: ${seen}.`, {
      details: [
        `checked:   ${file}`,
        ...(certAuthorities
          ? [
              `${certAuthorities} @cert-authority line(s) match this host, but vaultops does not verify host certificates: pin the host's own key.`,
            ]
          : []),
      ],
      hint: `Pin it as ssh.host_key or add it to known_hosts after checking the fingerprint on the host; --trust-on-first-use records it in ${r.recordFile} (only when the network path is trusted).`,
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

  /**
   * With `input`, the stream is piped into the command's stdin (with backpressure) and the timeout
   * starts when it has ended; a read error ends stdin early and is kept in `input.error`.
   */
  #exec(command: string, options: ExecOptions, sudo: boolean, input?: ExecInput): Promise<ExecResult> {
    const max = options.maxBytes ?? 64 * 1024;
    // The whole command is one single-quoted word for sudo's shell: nothing in it is expanded twice.
    const full = sudo ? `sudo -n -- sh -c ${shq(command)}` : command;
    return new Promise((resolve, reject) => {
      this.#live().exec(full, (e, stream) => {
        if (e) return reject(new UnreachableError(`SSH exec on ${this.name} failed: ${e.message}.`));
        let stdout = Buffer.alloc(0);
        let stderr = Buffer.alloc(0);
        let timedOut = false;
        let timer: NodeJS.Timeout | undefined;
        const arm = () => {
          if (options.timeoutMs)
            timer = setTimeout(() => {
              timedOut = true;
              stream.signal('KILL');
              stream.close();
            }, options.timeoutMs);
        };
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
        let src: Readable | undefined;
        if (input) {
          src = input.open();
          src.once('end', arm);
          src.once('error', (e) => {
            input.error = e;
            src!.unpipe(stream);
            stream.end();
            arm();
          });
          src.pipe(stream);
        } else {
          if (options.stdin !== undefined) stream.end(options.stdin);
          else stream.end();
          arm();
        }
        stream.on('close', (code: number | null, signal?: string) => {
          if (timer) clearTimeout(timer);
          // A command that ended before reading all of its input (or a closed connection): the
          // channel takes no more writes, so the rest is not read.
          src?.destroy();
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
   * Uploads a file in one remote command that creates a temporary file next to the target (mktemp:
   * exclusive, 0600, a random name), copies the bytes arriving on its stdin into it while hashing
   * them (`tee | vaultops_sha256`, see REMOTE_SHA256), and only when the sum is the expected one
   * and every byte was written sets the mode and renames it into place; on any failure the
   * temporary file is removed. The file is hashed as it arrives, not read again afterwards. With
   * sudo the command runs as root, so the file is root's from its creation: the SSH user never
   * holds it. With `options.sha256` the local file is not hashed first: the host checks what
   * arrived against that sum (a file that differs is removed, never installed). A connection cut
   * during the upload ends the command's stdin early: the remote command is not killed (no pty),
   * sees a sum that differs and removes the temporary file.
   */
  async upload(localPath: string, remotePath: string, options: UploadOptions = {}): Promise<UploadResult> {
    let size: number;
    try {
      size = statSync(localPath).size;
    } catch (e) {
      throw new InputError(`Cannot read ${localPath} (${(e as NodeJS.ErrnoException).code ?? 'error'}).`);
    }
    const want = (options.sha256 ?? (await sha256File(localPath)).sha256).toLowerCase();
    if (!/^[0-9a-f]{64}$/.test(want)) throw new InputError(`"${options.sha256}" is not a sha256 (64 hex digits).`);
    const sudo = this.#sudo;
    // Exclusive create, 0600, a random name: never a predictable name another user could have
    // planted a symlink or file at. Next to the target, so the rename stays on one file system.
    const template = shq(`${posix.dirname(remotePath)}/.${posix.basename(remotePath)}.vaultops-upload.XXXXXXXXXX`);
    const mode = (options.mode ?? 0o644).toString(8);
    const input: ExecInput = {
      open: () => {
        const stream = createReadStream(localPath, { highWaterMark: 256 * 1024 });
        let sent = 0;
        // Attached in the same tick as the pipe: no chunk passes before the channel gets it.
        if (options.onBytes) stream.on('data', (c) => options.onBytes!((sent += c.length), size));
        return stream;
      },
    };
    const r = await this.#exec(
      [
        'umask 077',
        REMOTE_SHA256,
        `t=$(mktemp ${template}) || exit 85`,
        // tee drops a file it could not write to and goes on copying: the sum is of what arrived,
        // the size says whether all of it is in the file.
        `s=$(tee -- "$t" | vaultops_sha256)`,
        `n=$(wc -c < "$t")`,
        `if [ "$s" != ${want} ]; then rm -f "$t"; echo "sha256 $s" >&2; exit 86; fi`,
        `[ "$n" -eq ${size} ] || { rm -f "$t"; echo "$n of ${size} bytes were written" >&2; exit 1; }`,
        ...installCheckedFile(remotePath, mode, options.run),
      ].join('\n'),
      { timeoutMs: 300_000 },
      sudo,
      input,
    );
    if (input.error)
      throw new InputError(`Cannot read ${localPath} (${(input.error as NodeJS.ErrnoException).code ?? 'error'}).`);
    if (r.code === null && !r.timedOut)
      throw new VaultopsError(
        `Upload of ${localPath} to ${this.name}:${remotePath} failed: the connection closed before the host answered.`,
        { hint: 'Check the network path to the host, then try again; the temporary file is removed on the host.' },
      );
    if (r.code === 85) throw new VaultopsError(`Upload to ${this.name}: mktemp failed on the host: ${r.stderr.trim()}`);
    if (r.code === 86) {
      const local = options.sha256 ? (await sha256File(localPath)).sha256 : want;
      if (local !== want)
        throw new InputError(
          `${localPath} has sha256 ${local}, not the expected ${want}: not installed on ${this.name}.`,
        );
      throw new VaultopsError(
        `Upload to ${this.name}:${remotePath} arrived with ${r.stderr.trim() || 'an unreadable sha256'}, not ${want}: removed.`,
        { hint: 'Check the disk on the host and the network path, then try again.' },
      );
    }
    if (r.code !== 0)
      throw new VaultopsError(
        `Could not move the upload into ${this.name}:${remotePath} (exit ${r.code ?? r.signal}): ${r.stderr.trim()}`,
      );
    return { sha256: want, bytes: size, ran: ranOutput(r.stdout, options.run) };
  }

  /**
   * Has the host download `url` itself (curl, else wget) into a temporary file next to the target,
   * made as `upload` makes it, then hashes that file and, only when its sha256 is the expected one,
   * sets the mode, runs it when asked and renames it into place; on any failure the temporary file
   * is removed. The URL reaches the host on the command's stdin and is handed to curl or wget by
   * the shell's printf (a builtin): it never appears in a process's arguments, where a signed URL
   * would be readable by every user of the host. Nothing crosses this connection but the command.
   */
  async fetch(url: string, remotePath: string, options: FetchOptions): Promise<UploadResult> {
    const want = options.sha256.toLowerCase();
    if (!/^[0-9a-f]{64}$/.test(want)) throw new InputError(`"${options.sha256}" is not a sha256 (64 hex digits).`);
    const href = checkedFetchUrl(url);
    const shown = shownUrl(href);
    const template = shq(`${posix.dirname(remotePath)}/.${posix.basename(remotePath)}.vaultops-upload.XXXXXXXXXX`);
    const mode = (options.mode ?? 0o644).toString(8);
    const failed = (rc: string) => `{ rc=$?; rm -f "$t"; echo "${rc} exit $rc" >&2; exit 88; }`;
    const r = await this.#exec(
      [
        'umask 077',
        REMOTE_SHA256,
        'IFS= read -r u || exit 84',
        `t=$(mktemp ${template}) || exit 85`,
        'if command -v curl >/dev/null 2>&1; then',
        `  printf 'url = "%s"\\n' "$u" | curl -fsS -L --proto =http,https --proto-redir =http,https --connect-timeout 15 --speed-time 60 --speed-limit 1024 -K - -o "$t" || ${failed('curl')}`,
        'elif command -v wget >/dev/null 2>&1; then',
        `  printf '%s\\n' "$u" | wget -q -T 15 -i - -O "$t" || ${failed('wget')}`,
        'else rm -f "$t"; echo "neither curl nor wget is installed" >&2; exit 89; fi',
        's=$(vaultops_sha256 < "$t")',
        `if [ "$s" != ${want} ]; then rm -f "$t"; echo "sha256 $s" >&2; exit 86; fi`,
        'echo "vaultops-bytes $(wc -c < "$t")"',
        ...installCheckedFile(remotePath, mode, options.run),
      ].join('\n'),
      { timeoutMs: 600_000, stdin: `${href}\n` },
      this.#sudo,
    );
    const stderr = r.stderr.trim().split('\n').filter(Boolean).slice(-3).join('; ');
    if (r.code === null)
      throw new VaultopsError(
        r.timedOut
          ? `${this.name} did not finish downloading ${shown} within 10 minutes.`
          : `${this.name}: the connection closed while the host was downloading ${shown}.`,
        {
          hint: 'Check the network path to the host, then try again. The download may still end there on its own: its file is installed only with the expected sha256, else removed.',
        },
      );
    if (r.code === 85) throw new VaultopsError(`Fetch on ${this.name}: mktemp failed on the host: ${stderr}`);
    if (r.code === 88 || r.code === 89)
      throw new VaultopsError(`${this.name} could not download ${shown}: ${explainWget(stderr) || `exit ${r.code}`}.`, {
        hint:
          r.code === 89
            ? `Install curl or wget on ${this.name}, or stage without --fetch-on-hosts (the binary is then sent over SSH).`
            : `Check that ${this.name} reaches the URL (proxy, firewall, the mirror's TLS certificate in the host's trust store), or stage without --fetch-on-hosts.`,
      });
    if (r.code === 86)
      throw new InputError(
        `${this.name} downloaded ${shown} with ${stderr || 'an unreadable sha256'}, not the expected ${want}: removed, nothing installed.`,
        {
          hint: 'Check that the URL serves the file whose sha256 you gave (a different build, an error page), then try again.',
        },
      );
    if (r.code !== 0)
      throw new VaultopsError(
        `Could not install the download on ${this.name}:${remotePath} (exit ${r.code}): ${stderr}`,
      );
    const bytes = Number(/vaultops-bytes (\d+)/.exec(r.stdout)?.[1] ?? NaN);
    return { sha256: want, bytes, ran: ranOutput(r.stdout, options.run) };
  }

  /** sha256 of a file on the host, undefined when it does not exist. */
  async sha256(path: string): Promise<string | undefined> {
    const r = await this.exec(`${REMOTE_SHA256}\nf=${shq(path)}; [ -f "$f" ] && vaultops_sha256 < "$f"`, {
      timeoutMs: 300_000,
    });
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
