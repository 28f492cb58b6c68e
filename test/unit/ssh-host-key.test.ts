import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createHmac, randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  fingerprint,
  hostMatches,
  keyType,
  knownHostKeys,
  knownHostsName,
  parsePublicKeyLine,
} from '../../src/ssh/host-key.js';
import { shq } from '../../src/ssh/host.js';

// A real ed25519 public key line (from ssh-keygen), and its fingerprint as `ssh-keygen -lf` prints it.
const KEY = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGVvG+2uUbMpBiWbuEZKQQ4AeYRo6z1Fq//zvZWz/s3J';
const OTHER = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBd9hBq0+UkYlvmN6zM5z4BuZ2xkLzB1fXY3pIxSxHqn';

describe('host keys are compared and shown the way OpenSSH does', () => {
  it('reads a public key line and names its type from the blob', () => {
    const k = parsePublicKeyLine(`${KEY} comment here`)!;
    expect(k.type).toBe('ssh-ed25519');
    expect(keyType(k.blob)).toBe('ssh-ed25519');
    expect(fingerprint(k.blob)).toMatch(/^SHA256:[A-Za-z0-9+/]{43}$/);
    expect(parsePublicKeyLine('ssh-rsa AAAAC3NzaC1lZDI1NTE5AAAAIGVvG')).toBeUndefined();
    expect(parsePublicKeyLine('not a key')).toBeUndefined();
  });

  it('finds keys in known_hosts by [host]:port, plain or hashed, and keeps @revoked apart', () => {
    const dir = mkdtempSync(join(tmpdir(), 'vaultops-kh-'));
    const file = join(dir, 'known_hosts');
    const salt = randomBytes(20);
    const hashed = `|1|${salt.toString('base64')}|${createHmac('sha1', salt).update(knownHostsName('10.0.0.5', 22)).digest('base64')}`;
    writeFileSync(
      file,
      [
        '# comment',
        `[10.0.0.4]:2222,other ${KEY}`,
        `10.0.0.4 ${OTHER}`,
        `${hashed} ${OTHER}`,
        `@revoked [10.0.0.4]:2222 ${OTHER}`,
      ].join('\n'),
    );
    const a = knownHostKeys(file, '10.0.0.4', 2222);
    expect(a.keys.map((b) => `ssh-ed25519 ${b.toString('base64')}`)).toEqual([KEY]);
    expect(a.revoked.length).toBe(1);
    expect(knownHostKeys(file, '10.0.0.5', 22).keys.length).toBe(1);
    expect(knownHostKeys(file, '10.0.0.6', 22).keys.length).toBe(0);
    expect(knownHostKeys(join(dir, 'missing'), 'x', 22).keys).toEqual([]);
    rmSync(dir, { recursive: true, force: true });
  });
});

describe('remote command words are quoted for a POSIX shell', () => {
  it('leaves plain paths alone and quotes the rest', () => {
    expect(shq('/opt/vault/bin/vault')).toBe('/opt/vault/bin/vault');
    expect(shq("it's; rm -rf /")).toBe(`'it'\\''s; rm -rf /'`);
    expect(shq('a b')).toBe("'a b'");
    // In command position NAME=value would be an assignment, not a word.
    expect(shq('PATH=/tmp/evil')).toBe("'PATH=/tmp/evil'");
  });

  it('a hostile value reaches the command as one literal word, and nothing in it runs', () => {
    const marker = `/tmp/vaultops-unit-shq-${process.pid}`;
    const hostile = [
      `$(touch ${marker})`,
      `\`touch ${marker}\``,
      `"; touch ${marker}; "`,
      `'; touch ${marker}; '`,
      `x\ntouch ${marker}`,
      `; touch ${marker}`,
      '',
      '-n',
      '*',
      '~root',
      'a\\b',
      '$HOME',
    ];
    for (const v of hostile) {
      const out = execFileSync('/bin/sh', ['-c', `printf '%s' ${shq(v)}`], { encoding: 'utf8' });
      expect(out).toBe(v);
    }
    expect(existsSync(marker)).toBe(false);
  });
});

describe('known_hosts host fields match as OpenSSH matches them', () => {
  it('wildcards, negation, [host]:port and case', () => {
    expect(hostMatches('*.example.com', 'db1.example.com')).toBe(true);
    expect(hostMatches('*.example.com', 'example.com')).toBe(false);
    expect(hostMatches('db?.example.com', 'db7.example.com')).toBe(true);
    expect(hostMatches('db?.example.com', 'db10.example.com')).toBe(false);
    expect(hostMatches('*.example.com,!bad.example.com', 'bad.example.com')).toBe(false);
    expect(hostMatches('*.example.com,!bad.example.com', 'good.example.com')).toBe(true);
    expect(hostMatches('!bad.example.com', 'good.example.com')).toBe(false); // negation alone matches nothing
    expect(hostMatches('[10.0.0.*]:2222', knownHostsName('10.0.0.9', 2222))).toBe(true);
    expect(hostMatches('[10.0.0.*]:2222', knownHostsName('10.0.0.9', 22))).toBe(false);
    expect(hostMatches('10.0.0.*', knownHostsName('10.0.0.9', 2222))).toBe(false);
    expect(hostMatches('DB1.Example.com', 'db1.example.com')).toBe(true);
    expect(hostMatches('a.b', 'aXb')).toBe(false); // "." is literal
  });

  it('reads several files; @revoked counts for any host; @cert-authority lines are counted, never trusted', () => {
    const dir = mkdtempSync(join(tmpdir(), 'vaultops-kh-'));
    const a = join(dir, 'a');
    const b = join(dir, 'b');
    writeFileSync(a, `*.lab,!n9.lab ${KEY}\n@cert-authority *.lab ${OTHER}\n`);
    writeFileSync(b, `@revoked other.host ${OTHER}\n`);
    const m = knownHostKeys([join(dir, 'missing'), a, b], 'n1.lab', 22);
    expect(m.keys.length).toBe(1);
    expect(m.revoked.map((k) => k.toString('base64'))).toEqual([OTHER.split(' ')[1]]);
    expect(m.certAuthorities).toBe(1);
    expect(knownHostKeys([a], 'n9.lab', 22).keys).toEqual([]);
    rmSync(dir, { recursive: true, force: true });
  });
});
