// MIGRATION.md: what `clgo migrate` read, wrote, and what is left to do by hand — checked against
// `clgo validate` on the written repository, so every validate error is either a listed step or
// shown as a problem of its own. Pure: text out.
import type { Diagnostic } from '../../schema/model.ts';
import type { MigrationPlan, ReportItem } from './convert.ts';

export interface CheckedReport {
  /** Validate errors that no report item accounts for (the objects need a look). */
  unexplained: Diagnostic[];
  /** Per item (same order as the plan's items): the validate errors it accounts for now. */
  matched: Diagnostic[][];
}

/** Pairs validate's errors with the report items that explain them. */
export function checkAgainstValidate(items: readonly ReportItem[], errors: readonly Diagnostic[]): CheckedReport {
  const matched = items.map(() => [] as Diagnostic[]);
  const unexplained: Diagnostic[] = [];
  for (const d of errors) {
    const i = items.findIndex((it) => it.expects.some((e) => e.code === d.code && e.file === d.file));
    if (i === -1) unexplained.push(d);
    else matched[i]!.push(d);
  }
  return { unexplained, matched };
}

const KIND_WORDS: [keyof MigrationPlan['peers'][number]['counts'], string][] = [
  ['Export', 'export'],
  ['Import', 'import'],
  ['AccessPolicy', 'access polic'],
  ['PrivilegedAccessPolicy', 'privileged access polic'],
];

function counts(c: MigrationPlan['peers'][number]['counts']): string {
  const parts = KIND_WORDS.filter(([k]) => c[k] > 0).map(([k, w]) => `${c[k]} ${w}${w.endsWith('polic') ? (c[k] === 1 ? 'y' : 'ies') : c[k] === 1 ? '' : 's'}`);
  return parts.length > 0 ? parts.join(', ') : 'no objects';
}

const where = (d: Diagnostic): string => `${d.file}:${d.line}:${d.column}`;

export function renderReport(
  plan: Pick<MigrationPlan, 'peers' | 'items'>,
  validation: { ok: boolean; errors: Diagnostic[]; warnings: Diagnostic[] },
  opts: { repoDir: string; readAt: Date; fabricName: string },
): { text: string; checked: CheckedReport } {
  const checked = checkAgainstValidate(plan.items, validation.errors);
  const out: string[] = [];
  out.push('# Migration from ClusterLink', '');
  out.push(`Written by \`clgo migrate\` on ${opts.readAt.toISOString()} into fabric ${opts.fabricName}. This file is not part of the fabric: delete it once every step below is done.`, '');
  out.push('## Peers', '');
  for (const p of plan.peers) {
    out.push(`- **${p.name}** — ${p.context !== null ? `context \`${p.context}\` (peer name from ${p.source}): ${counts(p.counts)}` : `not read (${p.source}): only peers/${p.name}/peer.yaml`}`);
  }
  out.push('');
  const todos = plan.items.map((it, i) => ({ it, i })).filter(({ it }) => it.severity === 'todo');
  const notes = plan.items.filter((it) => it.severity === 'note');
  out.push(`## To do by hand (${todos.length})`, '');
  todos.forEach(({ it, i }, n) => {
    out.push(`${n + 1}. [${it.peer ?? 'fabric'}] ${it.topic}: ${it.message}`);
    for (const a of it.action) out.push(`   - ${a}`);
    const now = checked.matched[i]!;
    if (now.length > 0) out.push(`   - \`clgo validate\` reports this until it is done: ${now.map((d) => `${d.code} at ${where(d)}`).join('; ')}`);
    else if (it.expects.length > 0) out.push(`   - \`clgo validate\` will report ${it.expects.map((e) => `${e.code} (${e.file})`).join(', ')} until it is done, once the errors it reports first are fixed`);
    else out.push('   - `clgo validate` cannot check this one: only a person who knows the clusters can');
  });
  if (todos.length === 0) out.push('Nothing.');
  out.push('');
  out.push(`## Notes (${notes.length})`, '');
  for (const it of notes) out.push(`- [${it.peer ?? 'fabric'}] ${it.topic}: ${it.message}`);
  if (notes.length === 0) out.push('None.');
  out.push('');
  out.push('## Cut-over', '');
  out.push(
    "ClusterLink's control plane and the clgo reconciler both create a Service per import (same name and namespace): on each peer, uninstall ClusterLink " +
      '(its operator, or `kubectl delete -n clusterlink-system deployment cl-controlplane cl-dataplane`) before deploying the reconciler with its Kubernetes target ' +
      '(deploy/README.md). Peers cut over one at a time cannot reach peers still on ClusterLink: the protocols differ.',
    '',
  );
  out.push('## `clgo validate` on the written repository', '');
  out.push(
    validation.ok
      ? `valid (${validation.warnings.length} warning(s)).`
      : `${validation.errors.length} error(s), ${validation.errors.length - checked.unexplained.length} of them steps listed above; ${validation.warnings.length} warning(s).`,
  );
  if (checked.unexplained.length > 0) {
    out.push('', 'Errors that are not one of the steps above — the migrated objects need a look (ClusterLink accepted them, the fabric does not):', '');
    for (const d of checked.unexplained) out.push(`- ${where(d)}: ${d.code}: ${d.message}${d.path ? ` (at ${d.path})` : ''}. ${d.hint}`);
  }
  out.push('', `Re-run \`clgo validate ${opts.repoDir}\` after each step.`, '');
  return { text: out.join('\n'), checked };
}
