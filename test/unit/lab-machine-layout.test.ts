import { describe, expect, it } from 'vitest';
import { parseInventory } from '../../src/inventory/load.js';
import { renderInventory } from '../../src/lab/inventory-writer.js';
import { machineNode } from '../../src/lab/machine-lab.js';
import { bridgeName, machineLink } from '../../src/lab/machine-net.js';
import { renderUnit, serverLayout } from '../../src/lab/machine-root.js';
import type { LabRecord } from '../../src/lab/lab.js';

describe('lab machines: unit, names and inventory', () => {
  it.each(['vault', 'openbao'] as const)(
    "the %s unit has the vendor unit's hardening and stops with SIGINT",
    (flavor) => {
      const unit = renderUnit(flavor);
      const l = serverLayout(flavor);
      for (const line of [
        `User=${l.user}`,
        `Group=${l.user}`,
        'ProtectSystem=full',
        'PrivateTmp=yes',
        'NoNewPrivileges=yes',
        'CapabilityBoundingSet=CAP_SYSLOG CAP_IPC_LOCK',
        'LimitCORE=0',
        'LimitMEMLOCK=infinity',
        'ExecReload=/bin/kill --signal HUP $MAINPID',
        'KillMode=process',
        'KillSignal=SIGINT',
        'Restart=on-failure',
        `ExecStart=${l.binary} server -config=${l.config}`,
      ]) {
        expect(unit.split('\n')).toContain(line);
      }
    },
  );

  it("interface names fit the kernel's 15 characters for the largest subnet and node numbers", () => {
    const link = machineLink('a-thirty-one-character-lab-name', 250, 'n9', 9);
    expect(link.veth.length + 1).toBeLessThanOrEqual(15); // + the "p" of the peer
    expect(bridgeName(250).length).toBeLessThanOrEqual(15);
    expect(link.ip).toBe('10.213.250.19');
  });

  it('the written inventory loads and describes ops@host:22 with sudo, a pinned key and the systemd unit', () => {
    const base = { dir: '/state/labs/m', flavor: 'vault' as const, tls: true };
    const lab: LabRecord = {
      ...base,
      name: 'm',
      version: '1.21.0',
      binary: '/cache/vault',
      slot: 0,
      initFile: '/state/labs/m/init.json',
      caCert: '/state/labs/m/tls/ca.pem',
      createdAt: '',
      nodes: [1, 2, 3].map((i) => machineNode(base, 7, i)),
      machines: {
        subnet: 7,
        keyFile: '/state/labs/m/ssh/id_ed25519',
        nodes: {
          n1: { hostKey: 'ssh-ed25519 AAAA1' },
          n2: { hostKey: 'ssh-ed25519 AAAA2' },
          n3: { hostKey: 'ssh-ed25519 AAAA3' },
        },
      },
    };
    const inv = parseInventory('m.yml', renderInventory(lab));
    const n2 = inv.data.clusters['m']!.nodes[1]!;
    expect(n2.api_addr).toBe('https://10.213.7.12:8200');
    expect(n2.ssh).toEqual({
      host: '10.213.7.12',
      port: 22,
      user: 'ops',
      sudo: true,
      key_file: '/state/labs/m/ssh/id_ed25519',
      host_key: 'ssh-ed25519 AAAA2',
    });
    expect(n2.service).toEqual({
      manager: 'systemd',
      name: 'vault',
      binary: '/usr/local/bin/vault',
      config: '/etc/vault.d/vault.hcl',
      data_dir: '/opt/vault/data',
    });
  });
});
