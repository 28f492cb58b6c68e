import { redactor } from '../core/redact.js';

/**
 * Every byte the CLI writes goes through here, so the redactor sees it. Data goes to stdout;
 * progress, warnings and errors go to stderr so `--json` output stays clean.
 */
export const out = {
  line(text = ''): void {
    process.stdout.write(`${redactor.redact(text)}\n`);
  },
  json(value: unknown): void {
    process.stdout.write(`${JSON.stringify(redactor.redactValue(value), null, 2)}\n`);
  },
  jsonLine(value: unknown): void {
    process.stdout.write(`${JSON.stringify(redactor.redactValue(value))}\n`);
  },
};

export const err = {
  line(text = ''): void {
    process.stderr.write(`${redactor.redact(text)}\n`);
  },
};

/** A progress reporter: plain timestamped lines without a TTY, a live line on a TTY. */
export function progressPrinter(options: { quiet?: boolean } = {}): (message: string) => void {
  if (options.quiet) return () => undefined;
  const tty = process.stderr.isTTY === true && !process.env['CI'];
  let lastWasLive = false;
  return (message: string) => {
    const text = redactor.redact(message);
    if (tty) {
      // Long-running builds print many lines: keep them on one live line, keep real steps.
      const live = /^(download|resolve|build): /.test(text);
      if (live) {
        const cols = process.stderr.columns ?? 100;
        process.stderr.write(`\r\x1b[2K  ${text.slice(0, cols - 3)}`);
        lastWasLive = true;
        return;
      }
      if (lastWasLive) process.stderr.write('\r\x1b[2K');
      lastWasLive = false;
      process.stderr.write(`• ${text}\n`);
    } else {
      process.stderr.write(`${new Date().toISOString()} ${text}\n`);
    }
  };
}

export function table(rows: string[][], header: string[]): string[] {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const fmt = (r: string[]) =>
    r
      .map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]!)))
      .join('  ')
      .trimEnd();
  return [fmt(header), ...rows.map(fmt)];
}
