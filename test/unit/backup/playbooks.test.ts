import { describe, expect, it } from 'vitest';
import { loadActions } from '../../../src/actions/registry.js';
import { loadPlaybook } from '../../../src/playbook/load.js';

describe('the backup and restore playbooks load against the real actions', () => {
  it('backup.snapshot and backup.restore are found by the registry', async () => {
    const actions = await loadActions();
    expect(actions.get('backup.snapshot')?.changes).toBe(true);
    expect(actions.get('backup.restore')?.gates).toContain('safety snapshot taken');
  });

  it('playbooks/backup.yml and playbooks/restore.yml pass the schema and the rules', async () => {
    const actions = await loadActions();
    expect(
      loadPlaybook('playbooks/backup.yml', actions).steps.map((s) => ('action' in s ? s.action : undefined)),
    ).toEqual(['backup.snapshot']);
    const restore = loadPlaybook('playbooks/restore.yml', actions);
    expect(restore.steps[0]).toMatchObject({ action: 'backup.restore', confirm: '{{ cluster.name }}' });
  });
});
