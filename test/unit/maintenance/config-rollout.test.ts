import { describe, expect, it } from 'vitest';
import { reloadSuffices, renderConfig } from '../../../src/maintenance/config-rollout.js';
import { outputTail } from '../../../src/maintenance/node-maintenance.js';
import { redactor } from '../../../src/core/redact.js';

const base = [
  'ui = false',
  'log_level = "info"',
  'storage "raft" {',
  '  path = "/opt/openbao/data"',
  '}',
  'listener "tcp" {',
  '  address = "10.0.0.1:8200"',
  '  tls_cert_file = "/opt/openbao/tls/tls.crt"',
  '}',
].join('\n');

describe('a configuration change is applied with systemctl reload only when the server re-reads every changed line on SIGHUP', () => {
  it('a log level or a certificate path change reloads', () => {
    expect(reloadSuffices(base, base.replace('"info"', '"debug"'))).toBe(true);
    expect(reloadSuffices(base, base.replace('tls.crt"', 'tls-2027.crt"'))).toBe(true);
  });
  it('comments and blank lines alone change nothing that needs a restart', () => {
    expect(reloadSuffices(base, `# new comment\n\n${base}`)).toBe(true);
  });
  it('any other change, an added or a removed line restarts', () => {
    expect(reloadSuffices(base, base.replace('10.0.0.1', '10.0.0.2'))).toBe(false);
    expect(reloadSuffices(base, `${base}\ndisable_mlock = true`)).toBe(false);
    expect(reloadSuffices(base, base.replace('ui = false\n', ''))).toBe(false);
    expect(reloadSuffices(base, base.replace('"info"', '"debug"').replace('ui = false', 'ui = true'))).toBe(false);
  });
});

describe('one configuration file serves every node through per-node placeholders', () => {
  const node = {
    name: 'n2',
    api_addr: 'https://10.0.0.2:8200',
    cluster_addr: 'https://10.0.0.2:8201',
    host: '10.0.0.2',
  };
  it('fills in the node values', () => {
    expect(
      renderConfig(
        'node_id = "{{ node.name }}"\naddress = "{{node.host}}:8200"\napi_addr = "{{ node.api_addr }}"',
        node,
        'f.hcl',
      ),
    ).toBe('node_id = "n2"\naddress = "10.0.0.2:8200"\napi_addr = "https://10.0.0.2:8200"');
  });
  it('refuses an unknown placeholder, naming the file and the ones it knows', () => {
    expect(() => renderConfig('x = "{{ vars.secret }}"', node, 'f.hcl')).toThrow(
      /f\.hcl: unknown placeholder \{\{ vars\.secret \}\}/,
    );
  });
});

describe("a command's output tail keeps the last lines, stderr marked, secrets masked", () => {
  it('keeps the last lines and masks a registered secret', () => {
    redactor.add('s3cr3t-token-value');
    const out = Array.from({ length: 30 }, (_, i) => `line ${i}`).join('\n');
    const tail = outputTail(out, 'token s3cr3t-token-value leaked\n');
    expect(tail).toHaveLength(20);
    expect(tail.at(-2)).toBe('line 29');
    expect(tail.at(-1)).toBe('stderr: token [redacted] leaked');
  });
});
