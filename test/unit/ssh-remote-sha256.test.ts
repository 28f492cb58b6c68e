import { createHash, randomBytes } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { REMOTE_SHA256 } from '../../src/ssh/host.js';

/**
 * The shell function every remote hash goes through (upload, the staged-file checks), run by the
 * same /bin/sh a host would use. PATH is narrowed to a directory of links so that openssl can be
 * made missing or wrong: a host without it, or with one that prints something else, must still
 * get the right sum (from sha256sum), never a wrong one.
 */
const dir = mkdtempSync(join(tmpdir(), 'vaultops-remote-sha256-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const data = randomBytes(3 * 1024 * 1024 + 17);
const file = join(dir, 'data');
writeFileSync(file, data);
const want = createHash('sha256').update(data).digest('hex');

function toolbox(name: string, openssl: 'real' | 'missing' | 'wrong'): string {
  const bin = join(dir, name);
  mkdirSync(bin);
  for (const tool of ['sha256sum', 'cut', 'printf', 'cat']) {
    const real = execFileSync('sh', ['-c', `command -v ${tool}`], { encoding: 'utf8' }).trim();
    if (real.startsWith('/')) symlinkSync(real, join(bin, tool));
  }
  if (openssl === 'real')
    symlinkSync(execFileSync('sh', ['-c', 'command -v openssl'], { encoding: 'utf8' }).trim(), join(bin, 'openssl'));
  if (openssl === 'wrong') {
    writeFileSync(join(bin, 'openssl'), '#!/bin/sh\ncat >/dev/null\necho "SHA2-256(stdin)= 0000"\n');
    chmodSync(join(bin, 'openssl'), 0o755);
  }
  return bin;
}

function hashWith(bin: string): string {
  return execFileSync('/bin/sh', ['-c', `${REMOTE_SHA256}\nvaultops_sha256 < "$1"`, 'sh', file], {
    encoding: 'utf8',
    env: { PATH: bin },
  });
}

describe('REMOTE_SHA256 (the hash run on hosts)', () => {
  it('gives the file sha256 through openssl when the host has it', () => {
    expect(hashWith(toolbox('with-openssl', 'real'))).toBe(`${want}\n`);
  });

  it('falls back to sha256sum when the host has no openssl', () => {
    expect(hashWith(toolbox('no-openssl', 'missing'))).toBe(`${want}\n`);
  });

  it('falls back to sha256sum when openssl does not answer in the expected form', () => {
    expect(hashWith(toolbox('odd-openssl', 'wrong'))).toBe(`${want}\n`);
  });
});
