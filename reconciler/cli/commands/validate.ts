// `clgo validate [DIR]`: the CI gate of a fabric repository. Loads and checks every file, then
// runs the extra checks (certificates, ...) on the model; prints located diagnostics as text,
// JSON or GitHub workflow annotations. Exit 0 valid, 1 invalid (or warnings with --strict), 2 usage.
import { Option, type Command } from 'commander';
import { relative, resolve } from 'node:path';
import { loadFabricFiles } from '../../../schema/load.ts';
import type { Diagnostic, FabricModel } from '../../../schema/model.ts';
import { FabricReadError, readFabricDir } from '../../../schema/read-dir.ts';
import { certificateDiagnostics } from '../../pki/diagnostics.ts';
import { EXIT, UsageError, type CliContext, type RegisterCommand } from '../context.ts';

export type ExtraCheck = (fabric: FabricModel, files: ReadonlyMap<string, Uint8Array>, opts: { now: Date }) => Diagnostic[];

/** Checks that need the whole model; one line per check. */
export const EXTRA_CHECKS: ExtraCheck[] = [(fabric, _files, opts) => certificateDiagnostics(fabric, { now: opts.now })];

export interface ValidationReport {
  ok: boolean;
  errors: Diagnostic[];
  warnings: Diagnostic[];
  fabric: FabricModel | null;
}

/** Load + extra checks over a path→bytes map (a directory or a Git tree). Pure. */
export function validateFiles(files: ReadonlyMap<string, Uint8Array>, now = new Date()): ValidationReport {
  const result = loadFabricFiles(files);
  if (!result.ok) return { ok: false, errors: result.errors, warnings: result.warnings, fabric: null };
  const extra = EXTRA_CHECKS.flatMap((check) => check(result.fabric, files, { now }));
  const errors = extra.filter((d) => d.severity === 'error');
  const warnings = [...result.warnings, ...extra.filter((d) => d.severity === 'warning')];
  return { ok: errors.length === 0, errors, warnings, fabric: errors.length === 0 ? result.fabric : null };
}

const byLocation = (a: Diagnostic, b: Diagnostic): number => (a.file === b.file ? a.line - b.line || a.column - b.column : a.file < b.file ? -1 : 1);

/** GitHub workflow commands: properties and messages escaped as the runner expects. */
const ghProp = (s: string): string => s.replace(/%/g, '%25').replace(/\r/g, '%0D').replace(/\n/g, '%0A').replace(/:/g, '%3A').replace(/,/g, '%2C');
const ghMsg = (s: string): string => s.replace(/%/g, '%25').replace(/\r/g, '%0D').replace(/\n/g, '%0A');

export function formatDiagnostics(report: ValidationReport, format: 'text' | 'json' | 'github', prefix: string): string {
  const all = [...report.errors, ...report.warnings].sort(byLocation);
  const path = (d: Diagnostic): string => (prefix ? `${prefix}/${d.file}` : d.file);
  if (format === 'json') {
    return `${JSON.stringify({ ok: report.ok, errors: report.errors.map((d) => ({ ...d, file: path(d) })), warnings: report.warnings.map((d) => ({ ...d, file: path(d) })) }, null, 2)}\n`;
  }
  if (format === 'github') {
    return all.map((d) => `::${d.severity === 'error' ? 'error' : 'warning'} file=${ghProp(path(d))},line=${d.line},col=${d.column},title=${ghProp(`clgo validate: ${d.code}`)}::${ghMsg(`${d.message}${d.path ? ` (${d.path})` : ''}. ${d.hint}`)}`).join('\n') + (all.length ? '\n' : '');
  }
  return all.map((d) => `${path(d)}:${d.line}:${d.column}: ${d.severity}[${d.code}]: ${d.message}${d.path ? `\n    at ${d.path}` : ''}\n    hint: ${d.hint}`).join('\n') + (all.length ? '\n' : '');
}

export function summaryLine(report: ValidationReport): string {
  if (!report.ok) return `invalid: ${report.errors.length} error(s), ${report.warnings.length} warning(s)`;
  const f = report.fabric!;
  const n = (k: 'exports' | 'imports' | 'policies'): number => f.peers.reduce((s, p) => s + p[k].length, 0);
  return `valid: fabric ${f.name}, ${f.peers.length} peer(s), ${n('exports')} export(s), ${n('imports')} import(s), ${n('policies')} polic${n('policies') === 1 ? 'y' : 'ies'}${report.warnings.length ? `, ${report.warnings.length} warning(s)` : ''}`;
}

export const register: RegisterCommand = (program: Command, ctx: CliContext) => {
  program
    .command('validate')
    .description('validate a fabric repository (schema, references, ownership, certificates)')
    .argument('[dir]', 'fabric repository root', '.')
    .addOption(new Option('--format <format>', 'output format').choices(['text', 'json', 'github']).default('text'))
    .option('--strict', 'treat warnings as errors (exit 1)')
    .action(async (dir: string, opts: { format: 'text' | 'json' | 'github'; strict?: boolean }) => {
      let files: Map<string, Uint8Array>;
      try {
        files = await readFabricDir(dir);
      } catch (err) {
        if (err instanceof FabricReadError) throw new UsageError(err.message);
        throw new UsageError(`cannot read ${dir}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
      }
      const report = validateFiles(files);
      // Paths are printed relative to the working directory, so editors and GitHub can jump to them.
      const prefix = relative(process.cwd(), resolve(dir)).split('\\').join('/');
      ctx.stdout.write(formatDiagnostics(report, opts.format, prefix === '' ? '' : prefix));
      if (opts.format === 'text') ctx.stdout.write(`${summaryLine(report)}\n`);
      // Notes that server-set fields are ignored are not problems, even under --strict.
      const failed = !report.ok || (opts.strict === true && report.warnings.some((w) => w.code !== 'ignored-server-fields'));
      ctx.setExitCode(failed ? EXIT.invalid : EXIT.ok);
    });
};
