import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

/**
 * A young-generation collection on demand, for loops that churn through large Buffers.
 *
 * Why: gunzip hands out a fresh 1 MB Buffer per MB of a snapshot. The Buffers die at once, but their
 * memory lives outside the JS heap, and V8 collects it only when the heap itself asks for a GC or
 * when ~64 MB of such memory has piled up; a streaming loop makes almost no heap garbage, so a 1 GB
 * backup carried ~60 MB of dead buffers (peak RSS 130 MB instead of ~90 MB, measured with
 * bench/backup.js). A scavenge every few MB frees them for well under a millisecond each.
 *
 * `--expose-gc` is switched on at run time (v8.setFlagsFromString, as the Node docs show for other
 * flags); where that does not yield a `gc` function this does nothing and memory is merely higher.
 */
let minorGc: (() => void) | undefined | null = null;

export function collectYoungGarbage(): void {
  if (minorGc === null) {
    try {
      setFlagsFromString('--expose-gc');
      const gc = runInNewContext('typeof gc === "function" ? gc : undefined') as
        ((o: { type: 'minor' }) => void) | undefined;
      minorGc = gc ? () => gc({ type: 'minor' }) : undefined;
    } catch {
      minorGc = undefined;
    }
  }
  minorGc?.();
}
