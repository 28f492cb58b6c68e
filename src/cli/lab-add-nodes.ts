import { InputError } from '../core/errors.js';
import { checkVersion, ensureBinary, FLAVORS } from '../lab/binaries.js';
import { labAddNodes } from '../lab/add-nodes.js';
import { readLab } from '../lab/lab.js';
import { out, progressPrinter } from '../ui/output.js';

/** `vaultops lab add-nodes --name LAB --count 3 --version NEW [--hosts]`: new hosts for an immutable upgrade. */
export async function labAddNodesCommand(o: {
  name: string;
  count?: string;
  version?: string;
  vaultBinary?: string;
  hosts?: boolean;
  json?: boolean;
}): Promise<void> {
  const progress = progressPrinter({ quiet: o.json === true });
  const lab = readLab(o.name);
  if (!lab)
    throw new InputError(`No lab named ${o.name}.`, { hint: `Start one first: \`vaultops lab up --name ${o.name}\`.` });
  const version = checkVersion(lab.flavor, o.version);
  const count = Number(o.count ?? '3');
  const bin = await ensureBinary({ flavor: lab.flavor, version, explicit: o.vaultBinary, onProgress: progress });
  const { lab: after, added } = await labAddNodes({
    name: o.name,
    count,
    version,
    binary: bin.path,
    hosts: o.hosts === true,
    onProgress: progress,
  });
  if (o.json) {
    out.json({
      name: after.name,
      version,
      inventory: after.inventory,
      new_nodes: added.map((n) => ({ name: n.name, api_addr: n.apiAddr, pid: n.pid })),
    });
    return;
  }
  out.line(
    `Lab ${after.name}: ${after.machines ? 'machines ' : ''}${added.map((n) => `${n.name} (${n.ip})`).join(', ')} started on ${FLAVORS[after.flavor].product} ${version}, sealed, not joined yet.`,
  );
  if (after.inventory) {
    out.line(`Inventory ${after.inventory} lists them under new_nodes.`);
    out.line(
      `Next: vaultops upgrade -i ${after.inventory} --strategy immutable --binary ${bin.path} --sha256 <sha256 of that file>`,
    );
  }
}
