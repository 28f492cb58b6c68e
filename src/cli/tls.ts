import { resolve } from 'node:path';
import { openNodeHost } from '../ssh/open-host.js';
import { rotateTlsCertificates } from '../tls/rotate.js';
import { out, progressPrinter } from '../ui/output.js';
import { connectCluster } from './cluster-from-inventory.js';
import { throughDoor } from './through-door.js';

interface TlsRotateCliOptions {
  inventory: string;
  cluster?: string;
  certDir: string;
  nonInteractive?: boolean;
  trustOnFirstUse?: boolean;
  breakLock?: boolean;
  json?: boolean;
}

/** `vaultops tls rotate`: through the door (locks, interrupts) like every command that changes a cluster. */
export async function tlsRotateCommand(o: TlsRotateCliOptions): Promise<void> {
  const conn = await connectCluster(o.inventory, o.cluster);
  const progress = progressPrinter({ quiet: o.json === true });
  try {
    const rotated = await throughDoor(
      conn,
      {
        operation: 'tls rotate',
        breakLock: o.breakLock,
        onInterrupt: 'stopping after the node in progress (a node half done gets its old certificate back)',
      },
      (door) =>
        rotateTlsCertificates({
          clusterName: conn.name,
          spec: conn.spec,
          cluster: conn.client,
          certDir: resolve(o.certDir),
          openHost: (n) => openNodeHost(n, { trustOnFirstUse: o.trustOnFirstUse }),
          progress,
          signal: door.signal,
        }),
    );
    if (o.json) out.json({ cluster: conn.name, nodes: rotated });
    else
      for (const r of rotated)
        out.line(
          `${r.node}: ${r.status === 'rotated' ? 'new certificate' : 'already had it'} sha256 ${r.fingerprint_after} (until ${r.not_after})`,
        );
  } finally {
    conn.client.close();
  }
}
