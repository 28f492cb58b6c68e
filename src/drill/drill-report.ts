import { mkdir, readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { redactor } from '../core/redact.js';
import { DRILL_FORMAT, type DrillPhase, type DrillReport } from './run-drill.js';
import { writeFileAtomic } from '../core/atomic-write.js';
import { escapeMarkup } from '../core/escape-markup.js';

/**
 * A drill's report in three forms: JSON for machines (and for `vaultops check`, which looks for the
 * last passed drill), Markdown for the ticket, HTML with a timeline of the phases for people.
 * Everything goes through the redactor once more; a report never holds a token, key or canary value.
 */
export async function writeDrillReports(
  report: DrillReport,
  dir: string,
): Promise<{ json: string; markdown: string; html: string }> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const safe = redactor.redactValue(report);
  const base = join(dir, `drill-${safe.id}`);
  const files = { json: `${base}.json`, markdown: `${base}.md`, html: `${base}.html` };
  await writeFileAtomic(files.json, `${JSON.stringify(safe, null, 2)}\n`);
  await writeFileAtomic(files.markdown, redactor.redact(renderMarkdown(safe)));
  await writeFileAtomic(files.html, redactor.redact(renderHtml(safe)));
  return files;
}

/** Drill reports in a folder, newest first (by start time); unreadable files are skipped. */
export async function readDrillReports(dir: string): Promise<DrillReport[]> {
  const names = await readdir(dir).catch(() => [] as string[]);
  const reports: DrillReport[] = [];
  for (const n of names.filter((x) => /^drill-.*\.json$/.test(x))) {
    try {
      const r = JSON.parse(await readFile(join(dir, n), 'utf8')) as DrillReport;
      if (r.format === DRILL_FORMAT) reports.push(r);
    } catch {
      /* a half-written or foreign file */
    }
  }
  return reports.sort((a, b) => b.started_at.localeCompare(a.started_at));
}

export function formatMs(ms: number | undefined): string {
  if (ms === undefined) return 'n/a';
  if (ms < 1000) return `${ms} ms`;
  const s = ms / 1000;
  if (s < 120) return `${s.toFixed(1)} s`;
  const m = s / 60;
  if (m < 120) return `${m.toFixed(1)} min`;
  const h = m / 60;
  return h < 48 ? `${h.toFixed(1)} h` : `${(h / 24).toFixed(1)} d`;
}

const pct = (x: number | undefined) => (x === undefined ? '' : `${(x * 100).toFixed(0)} %`);

export function renderMarkdown(r: DrillReport): string {
  const lines = [
    `# DR drill ${r.cluster}: ${r.result === 'passed' ? 'PASSED' : 'FAILED'}`,
    '',
    `- Drill: \`${r.id}\`, ${r.started_at} to ${r.finished_at} (${formatMs(r.duration_ms)})`,
    `- **RTO: ${formatMs(r.rto_ms)}** (${rtoBasisText(r)})`,
    `- **RPO: ${formatMs(r.rpo_ms)}** (age of the backup when the restore began)`,
  ];
  if (r.backup)
    lines.push(
      `- Backup: \`${r.backup.file}\` (${r.backup.size} bytes, sha256 \`${r.backup.sha256.slice(0, 16)}…\`, Raft index ${r.backup.raft_index}, term ${r.backup.raft_term}, taken ${r.backup.taken_at}, key set ${r.backup.key_set ?? 'unknown'})`,
    );
  if (r.scratch)
    lines.push(
      `- Scratch cluster: lab \`${r.scratch.lab}\`, ${r.scratch.flavor} ${r.scratch.version}, ${r.scratch.nodes} nodes; torn down: ${r.scratch.torn_down ? 'yes, no process left' : `NO (${r.scratch.processes_left} left)`}`,
    );
  if (r.raft)
    lines.push(
      `- Raft index after restore: ${r.raft.restored_index ?? 'unknown'} (manifest ${r.raft.manifest_index}): ${r.raft.ok ? 'ok' : 'NOT OK'}`,
    );
  if (r.result === 'failed') lines.push('', `**Failed in phase \`${r.failed_phase ?? '?'}\`:** ${r.error ?? ''}`);
  lines.push(
    '',
    '## Phases',
    '',
    '| phase | result | duration | share of RTO | note |',
    '| --- | --- | --- | --- | --- |',
  );
  for (const p of r.phases)
    lines.push(
      `| ${p.title} | ${p.result} | ${formatMs(p.duration_ms)} | ${pct(p.share_of_rto)} | ${(p.note ?? '').replace(/\|/g, '\\|')} |`,
    );
  if (r.canaries.length) {
    lines.push(
      '',
      '## Canaries (compared by sha256; values are never shown)',
      '',
      '| path | field | result | expected from |',
      '| --- | --- | --- | --- |',
    );
    for (const c of r.canaries)
      lines.push(
        `| \`${c.path}\` | ${c.field ?? ''} | ${c.result}${c.problem ? ` (${c.problem})` : ''} | ${c.expected_from} |`,
      );
  }
  return `${lines.join('\n')}\n`;
}

