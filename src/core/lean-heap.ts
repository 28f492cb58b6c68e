/**
 * V8 settings for a process whose work is streaming bytes through native code (a backup: TLS,
 * sha256, gunzip, file writes), where peak RSS matters more than JIT-compiled JavaScript.
 *
 * Measured on a 1 GB backup (bench/backup.js, process.memoryUsage and /proc/self/smaps sampled):
 * of a ~90 MB peak, ~47 MB are pages of the node binary itself, of which ~8 MB is the Turbofan
 * compiler's code and data, touched only when it optimises the few hot callbacks; and the young
 * generation grows from 1 MB towards 16 MB semi-spaces although almost nothing survives a scavenge,
 * another ~6-14 MB of heap. Without Turbofan the hot callbacks still run Maglev code (the per-byte
 * work is native), and a young generation that does not grow is scavenged more often at a
 * negligible cost; together they take ~10 MB off the peak.
 *
 * Set at run time (as core/young-gc.ts does for --expose-gc), by main() before the command's modules
 * load (the young generation grows while they do): both flags are read when V8 decides, not at
 * start-up. node:v8 is fetched only then, so other commands' start-up does not load it. Failing to
 * set them only costs memory.
 */
export function useLeanHeap(): void {
  const { setFlagsFromString } = process.getBuiltinModule('node:v8');
  for (const flag of ['--no-turbofan', '--semi-space-growth-factor=1']) {
    try {
      setFlagsFromString(flag);
    } catch {
      // Not this V8: memory is merely higher.
    }
  }
}
