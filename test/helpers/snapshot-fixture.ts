import { createHash, randomBytes } from 'node:crypto';
import { gzipSync } from 'node:zlib';

/**
 * Builds small Raft-snapshot-shaped tar.gz files in memory, the way hashicorp/raft-snapshot and
 * Vault write them (ustar headers, meta.json, state.bin, SHA256SUMS, SHA256SUMS.sealed, two zero
 * blocks), with knobs to break them. Test code makes the fixtures; no binaries are checked in.
 */
export interface FixtureOptions {
  stateBytes?: number;
  /** Replace SHA256SUMS' text. */
  sums?: (real: string) => string;
  omitSealed?: boolean;
  emptySealed?: boolean;
  omitEndBlocks?: boolean;
  /** Flip one byte of state.bin after the sums are computed. */
  corruptState?: boolean;
  meta?: Record<string, unknown>;
}

export function tarMember(name: string, body: Buffer): Buffer {
  const h = Buffer.alloc(512);
  h.write(name, 0, 100, 'utf8');
  h.write('0000600\0', 100, 'latin1');
  h.write('0000000\0', 108, 'latin1');
  h.write('0000000\0', 116, 'latin1');
  h.write(`${body.length.toString(8).padStart(11, '0')}\0`, 124, 'latin1');
  h.write(
    `${Math.floor(Date.now() / 1000)
      .toString(8)
      .padStart(11, '0')}\0`,
    136,
    'latin1',
  );
  h.write('        ', 148, 'latin1');
  h.write('0', 156, 'latin1');
  h.write('ustar\0', 257, 'latin1');
  h.write('00', 263, 'latin1');
  let sum = 0;
  for (const b of h) sum += b;
  h.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148, 'latin1');
  const pad = Buffer.alloc((512 - (body.length % 512)) % 512);
  return Buffer.concat([h, body, pad]);
}

export function snapshotTar(o: FixtureOptions = {}): Buffer {
  const state = randomBytes(o.stateBytes ?? 40_000);
  const meta = Buffer.from(
    JSON.stringify(
      o.meta ?? {
        Version: 1,
        ID: 'bolt-snapshot',
        Index: 1234,
        Term: 7,
        Peers: null,
        Configuration: { Servers: [{ Suffrage: 0, ID: 'n1', Address: '127.0.0.1:8201' }] },
        ConfigurationIndex: 1,
        Size: state.length,
      },
    ),
  );
  const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');
  let sums = `${sha(state)}  state.bin\n${sha(meta)}  meta.json\n`;
  if (o.sums) sums = o.sums(sums);
  if (o.corruptState) state[100] = state[100]! ^ 0xff;
  const parts = [
    tarMember('meta.json', meta),
    tarMember('state.bin', state),
    tarMember('SHA256SUMS', Buffer.from(sums)),
  ];
  if (!o.omitSealed) parts.push(tarMember('SHA256SUMS.sealed', o.emptySealed ? Buffer.alloc(0) : randomBytes(185)));
  if (!o.omitEndBlocks) parts.push(Buffer.alloc(1024));
  return Buffer.concat(parts);
}

export function snapshotFixture(o: FixtureOptions = {}): Buffer {
  return gzipSync(snapshotTar(o));
}
