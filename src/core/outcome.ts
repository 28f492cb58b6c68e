/** What happened to one step on one node. Discriminated so reporters and the recap can count. */
export type Outcome =
  | { status: 'ok'; message?: string; data?: unknown }
  | { status: 'changed'; message?: string; data?: unknown }
  | { status: 'skipped'; reason: string; data?: unknown }
  | { status: 'failed'; message: string; details?: string[]; data?: unknown }
  | { status: 'unreachable'; message: string };

export type OutcomeStatus = Outcome['status'];
