/** The unseal keys (and a token valid in that data) of one key set, resolved by the caller. */
export interface KeySetSecrets {
  label: string;
  keys: string[];
  token?: string | undefined;
}
