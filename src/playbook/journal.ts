import {
  appendFileSync,
  existsSync,
  mkdirSync,
  readFileSync,
  readdirSync,
  writeFileSync,
  openSync,
  closeSync,
  fsyncSync,
} from 'node:fs';
import { join } from 'node:path';
import { randomBytes, createHash } from 'node:crypto';
import { userInfo, hostname } from 'node:os';
import { redactor } from '../core/redact.js';
import type { OutcomeStatus } from '../core/outcome.js';
import type { Plan } from './plan.js';

export type RunStatus = 'running' | 'ok' | 'failed' | 'interrupted' | 'refused';

export interface RunMeta {
  id: string;
  playbook: string;
  playbookFile: string;
  playbookSha256: string;
  inventory: string;
  inventorySha256: string;
  cluster: string;
  user: string;
  host: string;
  pid: number;
  startedAt: string;
  /** Non-secret vars as given (secret vars appear as their references only). */
  givenVars: Record<string, string>;
  resumedFrom?: string | undefined;
}

export type JournalRecord =
  | ({ type: 'run'; ts: string } & RunMeta & { plan: Plan })
  | { type: 'step-start'; ts: string; key: string; seq: number; attempt: number }
  | { type: 'step-end'; ts: string; key: string; seq: number; status: OutcomeStatus; message?: string; ms: number }
  | { type: 'resume'; ts: string; pid: number; user: string }
  | { type: 'end'; ts: string; status: RunStatus; message?: string };

export function runsDir(stateDir: string): string {
  return join(stateDir, 'runs');
}

export function newRunId(): string {
  const d = new Date();
  const stamp = d.toISOString().replace(/[-:]/g, '').replace(/\..*$/, '').replace('T', '-');
  return `${stamp}-${randomBytes(3).toString('hex')}`;
}

export function sha256(text: string | Buffer): string {
  return createHash('sha256').update(text).digest('hex');
}

export function whoAmI(): { user: string; host: string } {
  let user = process.env['USER'] ?? 'unknown';
  try {
    user = userInfo().username;
  } catch {
    /* keep env */
  }
  return { user, host: hostname() };
}

/**
 * The run's journal: JSON lines, appended and fsynced record by record so a SIGKILL loses at most
 * the record being written. Every record passes through the redactor; secrets are never handed
 * to it in the first place.
 */
export class Journal {
  readonly file: string;
  constructor(
    readonly stateDir: string,
    readonly runId: string,
  ) {
    const dir = join(runsDir(stateDir), runId);
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    this.file = join(dir, 'journal.jsonl');
  }

  append(record: JournalRecord): void {
    const line = `${JSON.stringify(redactor.redactValue(record))}\n`;
    const fd = openSync(this.file, 'a', 0o600);
    try {
      appendFileSync(fd, line);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
  }
}

export interface RunSummary {
  meta: RunMeta & { plan: Plan };
  status: RunStatus;
  /** Final outcome per instance key (the last step-end seen). */
  outcomes: Map<string, { status: OutcomeStatus; message?: string | undefined; ms: number }>;
  started: Set<string>;
  endedAt?: string | undefined;
  records: JournalRecord[];
}

export function readRun(stateDir: string, runId: string): RunSummary | undefined {
  const file = join(runsDir(stateDir), runId, 'journal.jsonl');
  if (!existsSync(file)) return undefined;
  const records: JournalRecord[] = [];
  for (const line of readFileSync(file, 'utf8').split('\n')) {
    if (!line.trim()) continue;
    try {
      records.push(JSON.parse(line) as JournalRecord);
    } catch {
      // A torn last line after a SIGKILL: everything before it is intact.
    }
  }
  const head = records.find((r) => r.type === 'run') as (JournalRecord & { type: 'run' }) | undefined;
  if (!head) return undefined;
  const outcomes: RunSummary['outcomes'] = new Map();
  const started = new Set<string>();
  let status: RunStatus = 'running';
  let endedAt: string | undefined;
  for (const r of records) {
    if (r.type === 'step-start') started.add(r.key);
    if (r.type === 'step-end') outcomes.set(r.key, { status: r.status, message: r.message, ms: r.ms });
    if (r.type === 'end') {
      status = r.status;
      endedAt = r.ts;
    }
    if (r.type === 'resume') {
      status = 'running';
      endedAt = undefined;
    }
  }
  const { type: _t, ts: _ts, ...meta } = head;
  return { meta, status, outcomes, started, endedAt, records };
}

export function listRuns(stateDir: string): RunSummary[] {
  const dir = runsDir(stateDir);
  if (!existsSync(dir)) return [];
  return readdirSync(dir)
    .sort()
    .reverse()
    .map((id) => readRun(stateDir, id))
    .filter((r): r is RunSummary => r !== undefined);
}

export function writeRunFile(stateDir: string, runId: string, name: string, content: string): void {
  writeFileSync(join(runsDir(stateDir), runId, name), content, { mode: 0o600 });
}
