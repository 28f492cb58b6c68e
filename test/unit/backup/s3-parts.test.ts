import { describe, expect, it } from 'vitest';
import { partSize } from '../../../src/backup/stores/s3-store.js';

const MiB = 1 << 20;

describe('S3 multipart part sizes', () => {
  it('every part but the last meets S3 minimum, and 10,000 parts hold a snapshot of at least 80 GiB', () => {
    let total = 0;
    for (let n = 1; n <= 10_000; n++) {
      expect(partSize(n)).toBeGreaterThanOrEqual(5 * MiB);
      expect(partSize(n)).toBeLessThanOrEqual(5 * 1024 * MiB);
      total += partSize(n);
    }
    expect(total / 1024 / MiB).toBeGreaterThanOrEqual(80);
  });

  it('parts stay 5 MiB and equal (two small buffers; services that want equal parts) up to ~44 GiB', () => {
    const sizes = new Set(Array.from({ length: 9000 }, (_, i) => partSize(i + 1)));
    expect([...sizes]).toEqual([5 * MiB]);
    for (let n = 2; n <= 10_000; n++) expect(partSize(n)).toBeGreaterThanOrEqual(partSize(n - 1));
  });
});
