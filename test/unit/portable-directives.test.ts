import { describe, expect, it } from 'vitest';
import { portableDirectives } from '../../src/lab/binaries.js';

// Trimmed from hashicorp/vault v1.21.0's go.mod: the shapes that matter.
const VAULT_GO_MOD = `module github.com/hashicorp/vault

// The go version directive value isn't consulted when building our production binaries,
go 1.24.6

replace github.com/hashicorp/vault/api => ./api

replace github.com/hashicorp/vault/api/auth/approle => ./api/auth/approle

replace github.com/hashicorp/vault/sdk => ./sdk

replace github.com/99designs/keyring => github.com/Jeffail/keyring v1.2.3

replace github.com/ma314smith/signedxml v1.1.1 => github.com/moov-io/signedxml v1.1.1 // fork with fixes

exclude github.com/tencentcloud/tencentcloud-sdk-go v1.0.162

require (
	github.com/hashicorp/vault/api v1.22.0
	github.com/hashicorp/vault/sdk v0.20.0
)
`;

describe("portableDirectives keeps what a scratch module needs from Vault's go.mod", () => {
  it('keeps replaces that point at other modules and every exclude, drops local replaces', () => {
    expect(portableDirectives(VAULT_GO_MOD)).toEqual([
      'replace github.com/99designs/keyring => github.com/Jeffail/keyring v1.2.3',
      'replace github.com/ma314smith/signedxml v1.1.1 => github.com/moov-io/signedxml v1.1.1',
      'exclude github.com/tencentcloud/tencentcloud-sdk-go v1.0.162',
    ]);
  });

  it('reads replace and exclude blocks line by line, with comments and blank lines', () => {
    const mod = [
      'module x',
      'replace (',
      '\tgithub.com/a/local => ../a // sibling checkout',
      '',
      '\t// a comment line',
      '\tgithub.com/b/fork v1.0.0 => github.com/c/fork v1.0.1',
      '\tgithub.com/d/here => ./d',
      ')',
      'exclude (',
      '\tgithub.com/e/bad v0.1.0',
      '\tgithub.com/f/bad v0.2.0 // broken',
      ')',
      'require github.com/g/ok v1.0.0',
    ].join('\n');
    expect(portableDirectives(mod)).toEqual([
      'replace github.com/b/fork v1.0.0 => github.com/c/fork v1.0.1',
      'exclude github.com/e/bad v0.1.0',
      'exclude github.com/f/bad v0.2.0',
    ]);
  });

  it('takes nothing from a go.mod without directives, and nothing from require blocks', () => {
    expect(portableDirectives('module x\n\ngo 1.24\n\nrequire (\n\tgithub.com/a/b v1.0.0\n)\n')).toEqual([]);
  });

  it('copes with Windows line endings', () => {
    expect(
      portableDirectives('module x\r\nexclude github.com/e/bad v0.1.0\r\nreplace github.com/h => ./h\r\n'),
    ).toEqual(['exclude github.com/e/bad v0.1.0']);
  });
});
