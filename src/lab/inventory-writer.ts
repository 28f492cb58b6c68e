import { FLAVORS } from './binaries.js';
import type { LabRecord } from './lab-record.js';
import { SSH_PORT } from './ssh-hosts.js';
import { serverLayout } from './machine-root.js';

/** The inventory of a lab, as a person would write it; secrets are references to init.json. */
export function renderInventory(lab: LabRecord): string {
  const q = (s: string) => JSON.stringify(s);
  const lines = [
    '# Written by `vaultops lab up`: the local lab cluster. Regenerated on every `lab up`.',
    `# ${FLAVORS[lab.flavor].product} ${lab.version}, ${lab.nodes.length} nodes, ${lab.tls ? 'TLS from the lab CA' : 'no TLS'}.`,
    "# Secrets are not in this file: they are references to the lab's init.json (mode 0600).",
    'clusters:',
    `  ${lab.name}:`,
    `    flavor: ${lab.flavor}`,
    `    version: ${q(lab.version)}`,
  ];
  if (lab.caCert) lines.push('    tls:', `      ca_cert: ${q(lab.caCert)}`);
  lines.push(
    `    token: ${q(lab.tokenFile ? `file:${lab.tokenFile}#token` : `file:${lab.initFile}#root_token`)}`,
    // A transit-sealed lab unseals itself: its key set is the recovery keys (rekey --recovery, generate-root).
    ...(lab.seal
      ? [
          `    # Auto-unseal by the transit engine of lab ${lab.seal.provider}: these are recovery keys, not unseal keys.`,
        ]
      : []),
    '    unseal:',
    `      key_set: ${q(`${lab.name}-${lab.seal ? 'recovery' : 'init'}`)}`,
    `      keys: ${q(`file:${lab.initFile}#${lab.seal ? 'recovery_keys_b64' : 'unseal_keys_b64'}`)}`,
    '      threshold: 3',
    ...(lab.loadBalancer
      ? [
          `    # HAProxy on this machine (\`lab up --lb haproxy\`), configured by \`vaultops lb config\`: ${lab.loadBalancer.config}`,
          '    load_balancer:',
          `      address: ${q(lab.loadBalancer.address)}`,
          `      mode: ${lab.loadBalancer.mode}`,
          '      interval: 500ms',
          '      fall: 2',
          '      rise: 2',
        ]
      : []),
    '    lab:',
    `      name: ${q(lab.name)}`,
    `      dir: ${q(lab.dir)}`,
    '    nodes:',
  );
  const renderNode = (n: LabRecord['nodes'][number], i: number) => {
    if (lab.machines) {
      renderMachine(n, i);
      return;
    }
    lines.push(
      `      - name: ${n.name}`,
      `        api_addr: ${q(n.apiAddr)}`,
      `        cluster_addr: ${q(n.clusterAddr)}`,
      `        zone: ${q(`lab-${String.fromCharCode(97 + (i % 3))}`)}`,
      '        service:',
      '          manager: lab',
      `          binary: ${q(n.binary ?? lab.binary)}`,
      `          config: ${q(n.config)}`,
      `          data_dir: ${q(`${n.dir}/data`)}`,
      `          log_file: ${q(n.log)}`,
    );
    const ssh = lab.ssh?.nodes[n.name];
    if (lab.ssh && ssh) {
      // The lab's sshd for this node (src/lab/ssh-hosts.ts); its host key is pinned, never trusted on first use.
      lines.push(
        '        ssh:',
        `          host: ${q(n.ip)}`,
        `          port: ${SSH_PORT}`,
        '          user: root',
        `          key_file: ${q(lab.ssh.keyFile)}`,
        `          host_key: ${q(ssh.hostKey)}`,
      );
    }
  };
  // `lab up --hosts`: a systemd machine reached as a production host is (src/lab/machine-lab.ts).
  const renderMachine = (n: LabRecord['nodes'][number], i: number) => {
    const layout = serverLayout(lab.flavor);
    lines.push(
      `      - name: ${n.name}`,
      `        api_addr: ${q(n.apiAddr)}`,
      `        cluster_addr: ${q(n.clusterAddr)}`,
      `        zone: ${q(`lab-${String.fromCharCode(97 + (i % 3))}`)}`,
      '        service:',
      '          manager: systemd',
      `          name: ${layout.unit}`,
      `          binary: ${q(layout.binary)}`,
      `          config: ${q(layout.config)}`,
      `          data_dir: ${q(layout.dataDir)}`,
      '        ssh:',
      `          host: ${q(n.ip)}`,
      '          port: 22',
      '          user: ops',
      '          sudo: true',
      `          key_file: ${q(lab.machines!.keyFile)}`,
      `          host_key: ${q(lab.machines!.nodes[n.name]?.hostKey ?? '')}`,
    );
  };
  lab.nodes.forEach(renderNode);
  if (lab.newNodes?.length) {
    // `vaultops lab add-nodes`: hosts for an immutable upgrade (`vaultops upgrade --strategy immutable`).
    lines.push(
      `    # Started by \`vaultops lab add-nodes\` on ${FLAVORS[lab.flavor].product} ${lab.newVersion ?? lab.version}: they replace the nodes above in an immutable upgrade.`,
      '    new_nodes:',
    );
    lab.newNodes.forEach((n, i) => renderNode(n, lab.nodes.length + i));
  }
  return `${lines.join('\n')}\n`;
}