function rtoBasisText(r: DrillReport): string {
  if (r.rto_basis === 'first-canary-read') return 'drill start to the first successful canary read';
  if (r.rto_basis === 'cluster-restored')
    return 'drill start to the restored cluster healthy; the inventory lists no canaries';
  return 'not reached: the drill stopped before the data was readable';
}

const esc = escapeMarkup;

const PHASE_COLOURS: Record<string, string> = {
  verify: '#6c8ebf',
  provision: '#9673a6',
  restore: '#d79b00',
  unseal: '#b85450',
  canaries: '#82b366',
  'raft-index': '#4d9fa8',
  teardown: '#999999',
};

/** A Gantt-style timeline of the phases as inline SVG, with the RTO marked. No external assets. */
export function timelineSvg(r: DrillReport): string {
  const t0 = Date.parse(r.started_at);
  const total = Math.max(1, Date.parse(r.finished_at) - t0);
  const left = 210;
  const width = 640;
  const rowH = 30;
  const top = 30;
  const h = top + r.phases.length * rowH + 40;
  const x = (ms: number) => left + (ms / total) * width;
  const parts: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 ${left + width + 90} ${h}" width="100%" role="img" aria-label="Timeline of the drill phases">`,
  ];
  // Time axis with about six ticks at round seconds.
  const stepS = niceStep(total / 1000 / 6);
  for (let s = 0; s * 1000 <= total; s += stepS) {
    const tx = x(s * 1000);
    parts.push(
      `<line x1="${tx.toFixed(1)}" y1="${top - 8}" x2="${tx.toFixed(1)}" y2="${h - 30}" stroke="#e3e3e3"/>`,
      `<text x="${tx.toFixed(1)}" y="${h - 14}" font-size="11" text-anchor="middle" fill="#555">${s} s</text>`,
    );
  }
  r.phases.forEach((p: DrillPhase, i) => {
    const y = top + i * rowH;
    const s = Date.parse(p.started_at) - t0;
    const bx = x(s);
    const bw = Math.max(2, (p.duration_ms / total) * width);
    const colour = p.result === 'failed' ? '#d0021b' : (PHASE_COLOURS[p.name] ?? '#888');
    parts.push(
      `<text x="${left - 10}" y="${y + 19}" font-size="13" text-anchor="end" fill="#222">${esc(p.title)}</text>`,
      `<rect x="${bx.toFixed(1)}" y="${y + 5}" width="${bw.toFixed(1)}" height="${rowH - 10}" rx="3" fill="${colour}"><title>${esc(`${p.title}: ${formatMs(p.duration_ms)}${p.result === 'failed' ? ' (failed)' : ''}${p.note ? ` - ${p.note}` : ''}`)}</title></rect>`,
      `<text x="${(bx + bw + 6).toFixed(1)}" y="${y + 19}" font-size="11" fill="#444">${esc(formatMs(p.duration_ms))}${p.share_of_rto !== undefined ? ` · ${pct(p.share_of_rto)}` : ''}${p.result === 'failed' ? ' ✗' : ''}</text>`,
    );
  });
  if (r.rto_ms !== undefined) {
    const rx = x(r.rto_ms);
    parts.push(
      `<line x1="${rx.toFixed(1)}" y1="${top - 14}" x2="${rx.toFixed(1)}" y2="${h - 30}" stroke="#d0021b" stroke-width="2" stroke-dasharray="5,3"/>`,
      `<text x="${rx.toFixed(1)}" y="${top - 18}" font-size="12" text-anchor="middle" fill="#d0021b" font-weight="bold">RTO ${esc(formatMs(r.rto_ms))}</text>`,
    );
  }
  parts.push('</svg>');
  return parts.join('\n');
}

