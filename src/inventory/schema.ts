import { z } from 'zod';

/**
 * The inventory: clusters, their nodes and how to reach them. Secrets are never written here,
 * only references to them (`env:NAME`, `file:PATH[#field]`, `prompt:LABEL`, `cmd:COMMAND`).
 */
export const secretRef = z
  .string()
  .regex(
    /^(env|file|prompt|cmd):.+/,
    'a secret reference: env:NAME, file:PATH[#field], prompt:LABEL or cmd:COMMAND (never the secret itself)',
  )
  .describe(
    'Secret reference: env:NAME, file:PATH[#field] (file must be mode 0600), prompt:LABEL (asked once, masked), cmd:COMMAND (stdout).',
  );

const duration = z.string().regex(/^\d+(ms|s|m|h)$/, 'a duration like 500ms, 10s, 5m, 1h');

export const tlsSchema = z
  .strictObject({
    ca_cert: z.string().optional().describe('PEM file of the CA that signed the server certificates.'),
    client_cert: z.string().optional(),
    client_key: z.string().optional(),
    server_name: z.string().optional(),
    skip_verify: z.boolean().optional().describe('Do not verify server certificates. Debugging only.'),
  })
  .describe('How to verify the Vault API over TLS.');

export const sshSchema = z.strictObject({
  host: z.string().optional().describe('Defaults to the host of api_addr.'),
  port: z.number().int().min(1).max(65535).optional(),
  user: z.string().optional(),
  key_file: z
    .string()
    .optional()
    .describe(
      "Private key file; without it, ~/.ssh/config's IdentityFile, the default keys in ~/.ssh and the SSH agent.",
    ),
  key_passphrase: secretRef
    .optional()
    .describe(
      'Passphrase of an encrypted key file, as a secret reference (the key may also sit unlocked in ssh-agent).',
    ),
  known_hosts: z
    .string()
    .optional()
    .describe(
      "The one known_hosts file to verify host keys against; without it ~/.ssh/known_hosts, /etc/ssh/ssh_known_hosts and vaultops' own file.",
    ),
  host_key: z.string().optional().describe('Expected host key ("ssh-ed25519 AAAA..."), pinned.'),
  jump: z
    .string()
    .optional()
    .describe("Jump host, user@host[:port] (a comma list is a chain); without it, ~/.ssh/config's ProxyJump."),
  sudo: z.boolean().optional(),
});

export const serviceSchema = z.strictObject({
  manager: z.enum(['systemd', 'lab']).optional().describe('How the server process is started and stopped on the host.'),
  name: z.string().optional().describe('Unit or service name (default: vault / openbao).'),
  binary: z.string().optional().describe('Path of the server binary on the host.'),
  install: z
    .enum(['binary', 'package'])
    .optional()
    .describe(
      'How the server was installed on the host: binary (default; an upgrade copies the new binary) or package (from an apt/yum repository; an upgrade runs apt-get install <package>=<version>).',
    ),
  package: z.string().optional().describe('With install: package, the package name (default vault / openbao).'),
  config: z.string().optional(),
  data_dir: z.string().optional(),
  log_file: z.string().optional(),
});

export const nodeSchema = z.strictObject({
  name: z.string().regex(/^[A-Za-z0-9_.-]+$/, 'letters, digits, "_", "." and "-"'),
  api_addr: z.url({ protocol: /^https?$/ }).describe("The node's own API address (not a load balancer)."),
  cluster_addr: z.url().optional(),
  zone: z.string().optional().describe('Failure domain (availability zone, rack).'),
  ssh: sshSchema.optional(),
  service: serviceSchema.optional(),
  vars: z.record(z.string(), z.unknown()).optional(),
});

export const unsealSchema = z.strictObject({
  key_set: z.string().optional().describe('Label of the unseal/recovery key set these shares belong to.'),
  keys: secretRef
    .optional()
    .describe('Where the shares come from; a file reference may point at a JSON list (#unseal_keys_b64).'),
  threshold: z.number().int().min(1).optional(),
});

export const canarySchema = z.strictObject({
  path: z.string().describe('KV path to read, e.g. secret/data/canary.'),
  field: z.string().optional(),
  expect_sha256: z.string().optional().describe('sha256 of the expected value; the value itself is never stored.'),
});

export const lockSchema = z
  .strictObject({
    cluster: z
      .enum(['auto', 'required', 'off'])
      .default('auto')
      .describe(
        'The cluster-wide lock kept in the cluster (KV v2 with check-and-set): auto = use it when the cluster can keep it, else warn and rely on the local lock; required = refuse to run without it; off = local lock only.',
      ),
    mount: z.string().default('vaultops').describe('KV v2 mount holding the lock record (default vaultops).'),
    path: z.string().optional().describe('Path of the record in the mount (default locks/<cluster name>).'),
    ttl: duration.default('2m').describe('How long a record lives unless its holder renews it (every third of this).'),
  })
  .describe('How runs on this cluster exclude each other across admin hosts.');

