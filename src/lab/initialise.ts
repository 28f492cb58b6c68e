import { chmodSync, renameSync, writeFileSync } from 'node:fs';
import { VaultopsError } from '../core/errors.js';
import type { VaultClient } from '../vault/client.js';
import type { InitResponse } from '../vault/api-types.js';
import { clusterFor, readInit, type LabRecord } from './lab-record.js';
import { currentPid, nodeDied, nodeLogTail, sleep } from './server-processes.js';
import { isAlive } from './file-lock.js';
import { unsealAll } from './unseal.js';
import { enableLockMount } from './lock-mount.js';

/** A new lab's first minutes: init 5/3, the init file, unseal, autopilot tuning, then healthy. */
/**
 * init.json has the shape of `vault operator init -format=json` (unseal_keys_b64, unseal_keys_hex,
 * unseal_shares, unseal_threshold, root_token...), the values exactly as the server returned them.
 */
function initFileContent(res: InitResponse, shares: number, threshold: number, recovery: boolean): string {
  return `${JSON.stringify(
    {
      unseal_keys_b64: res.keys_base64 ?? [],
      unseal_keys_hex: res.keys ?? [],
      unseal_shares: recovery ? 0 : shares,
      unseal_threshold: recovery ? 0 : threshold,
      recovery_keys_b64: res.recovery_keys_base64 ?? [],
      recovery_keys_hex: res.recovery_keys ?? [],
      recovery_keys_shares: recovery ? shares : 0,
      recovery_keys_threshold: recovery ? threshold : 0,
      root_token: res.root_token,
    },
    null,
    2,
  )}\n`;
}

export async function initialise(lab: LabRecord, progress: (m: string) => void): Promise<void> {
  const cluster = clusterFor(lab);
  try {
    const first = lab.nodes[0]!;
    // An auto-unseal (transit) cluster refuses secret_shares: it gets recovery keys and unseals itself.
    const recovery = lab.seal !== undefined;
    progress(
      `Initialising ${first.name} (5 ${recovery ? `recovery key shares, threshold 3; auto-unseal by lab ${lab.seal!.provider}` : 'key shares, threshold 3'})...`,
    );
    const { parsed } = await cluster
      .client(first.name)
      .init(recovery ? { recovery_shares: 5, recovery_threshold: 3 } : { secret_shares: 5, secret_threshold: 3 });
    // 0600 from the first byte: written to a temp file created with that mode, then renamed.
    const tmp = `${lab.initFile}.tmp`;
    writeFileSync(tmp, initFileContent(parsed, 5, 3, recovery), { mode: 0o600 });
    chmodSync(tmp, 0o600);
    renameSync(tmp, lab.initFile);
    const init = readInit(lab);
    await unsealAll(lab, init, progress, cluster);
    // Unsealed is not yet active: a node that just unsealed answers 307 until it has taken leadership.
    const deadline = Date.now() + 30_000;
    while (
      (
        await cluster
          .client(first.name)
          .health()
          .catch(() => undefined)
      )?.state !== 'active'
    ) {
      if (Date.now() > deadline) throw nodeDied(lab, first, 'did not become the active node within 30 s of unsealing');
      await sleep(200);
    }
    await tuneAutopilot(cluster.client(first.name).withToken(init.root_token));
    await enableLockMount(cluster.client(first.name).withToken(init.root_token));
    await waitHealthy(lab, init.root_token, progress);
  } finally {
    cluster.close();
  }
}

/** A shorter stabilisation time than the 10 s default so lab nodes become voters sooner. */
async function tuneAutopilot(client: VaultClient): Promise<void> {
  await client.setAutopilotConfiguration({
    server_stabilization_time: '4s',
    cleanup_dead_servers: false,
    last_contact_threshold: '10s',
  });
}

export async function waitHealthy(
  lab: LabRecord,
  token: string,
  progress: (m: string) => void,
  timeoutMs = 90_000,
): Promise<void> {
  progress('Waiting for autopilot: all nodes healthy voters, failure tolerance 1...');
  const cluster = clusterFor(lab, token);
  const deadline = Date.now() + timeoutMs;
  let last = '';
  try {
    for (;;) {
      const st = await cluster.status();
      // A healthy lab: every node serving and a voter, autopilot healthy, and the failure tolerance
      // its size allows (1 for 3 nodes, 0 for a single node, which `status` calls degraded).
      const serving = st.nodes.every((n) => n.reachable && (n.state === 'active' || n.state === 'standby') && n.voter);
      if (
        serving &&
        st.leader &&
        st.autopilot?.healthy &&
        st.autopilot.failureTolerance >= Math.floor((lab.nodes.length - 1) / 2)
      )
        return;
      last = st.problems.join('; ') || st.autopilotNote || 'autopilot not healthy yet';
      for (const n of lab.nodes) {
        const pid = currentPid(n);
        if (pid !== undefined && !isAlive(pid)) throw nodeDied(lab, n, 'stopped while the cluster formed');
      }
      if (Date.now() > deadline)
        throw new VaultopsError(
          `Lab ${lab.name} did not become healthy within ${Math.round(timeoutMs / 1000)} s: ${last}.`,
          { details: lab.nodes.flatMap((n) => [`${n.log}:`, ...nodeLogTail(n, 4).map((l) => `  ${l}`)]) },
        );
      await sleep(500);
    }
  } finally {
    cluster.close();
  }
}
