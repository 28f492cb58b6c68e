import { InputError } from './errors.js';
import { formatProblem, type Problem } from './positions.js';

/** Bad input in one or more files: every problem at once, each as file:line:col. */
export class ProblemsError extends InputError {
  readonly problems: readonly Problem[];
  constructor(what: string, problems: readonly Problem[]) {
    super(`${what}: ${problems.length} problem${problems.length === 1 ? '' : 's'}`, {
      details: problems.map(formatProblem),
      hint: 'Fix the lines above and run again.',
    });
    this.problems = problems;
  }
}
