import { resolve } from 'node:path';
import { z } from 'zod';
import { rotateTlsCertificates } from '../../tls/rotate.js';
import { defineAction } from '../types.js';

export default defineAction({
  name: 'tls.rotate',
  description:
    "Rotate the nodes' TLS certificates without a restart: check every new certificate (CA, names, key) first, then node by node (standbys first) stage, swap with a backup, SIGHUP, and verify the node serves it.",
  schema: z.strictObject({
    cert_dir: z.string().describe('Folder with <node>.pem (or .crt) and <node>.key for every node.'),
  }),
  changes: true,
  gates: [
    'every new certificate chains to tls.ca_cert, is valid now, covers the node names, matches its key',
    'every host reachable over SSH',
  ],
  describe: (a) => `rotate the TLS certificates from ${a.cert_dir}, one node at a time, active node last`,
  async run(ctx, args) {
    const rotated = await rotateTlsCertificates({
      clusterName: ctx.clusterName,
      spec: ctx.spec,
      cluster: ctx.cluster,
      certDir: resolve(args.cert_dir),
      openHost: (n) => ctx.openHost(n),
      progress: ctx.log,
      signal: ctx.signal,
    });
    const changed = rotated.filter((r) => r.status === 'rotated');
    return {
      status: changed.length ? 'changed' : 'ok',
      message: changed.length
        ? `new certificates on ${changed.map((r) => r.node).join(', ')}`
        : 'every node already serves its new certificate',
      data: { nodes: rotated },
    };
  },
});