function niceStep(raw: number): number {
  for (const s of [1, 2, 5, 10, 15, 20, 30, 60, 120, 300, 600]) if (s >= raw) return s;
  return 1200;
}

export function renderHtml(r: DrillReport): string {
  const ok = r.result === 'passed';
  const facts: [string, string][] = [
    ['RTO', `${formatMs(r.rto_ms)} (${rtoBasisText(r)})`],
    ['RPO', `${formatMs(r.rpo_ms)} (age of the backup when the restore began)`],
    ['Started', r.started_at],
    ['Duration', formatMs(r.duration_ms)],
  ];
  if (r.backup)
    facts.push([
      'Backup',
      `${r.backup.file} (${r.backup.size} bytes, Raft index ${r.backup.raft_index}, taken ${r.backup.taken_at}, key set ${r.backup.key_set ?? 'unknown'})`,
    ]);
  if (r.scratch)
    facts.push([
      'Scratch cluster',
      `${r.scratch.lab}: ${r.scratch.flavor} ${r.scratch.version}, ${r.scratch.nodes} nodes, ${r.scratch.torn_down ? 'torn down, no process left' : `NOT torn down (${r.scratch.processes_left} processes)`}`,
    ]);
  if (r.raft)
    facts.push([
      'Raft index',
      `${r.raft.restored_index ?? 'unknown'} after restore, manifest ${r.raft.manifest_index}: ${r.raft.ok ? 'ok' : 'not ok'}`,
    ]);
  const canaries = r.canaries.length
    ? `<h2>Canaries</h2><p>Compared by sha256; values are never shown.</p><table><tr><th>path</th><th>field</th><th>result</th><th>expected from</th></tr>${r.canaries.map((c) => `<tr class="${c.result === 'match' ? 'ok' : 'bad'}"><td><code>${esc(c.path)}</code></td><td>${esc(c.field ?? '')}</td><td>${esc(c.result)}${c.problem ? ` (${esc(c.problem)})` : ''}</td><td>${esc(c.expected_from)}</td></tr>`).join('')}</table>`
    : '';
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>DR drill ${esc(r.cluster)}: ${ok ? 'passed' : 'FAILED'}</title>
<style>
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:2em auto;max-width:980px;color:#222}
.badge{display:inline-block;padding:.2em .7em;border-radius:4px;color:#fff;background:${ok ? '#2e7d32' : '#c62828'}}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ddd;padding:.3em .6em;text-align:left;font-size:14px}
tr.bad td{background:#fdecea}.error{background:#fdecea;border-left:4px solid #c62828;padding:.6em 1em}
.figures{display:flex;gap:2em}.figure{font-size:28px;font-weight:600}.figure small{display:block;font-size:13px;font-weight:400;color:#666}
</style></head><body>
<h1>DR drill of ${esc(r.cluster)} <span class="badge">${ok ? 'PASSED' : 'FAILED'}</span></h1>
<div class="figures"><div class="figure">${esc(formatMs(r.rto_ms))}<small>RTO</small></div><div class="figure">${esc(formatMs(r.rpo_ms))}<small>RPO</small></div></div>
${ok ? '' : `<p class="error"><strong>Stopped in phase ${esc(r.failed_phase ?? '?')}:</strong> ${esc(r.error ?? '')}</p>`}
<h2>Timeline</h2>
${timelineSvg(r)}
<h2>Facts</h2>
<table>${facts.map(([k, v]) => `<tr><th>${esc(k)}</th><td>${esc(v)}</td></tr>`).join('')}</table>
${canaries}
<p><small>vaultops drill ${esc(r.id)} · report format ${esc(r.format)}</small></p>
</body></html>
`;
}
