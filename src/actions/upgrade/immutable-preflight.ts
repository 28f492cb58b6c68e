import { z } from 'zod';
import { defineAction } from '../types.js';
import { closeMembers } from '../../upgrade/members.js';
import { preflightImmutable } from '../../upgrade/immutable.js';
import { binaryArgs, immutableStateFile, noPlaybookTofu, binarySourceOf, shownBinary } from './args-and-state-files.js';

export default defineAction({
  name: 'upgrade.immutable_preflight',
  description:
    'Check everything before an immutable upgrade and stage the new binary on every new host (verified there); changes no running node.',
  schema: z.strictObject({ ...binaryArgs }),
  changes: true,
  gates: [
    'binary sha256 matches',
    "new_nodes listed, reachable over SSH (host keys verified), empty or already this cluster's",
    'all old nodes reachable, unsealed, voters',
    'autopilot healthy, failure tolerance >= 1',
    'target version newer than every old node',
  ],
  describe: (args) =>
    `check the cluster and the new nodes, stage ${shownBinary(args)} on every new host (sha256 verified there), read its version`,
  async run(ctx, args) {
    const p = await preflightImmutable({
      cluster: ctx.cluster,
      clusterName: ctx.clusterName,
      spec: ctx.spec,
      binary: binarySourceOf(args),
      stateFile: immutableStateFile(ctx),
      signal: ctx.signal,
      openHost: (n) => ctx.openHost(n, { trustOnFirstUse: noPlaybookTofu(args) }),
      onEvent: (e) => ctx.log('node' in e ? `${e.node}: ${'message' in e ? e.message : e.reason}` : e.message),
    });
    closeMembers([...p.oldMembers, ...p.newMembers]);
    return {
      status: 'changed',
      message: `staged ${p.target} on ${p.newMembers.map((m) => m.spec.name).join(', ')}`,
      data: { target: p.target, from_versions: p.fromVersions, new_nodes: p.newMembers.map((m) => m.spec.name) },
    };
  },
});
