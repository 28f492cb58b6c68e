import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { isMap, isSeq, parseDocument } from 'yaml';
import type { ClusterSpec } from '../inventory/schema.js';
// A cluster whose inventory entry is a lab (`lab:`) also has its lab.json brought up to date; only
// that case reaches into lab/, which the layer rule otherwise keeps to drill and cli.
// eslint-disable-next-line boundaries/dependencies -- see above
import { recordLabUpgrade } from '../lab/add-nodes.js';
import { writeFileAtomicSync } from '../core/atomic-write.js';

/**
 * After an upgrade the inventory must describe the cluster as it is now. The file is edited as a
 * YAML document (comments and order kept): `version:` becomes the target; after an immutable upgrade
 * `nodes:` becomes the former `new_nodes:` (which is removed) and groups lose the old node names.
 * For a lab (cluster spec `lab:`) lab.json is updated too, and the lab's own inventory rewritten.
 * Returns the file(s) written.
 */
export async function recordUpgrade(o: {
  inventoryFile: string;
  clusterName: string;
  spec: ClusterSpec;
  target: string;
  replacedBy?: readonly string[] | undefined;
  writeTo?: string | undefined;
}): Promise<string[]> {
  const written: string[] = [];
  const lab = o.spec.lab ? await recordLabUpgrade(o.spec.lab.dir, o.target, o.replacedBy) : undefined;
  if (lab?.inventory) written.push(lab.inventory);
  const dest = resolve(o.writeTo ?? o.inventoryFile);
  // The lab's inventory was just written from lab.json; edit only another file.
  if (lab?.inventory && resolve(lab.inventory) === dest) return written;
  const doc = parseDocument(readFileSync(o.inventoryFile, 'utf8'));
  const base = ['clusters', o.clusterName];
  doc.setIn([...base, 'version'], o.target);
  if (o.replacedBy) {
    const fresh = doc.getIn([...base, 'new_nodes'], true);
    const old = o.spec.nodes.map((n) => n.name);
    if (isSeq(fresh)) {
      doc.setIn([...base, 'nodes'], fresh);
      doc.deleteIn([...base, 'new_nodes']);
    }
    const groups = doc.getIn([...base, 'groups'], true);
    if (isMap(groups)) {
      for (const item of groups.items) {
        if (isSeq(item.value))
          item.value.items = item.value.items.filter(
            (x) => !old.includes(String((x as { value?: unknown }).value ?? x)),
          );
      }
    }
  }
  writeFileAtomicSync(dest, doc.toString());
  written.push(dest);
  return written;
}