const authPath = z
  .string()
  .regex(/^[A-Za-z0-9_.-]+(\/[A-Za-z0-9_.-]+)*$/, 'a mount path like approle or k8s/prod (no leading "auth/")')
  .optional()
  .describe('Where the auth method is mounted, without "auth/" (default: the method name).');

export const authSchema = z
  .discriminatedUnion('method', [
    z.strictObject({
      method: z.literal('token'),
      token: secretRef.describe('A token the operator gives; vaultops never renews or revokes it.'),
    }),
    z.strictObject({
      method: z.literal('approle'),
      path: authPath,
      role_id: secretRef.describe('The role_id, as a reference (env:, file:, cmd:).'),
      secret_id: secretRef.describe('The secret_id, as a reference (env:, file:, cmd:); never the value.'),
    }),
    z.strictObject({
      method: z.literal('cert'),
      path: authPath,
      name: z
        .string()
        .optional()
        .describe('The certificate role (auth/cert/certs/NAME); all roles are tried when absent.'),
      client_cert: z.string().optional().describe('PEM client certificate (default: tls.client_cert).'),
      client_key: z.string().optional().describe('PEM key of the client certificate (default: tls.client_key).'),
    }),
    z.strictObject({
      method: z.literal('jwt'),
      path: authPath,
      role: z.string().min(1),
      token_file: z.string().describe('File holding the JWT; read at every login, so a rotated token is picked up.'),
    }),
    z.strictObject({
      method: z.literal('kubernetes'),
      path: authPath,
      role: z.string().min(1),
      token_file: z
        .string()
        .optional()
        .describe('Service account token file (default /var/run/secrets/kubernetes.io/serviceaccount/token).'),
    }),
  ])
  .describe(
    'How vaultops logs in for unattended runs. A token from approle, cert, jwt or kubernetes is renewed during the run and revoked at its end.',
  );

export const loadBalancerSchema = z
  .strictObject({
    address: z
      .url({ protocol: /^https$/ })
      .describe('Where clients reach the cluster through the load balancer, e.g. https://vault.example.com:8200.'),
    mode: z
      .enum(['active', 'read'])
      .default('active')
      .describe(
        'active: only the active node gets traffic (health 200); read: unsealed standbys too (standbyok, perfstandbyok).',
      ),
    interval: duration.default('500ms').describe('Time between two health checks of a node.'),
    fall: z.number().int().min(1).default(2).describe('Failed checks in a row that take a node out.'),
    rise: z.number().int().min(1).default(2).describe('Passed checks in a row that put a node back.'),
  })
  .describe(
    'A TCP-passthrough load balancer in front of the nodes (`vaultops lb config` writes its configuration; `vaultops check` checks it).',
  );

export const clusterSchema = z.strictObject({
  flavor: z.enum(['vault', 'openbao']).optional(),
  version: z.string().optional(),
  tls: tlsSchema.optional(),
  token: secretRef.optional().describe('A token with rights for the operations run against this cluster.'),
  auth: authSchema.optional(),
  unseal: unsealSchema.optional(),
  namespace: z.string().optional(),
  nodes: z.array(nodeSchema).min(1, 'a cluster needs at least one node'),
  new_nodes: z
    .array(nodeSchema)
    .optional()
    .describe(
      'Nodes that replace `nodes` in an immutable upgrade (`vaultops upgrade --strategy immutable`): hosts with sshd and the service manager ready; they join, become voters, then the old nodes leave. Afterwards the inventory lists them as `nodes`.',
    ),
  groups: z.record(z.string(), z.array(z.string())).optional(),
  vars: z.record(z.string(), z.unknown()).optional(),
  canaries: z.array(canarySchema).optional(),
  stores: z.record(z.string(), z.record(z.string(), z.unknown())).optional().describe('Backup stores by name.'),
  lab: z.strictObject({ name: z.string(), dir: z.string() }).optional().describe('Written by `vaultops lab up`.'),
  timeouts: z.strictObject({ request: duration.optional() }).optional(),
  lock: lockSchema.optional(),
  load_balancer: loadBalancerSchema.optional(),
});

export const inventorySchema = z.strictObject({
  clusters: z.record(z.string().regex(/^[A-Za-z0-9_.-]+$/), clusterSchema),
  vars: z.record(z.string(), z.unknown()).optional(),
});

export type InventoryFile = z.infer<typeof inventorySchema>;
export type ClusterSpec = z.infer<typeof clusterSchema>;
export type NodeSpec = z.infer<typeof nodeSchema>;
export type TlsSpec = z.infer<typeof tlsSchema>;
export type AuthSpec = z.infer<typeof authSchema>;
export type LoadBalancerSpec = z.infer<typeof loadBalancerSchema>;
