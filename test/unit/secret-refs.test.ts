import { chmodSync, mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it, afterAll } from 'vitest';
import { resolveSecret, resolveSecretList, resolveSecretString } from '../../src/secrets/refs.js';
import { redactor } from '../../src/core/redact.js';
import { InputError } from '../../src/core/errors.js';

const dir = mkdtempSync(join(tmpdir(), 'vaultops-unit-refs-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function secretFile(name: string, content: string, mode: number): string {
  const p = join(dir, name);
  writeFileSync(p, content);
  chmodSync(p, mode);
  return p;
}

async function failure(p: Promise<unknown>): Promise<InputError> {
  const e = await p.then(
    () => undefined,
    (x: unknown) => x,
  );
  expect(e).toBeInstanceOf(InputError);
  return e as InputError;
}

const setVars: string[] = [];
function setEnv(name: string, value: string): void {
  process.env[name] = value;
  setVars.push(name);
}
afterEach(() => {
  for (const n of setVars.splice(0)) delete process.env[n];
});

describe('file: references', () => {
  const init = JSON.stringify({
    unseal_keys_b64: ['a2V5LW9uZS1leGFtcGxl', 'a2V5LXR3by1leGFtcGxl'],
    root_token: 'hvs.file-root-token',
    nested: { deeper: 'nested-secret-1' },
  });

  it('reads a 0600 file, and registers the value with the redactor', async () => {
    const p = secretFile('token', 'hvs.plain-file-token\n', 0o600);
    expect(await resolveSecretString(`file:${p}`)).toBe('hvs.plain-file-token');
    expect(redactor.redact('x hvs.plain-file-token x')).not.toContain('hvs.plain-file-token');
  });

  it('accepts 0400 too', async () => {
    const p = secretFile('token-ro', 'hvs.read-only-token', 0o400);
    expect(await resolveSecretString(`file:${p}`)).toBe('hvs.read-only-token');
  });

  it.each([0o644, 0o640, 0o604, 0o660])(
    'refuses a file with mode %o and says how to fix it, without the value',
    async (mode) => {
      const p = secretFile(`open-${mode.toString(8)}`, 'hvs.world-readable-token', mode);
      const e = await failure(resolveSecret(`file:${p}`));
      expect(e.message).toContain('readable by others');
      expect(e.message).toContain(`0${mode.toString(8)}`);
      expect(e.hint).toBe(`chmod 600 ${p}`);
      expect(`${e.message} ${e.hint}`).not.toContain('hvs.world-readable-token');
    },
  );

  it('#field picks a string or a list out of a JSON file, dotted paths included', async () => {
    const p = secretFile('init.json', init, 0o600);
    expect(await resolveSecretString(`file:${p}#root_token`)).toBe('hvs.file-root-token');
    expect(await resolveSecretList(`file:${p}#unseal_keys_b64`)).toEqual([
      'a2V5LW9uZS1leGFtcGxl',
      'a2V5LXR3by1leGFtcGxl',
    ]);
    expect(await resolveSecretString(`file:${p}#nested.deeper`)).toBe('nested-secret-1');
    for (const v of ['hvs.file-root-token', 'a2V5LW9uZS1leGFtcGxl', 'a2V5LXR3by1leGFtcGxl'])
      expect(redactor.redact(v)).not.toContain(v);
  });

  it('a missing field or a non-JSON file is an error naming the field, not the content', async () => {
    const p = secretFile('init2.json', init, 0o600);
    const e = await failure(resolveSecret(`file:${p}#root_tokn`));
    expect(e.message).toContain('"root_tokn"');
    expect(e.message).not.toContain('hvs.file-root-token');
    const q = secretFile('plain', 'not-json-secret-value', 0o600);
    const e2 = await failure(resolveSecret(`file:${q}#x`));
    expect(e2.message).toContain('is not JSON');
    expect(e2.message).not.toContain('not-json-secret-value');
  });

  it('a list where one value is needed is refused', async () => {
    const p = secretFile('init3.json', init, 0o600);
    await failure(resolveSecretString(`file:${p}#unseal_keys_b64`));
  });

  it('a missing file says so', async () => {
    const e = await failure(resolveSecret(`file:${join(dir, 'nope')}`));
    expect(e.message).toContain('ENOENT');
  });
});

describe('env: references', () => {
  it('reads the variable; a JSON list becomes shares', async () => {
    setEnv('VAULTOPS_UNIT_TOKEN', 'hvs.env-token-value');
    setEnv('VAULTOPS_UNIT_KEYS', '["share-one-value","share-two-value"]');
    expect(await resolveSecretString('env:VAULTOPS_UNIT_TOKEN')).toBe('hvs.env-token-value');
    expect(await resolveSecretList('env:VAULTOPS_UNIT_KEYS')).toEqual(['share-one-value', 'share-two-value']);
  });

  it('a missing or empty variable is named in the error', async () => {
    const e = await failure(resolveSecret('env:VAULTOPS_UNIT_MISSING'));
    expect(e.message).toContain('VAULTOPS_UNIT_MISSING is not set');
    expect(e.hint).toContain('export VAULTOPS_UNIT_MISSING=');
    setEnv('VAULTOPS_UNIT_EMPTY', '');
    expect((await failure(resolveSecret('env:VAULTOPS_UNIT_EMPTY'))).message).toContain('VAULTOPS_UNIT_EMPTY');
  });
});

describe('cmd: references', () => {
  it("takes the command's stdout without the final newline", async () => {
    const f = secretFile('cmd-out', 'cmd-secret-value-1\n', 0o600);
    expect(await resolveSecretString(`cmd:cat ${f}`)).toBe('cmd-secret-value-1');
  });

  it('a failing command is reported with its exit code, never with what it printed', async () => {
    // The secret comes from a file so the reference text itself does not contain it.
    const f = secretFile('cmd-leak', 'leaked-if-echoed-9f8e7d', 0o600);
    const e = await failure(resolveSecret(`cmd:cat ${f}; cat ${f} >&2; exit 3`));
    expect(e.message).toContain('exit 3');
    expect(JSON.stringify({ m: e.message, h: e.hint, d: e.details, c: String(e.cause ?? '') })).not.toContain(
      'leaked-if-echoed-9f8e7d',
    );
  });

  it('the command gets a minimal environment: no VAULT_*/BAO_*/AWS_* and no variable an env: reference reads', async () => {
    setEnv('VAULT_TOKEN', 'hvs.unit-token-never-for-children');
    setEnv('BAO_TOKEN', 's.unit-bao-token-never-for-children');
    setEnv('AWS_SECRET_ACCESS_KEY', 'unit-aws-secret-never-for-children');
    setEnv('LC_UNSEAL_KEYS', 'unit-unseal-key-never-for-children');
    // An env: reference makes its variable secret, even under a name the allowlist would pass (LC_*).
    expect(await resolveSecretString('env:LC_UNSEAL_KEYS')).toBe('unit-unseal-key-never-for-children');
    const seen = await resolveSecretString('cmd:env; echo end-of-env');
    expect(seen).toContain('end-of-env');
    expect(seen).toMatch(/^PATH=/m);
    expect(seen).toMatch(/^HOME=/m);
    for (const v of [
      'hvs.unit-token-never-for-children',
      's.unit-bao-token-never-for-children',
      'unit-aws-secret-never-for-children',
      'unit-unseal-key-never-for-children',
    ]) {
      expect(seen).not.toContain(v);
    }
    expect(seen).not.toMatch(/^(VAULT_|BAO_|AWS_|VAULTOPS_)/m);
  });
});

describe('prompt: and unknown references', () => {
  it('prompt: asks the prompter; without one it says how to supply the secret', async () => {
    expect(await resolveSecretString('prompt:root token', { askSecret: async (label) => `typed-for-${label}` })).toBe(
      'typed-for-root token',
    );
    const e = await failure(resolveSecret('prompt:root token'));
    expect(e.hint).toMatch(/env: or file:/);
  });

  it('an unknown kind is refused', async () => {
    const e = await failure(resolveSecret('vault:secret/data/x'));
    expect(e.message).toContain('Unknown secret reference "vault:"');
  });
});
