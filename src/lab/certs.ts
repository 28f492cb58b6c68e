import { mkdirSync, writeFileSync, existsSync, chmodSync } from 'node:fs';
import { join } from 'node:path';
import { PrerequisiteError, VaultopsError } from '../core/errors.js';
import { lastLines, run } from './exec.js';

export interface NodeCert {
  cert: string;
  key: string;
}

/**
 * A lab CA made on the fly with openssl, and one server certificate per node whose SANs are the
 * node's loopback address, so clients verify the chain and the name exactly as in production.
 */
export async function ensureLabCa(dir: string, labName: string): Promise<{ caCert: string; caKey: string }> {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const caKey = join(dir, 'ca.key');
  const caCert = join(dir, 'ca.pem');
  if (existsSync(caCert) && existsSync(caKey)) return { caCert, caKey };
  await openssl(['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', caKey]);
  chmodSync(caKey, 0o600);
  await openssl([
    'req',
    '-x509',
    '-new',
    '-key',
    caKey,
    '-sha256',
    '-days',
    '825',
    '-subj',
    `/O=vaultops lab/CN=vaultops lab CA ${labName}`,
    '-addext',
    'basicConstraints=critical,CA:TRUE',
    '-addext',
    'keyUsage=critical,keyCertSign,cRLSign',
    '-out',
    caCert,
  ]);
  return { caCert, caKey };
}

export async function issueNodeCert(
  dir: string,
  ca: { caCert: string; caKey: string },
  node: { name: string; ip: string },
  /** More names the certificate covers, e.g. the address of a load balancer in front of the node. */
  extraSans: string[] = [],
): Promise<NodeCert> {
  const key = join(dir, `${node.name}.key`);
  const cert = join(dir, `${node.name}.pem`);
  const csr = join(dir, `${node.name}.csr`);
  const ext = join(dir, `${node.name}.ext`);
  await openssl(['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', key]);
  chmodSync(key, 0o600);
  await openssl(['req', '-new', '-key', key, '-subj', `/O=vaultops lab/CN=${node.name}`, '-out', csr]);
  writeFileSync(
    ext,
    [
      'basicConstraints=CA:FALSE',
      'keyUsage=critical,digitalSignature,keyEncipherment',
      'extendedKeyUsage=serverAuth,clientAuth',
      `subjectAltName=${[`IP:${node.ip}`, 'DNS:localhost', `DNS:${node.name}`, ...extraSans].join(',')}`,
      '',
    ].join('\n'),
  );
  await openssl([
    'x509',
    '-req',
    '-in',
    csr,
    '-CA',
    ca.caCert,
    '-CAkey',
    ca.caKey,
    '-CAcreateserial',
    '-days',
    '825',
    '-sha256',
    '-extfile',
    ext,
    '-out',
    cert,
  ]);
  return { cert, key };
}

async function openssl(args: string[]): Promise<void> {
  let r;
  try {
    r = await run('openssl', args, { timeoutMs: 60_000 });
  } catch {
    throw new PrerequisiteError("openssl is needed to make the lab's TLS certificates and does not run here.", {
      hint: 'Install it (Debian: apt-get install openssl), or start the lab with --no-tls.',
    });
  }
  if (r.code !== 0) throw new VaultopsError(`openssl ${args[0]} failed.`, { details: lastLines(r.stderr, 5) });
}
