/** Questions go through here; the CLI decides who answers (a person at a TTY, or flags/env in CI). */
export interface Prompter {
  readonly interactive: boolean;
  /** A masked secret. Unattended prompters throw an InputError naming `source` (flag, env var or file). */
  secret(question: { message: string; source: string }): Promise<string>;
  /** A typed confirmation: the person must type `expected` (e.g. the cluster name). */
  confirm(question: { message: string; expected: string; source: string }): Promise<void>;
  /** A plain (visible) answer, e.g. a var value. Unattended prompters throw naming `source`. */
  text(question: { message: string; source: string }): Promise<string>;
  /** Pick one of several. */
  select<T extends string>(question: {
    message: string;
    choices: readonly T[];
    default?: T;
    source: string;
  }): Promise<T>;
}
