import { rotateEncryptionKey } from '../ceremony/rotate.js';
import { out } from '../ui/output.js';
import { connectCluster } from './cluster-from-inventory.js';
import { throughDoor } from './through-door.js';

interface RotateOptions {
  inventory: string;
  cluster?: string;
  json?: boolean;
  breakLock?: boolean;
}

/** `vaultops rotate`: a new barrier encryption key (sys/rotate), key term before and after. */
export async function rotateCommand(o: RotateOptions): Promise<void> {
  const conn = await connectCluster(o.inventory, o.cluster);
  const { client } = conn;
  try {
    const r = await throughDoor(
      conn,
      { operation: 'rotate', breakLock: o.breakLock, onInterrupt: 'stopping after the rotation in progress' },
      () => rotateEncryptionKey(client),
    );
    if (o.json)
      out.json({ node: r.node, term_before: r.before.term, term_after: r.after.term, installed: r.after.install_time });
    else
      out.line(
        `Encryption key rotated on ${r.node}: term ${r.before.term} -> ${r.after.term} (installed ${r.after.install_time}). Old data stays readable; new writes use term ${r.after.term}.`,
      );
  } finally {
    await client.release();
  }
}
