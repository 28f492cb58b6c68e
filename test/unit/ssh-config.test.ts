import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { homedir, tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { sshConfigFor } from '../../src/ssh/ssh-config.js';
import { parseJump } from '../../src/ssh/connection.js';
import { InputError } from '../../src/core/errors.js';

describe('~/.ssh/config is read as OpenSSH reads it', () => {
  const dir = mkdtempSync(join(tmpdir(), 'vaultops-sshcfg-'));
  const file = join(dir, 'config');
  writeFileSync(
    file,
    [
      'Host vault-? !vault-9',
      '  HostName %h.prod.example',
      '  Port 2200',
      '  IdentityFile ~/.ssh/vault_%r',
      '  ProxyJump ops@bastion:2222,inner',
      'Host vault-9',
      '  HostName 10.0.0.9',
      '  ProxyJump none',
      'Host *',
      '  User ops',
      '  Port 22',
      '  UserKnownHostsFile ~/kh1 %d/kh2',
      '',
    ].join('\n'),
  );

  it('the first value of each keyword wins; Host patterns with ? and ! apply; tokens expand', () => {
    const a = sshConfigFor('vault-1', file);
    expect(a).toMatchObject({
      hostName: 'vault-1.prod.example',
      port: 2200,
      user: 'ops',
      proxyJump: 'ops@bastion:2222,inner',
      identityFiles: [join(homedir(), '.ssh', 'vault_ops')],
      userKnownHostsFiles: [join(homedir(), 'kh1'), join(homedir(), 'kh2')],
    });
    const nine = sshConfigFor('vault-9', file);
    expect(nine).toMatchObject({ hostName: '10.0.0.9', port: 22, proxyJump: 'none', identityFiles: [] });
    expect(sshConfigFor('other', file)).toMatchObject({ hostName: undefined, user: 'ops', port: 22 });
  });

  it('a missing file is an empty config; a bad port is an error naming the file', () => {
    expect(sshConfigFor('x', join(dir, 'missing'))).toEqual({ identityFiles: [] });
    writeFileSync(join(dir, 'bad'), 'Host *\n  Port many\n');
    expect(() => sshConfigFor('x', join(dir, 'bad'))).toThrow(InputError);
    expect(() => sshConfigFor('x', join(dir, 'bad'))).toThrow(join(dir, 'bad'));
  });

  it('a ProxyJump chain connects to its first hop first', () => {
    const j = parseJump('ops@bastion:2222,inner', { host: 'target', user: 'root', keyFile: '/k' });
    expect(j).toMatchObject({ host: 'inner', user: undefined, fallbackUser: 'root', keyFile: '/k' });
    expect(j.jump).toMatchObject({ host: 'bastion', port: 2222, user: 'ops' });
    expect(() => parseJump('a@b@c', { host: 't' })).toThrow(InputError);
  });

  afterAll(() => rmSync(dir, { recursive: true, force: true }));
});
