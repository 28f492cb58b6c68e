import { CHECKLISTS, SEVERITY_RANK, type CheckResult } from './check-result.js';
import type { CheckReport } from './run-check.js';
import { escapeMarkup } from '../core/escape-markup.js';

const ORDER: Record<CheckResult['status'], number> = { fail: 0, unknown: 1, pass: 2, skip: 3 };

/** Failures first, the most severe first; then unknown, passed, skipped. */
export function sortedChecks(r: CheckReport): CheckResult[] {
  return [...r.checks].sort(
    (a, b) =>
      ORDER[a.status] - ORDER[b.status] ||
      SEVERITY_RANK[b.severity] - SEVERITY_RANK[a.severity] ||
      a.id.localeCompare(b.id) ||
      a.target.localeCompare(b.target),
  );
}

const LABEL: Record<CheckResult['status'], string> = { pass: 'PASS', fail: 'FAIL', unknown: 'UNKNOWN', skip: 'skip' };

export function summaryLine(r: CheckReport): string {
  const s = r.summary;
  return `Check of ${r.cluster}: ${r.result.toUpperCase()} (fail on ${r.fail_on}): ${s.pass} passed, ${s.fail} failed (${s.failing} at or above ${r.fail_on}), ${s.unknown} unknown, ${s.skip} skipped.`;
}

export function renderMarkdown(r: CheckReport): string {
  const lines = [
    `# Readiness check of ${r.cluster}: ${r.result.toUpperCase()}`,
    '',
    `${summaryLine(r)} Checked ${r.checked_at}.`,
    '',
    '| status | severity | check | target | found | fix |',
    '| --- | --- | --- | --- | --- | --- |',
  ];
  const cell = (s: string) => s.replace(/\|/g, '\\|').replace(/\n/g, ' ');
  for (const c of sortedChecks(r))
    lines.push(
      `| ${LABEL[c.status]} | ${c.severity} | \`${c.id}\` ${cell(c.title)} | ${c.target} | ${cell(c.found)} | ${c.status === 'pass' || c.status === 'skip' ? '' : cell(c.fix)} |`,
    );
  lines.push('', '## Checklists', '', ...Object.entries(CHECKLISTS).map(([k, v]) => `- \`${k}\`: ${v}`));
  return `${lines.join('\n')}\n`;
}

const esc = escapeMarkup;

export function renderHtml(r: CheckReport): string {
  const colour = { pass: '#2e7d32', fail: '#c62828', unknown: '#ef6c00', skip: '#757575' };
  const rows = sortedChecks(r)
    .map(
      (c) =>
        `<tr><td><span class="s" style="background:${colour[c.status]}">${LABEL[c.status]}</span></td><td>${c.severity}</td><td><code>${esc(c.id)}</code><br>${esc(c.title)}<br><small>${esc(c.checklist)}</small></td><td>${esc(c.target)}</td><td>${esc(c.found)}</td><td>${c.status === 'pass' || c.status === 'skip' ? '' : esc(c.fix)}</td></tr>`,
    )
    .join('\n');
  const s = r.summary;
  const total = Math.max(1, s.pass + s.fail + s.unknown + s.skip);
  let x = 0;
  const bar = (['pass', 'fail', 'unknown', 'skip'] as const)
    .map((k) => {
      const w = (s[k] / total) * 600;
      const rect = `<rect x="${x.toFixed(1)}" y="0" width="${w.toFixed(1)}" height="22" fill="${colour[k]}"><title>${k}: ${s[k]}</title></rect>`;
      x += w;
      return rect;
    })
    .join('');
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Readiness check ${esc(r.cluster)}: ${r.result}</title>
<style>body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1100px;color:#222}table{border-collapse:collapse}td,th{border:1px solid #ddd;padding:.35em .6em;vertical-align:top;font-size:14px;text-align:left}.s{color:#fff;border-radius:3px;padding:.1em .5em;font-size:12px}</style></head><body>
<h1>Readiness check of ${esc(r.cluster)}: ${esc(r.result.toUpperCase())}</h1>
<p>${esc(summaryLine(r))} Checked ${esc(r.checked_at)}.</p>
<svg xmlns="http://www.w3.org/2000/svg" width="600" height="22" viewBox="0 0 600 22" role="img" aria-label="passed, failed, unknown, skipped">${bar}</svg>
<table><tr><th>status</th><th>severity</th><th>check</th><th>target</th><th>found</th><th>fix</th></tr>
${rows}
</table>
<ul>${Object.entries(CHECKLISTS)
    .map(([k, v]) => `<li><code>${esc(k)}</code>: ${esc(v)}</li>`)
    .join('')}</ul>
</body></html>
`;
}
