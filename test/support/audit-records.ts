/** Reads audit records back for tests, and checks the chain the way a verifier would. */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { GENESIS_PREV, leafHash } from '../../src/audit/canonical.js';
import type { AuditRecord } from '../../src/audit/record.js';

/** Every record of one log in a file sink directory, in file order, with its raw line. */
export function readFileSinkRecords(sinkDir: string, instance: string): { record: AuditRecord; line: string }[] {
  const dir = join(sinkDir, instance);
  let files: string[];
  try {
    files = readdirSync(dir).filter((f) => f.startsWith('records-')).sort();
  } catch {
    return [];
  }
  const out: { record: AuditRecord; line: string }[] = [];
  for (const f of files) {
    for (const line of readFileSync(join(dir, f), 'utf8').split('\n')) {
      if (line === '') continue;
      out.push({ record: JSON.parse(line) as AuditRecord, line });
    }
  }
  return out;
}

/** Problems with a log's chain: seq gaps or duplicates, and `prev` links that do not match. */
export function chainProblems(lines: readonly string[]): string[] {
  const problems: string[] = [];
  let prev = GENESIS_PREV;
  lines.forEach((line, i) => {
    const r = JSON.parse(line) as AuditRecord;
    if (r.seq !== i) problems.push(`record at position ${i} has seq ${r.seq}`);
    if (r.prev !== prev) problems.push(`record ${r.seq}: prev ${r.prev} does not match ${prev}`);
    prev = leafHash(Buffer.from(line, 'utf8')).toString('hex');
  });
  return problems;
}
