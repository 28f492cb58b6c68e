import { ExitCode } from '../core/exit-codes.js';
import { InterruptedError } from '../core/errors.js';
import { err } from '../ui/output.js';

export interface Interrupts {
  /** Aborted by the first SIGINT/SIGTERM: stop at the next safe point (`always:` still runs). */
  signal: AbortSignal;
  /** Aborted by the second: clean-up is cut short too, and the process exits at once. */
  hardSignal: AbortSignal;
  /** Lines to print before a hard exit: what was left undone (a token accessor to revoke...). */
  onHardExit(report: () => readonly string[] | void): void;
  /** Tell the person how to continue once the run is known (e.g. `vaultops resume ID`). */
  setResumeHint(hint: string | undefined): void;
  /** Removes the handlers. */
  dispose(): void;
}

/**
 * The one SIGINT/SIGTERM handler of every command that changes a cluster. The first signal asks
 * the operation to stop at its next safe point; the run then fails with an InterruptedError
 * (exit 130) after its clean-up. A second signal exits at once, after saying what was left undone
 * and releasing the local lock.
 */
export function catchInterrupts(what: string): Interrupts {
  const soft = new AbortController();
  const hard = new AbortController();
  const reports: Array<() => readonly string[] | void> = [];
  let resumeHint: string | undefined;
  const onSignal = (sig: NodeJS.Signals) => {
    if (soft.signal.aborted) {
      hard.abort(new InterruptedError(`Stopped at once by a second ${sig}.`));
      err.line(`Second ${sig}: stopping now.`);
      for (const r of reports) {
        try {
          for (const line of r() ?? []) err.line(`left undone: ${line}`);
        } catch {
          // a report must never keep the process from exiting
        }
      }
      process.exit(ExitCode.interrupted);
    }
    err.line(
      `\n${sig}: ${what}; ${sig === 'SIGINT' ? 'Ctrl-C' : sig} again to quit at once.${resumeHint ? ` ${resumeHint}` : ''}`,
    );
    soft.abort(new InterruptedError(`Interrupted by ${sig}.`));
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  return {
    signal: soft.signal,
    hardSignal: hard.signal,
    onHardExit: (r) => void reports.push(r),
    setResumeHint: (h) => (resumeHint = h),
    dispose: () => {
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
    },
  };
}
