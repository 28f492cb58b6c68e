import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

type Gc = (o: { type: 'minor' | 'major'; execution?: 'sync'; flavor?: 'regular' | 'last-resort' }) => void;

/**
 * V8's `gc` function. `--expose-gc` is switched on at run time (v8.setFlagsFromString, as the Node
 * docs show for other flags); where that does not yield a `gc` function, the callers below do nothing
 * and memory is merely higher.
 */
let gcFunction: Gc | undefined | null = null;

function v8Gc(): Gc | undefined {
  if (gcFunction === null) {
    try {
      setFlagsFromString('--expose-gc');
      gcFunction = runInNewContext('typeof gc === "function" ? gc : undefined') as Gc | undefined;
    } catch {
      gcFunction = undefined;
    }
  }
  return gcFunction;
}

/**
 * A young-generation collection on demand, for loops that churn through large Buffers.
 *
 * Why: gunzip hands out a fresh 1 MB Buffer per MB of a snapshot. The Buffers die at once, but their
 * memory lives outside the JS heap, and V8 collects it only when the heap itself asks for a GC or
 * when ~64 MB of such memory has piled up; a streaming loop makes almost no heap garbage, so a 1 GB
 * backup carried ~60 MB of dead buffers (peak RSS 130 MB instead of ~90 MB, measured with
 * bench/backup.js). A scavenge every few MB frees them for well under a millisecond each.
 */
export function collectYoungGarbage(): void {
  v8Gc()?.({ type: 'minor' });
}

/**
 * A full collection that also shrinks the young generation back to its smallest size, for once a
 * large module graph is loaded and before a long streaming loop.
 *
 * Why: while a big library loads (the AWS SDK: thousands of functions and objects that all live on),
 * most of what each scavenge finds survives, and V8 answers that by doubling the young generation
 * (semi-spaces of 8 to 16 MB, which stay). The streaming loop after it allocates little, so V8 never
 * shrinks it back. Only a memory-reducing collection (the "last resort" flavour) does; it takes
 * ~50 ms, once. Measured on a 1 GB backup into S3 with bench/s3-backup.js.
 */
export function shrinkHeapAfterLoad(): void {
  v8Gc()?.({ type: 'major', execution: 'sync', flavor: 'last-resort' });
}
