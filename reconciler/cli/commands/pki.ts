// `clgo create fabric`, `clgo create peer`, `clgo sign`, `clgo rotate peer`: the fabric PKI steps.
// Private keys are written only to local files with mode 0600, never inside the fabric repository
// directory and never to stdout/stderr.
import { Option, type Command } from 'commander';
import { existsSync, mkdirSync, readFileSync, realpathSync, writeFileSync } from 'node:fs';
import { basename, dirname, isAbsolute, join, relative, resolve } from 'node:path';
import { X509Certificate } from 'node:crypto';
import { UsageError, type CliContext, type RegisterCommand } from '../context.ts';
import {
  createCertificateAuthority,
  createPeerKey,
  DEFAULT_KEY_TYPE,
  DEFAULT_PEER_LIFETIME_DAYS,
  fingerprintSha256,
  inspectCsr,
  KEY_TYPES,
  signPeerCsr,
  type KeyType,
} from '../../pki/index.ts';
import { addCaToFabricYaml, readFabricYaml, renderFabricYaml, renderPeerYamlStub } from '../../pki/repo.ts';
import { PEER_NAME } from '../../../schema/kinds.ts';

const FABRIC_NAME = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;

function keyTypeOption(): Option {
  return new Option('--key-type <type>', 'key type (ed25519 only for Node data planes: Envoy does not accept it)').choices(KEY_TYPES).default(DEFAULT_KEY_TYPE);
}

function read(path: string, what: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch (err) {
    throw new UsageError(`cannot read ${what} ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
}

/** `p` with symlinks resolved: its longest existing ancestor through realpath, the rest appended. */
function realPath(p: string): string {
  const rest: string[] = [];
  let cur = resolve(p);
  for (;;) {
    try {
      return join(realpathSync(cur), ...rest.reverse());
    } catch {
      const parent = dirname(cur);
      if (parent === cur) return resolve(p);
      rest.push(basename(cur));
      cur = parent;
    }
  }
}

/** Whether `path` is `dir` or below it, by the written paths or by the real ones (a symlinked directory on either side). */
function isInside(path: string, dir: string): boolean {
  const below = (p: string, d: string): boolean => {
    const rel = relative(d, p);
    return rel === '' || (!rel.startsWith('..') && !isAbsolute(rel));
  };
  return below(resolve(path), resolve(dir)) || below(realPath(path), realPath(dir));
}

/** Writes a private key: mode 0600, never over an existing file, never inside the fabric repository. */
function writePrivateKey(path: string, pem: string, fabricDir: string): void {
  if (isInside(path, fabricDir)) throw new UsageError(`refusing to write a private key inside the fabric repository directory ${fabricDir}: choose a path outside it`);
  try {
    writeFileSync(path, pem, { mode: 0o600, flag: 'wx' });
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new UsageError(code === 'EEXIST' ? `${path} already exists: refusing to overwrite a private key` : `cannot write ${path}: ${code ?? (err as Error).message}`);
  }
}

function write(path: string, text: string, opts: { overwrite: boolean }): void {
  try {
    writeFileSync(path, text, { flag: opts.overwrite ? 'w' : 'wx' });
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new UsageError(code === 'EEXIST' ? `${path} already exists (use --force to replace it)` : `cannot write ${path}: ${code ?? (err as Error).message}`);
  }
}

function loadFabric(dir: string): { name: string; caCertificates: string[] } {
  try {
    return readFabricYaml(read(join(dir, 'fabric.yaml'), 'fabric'));
  } catch (err) {
    if (err instanceof UsageError) throw err;
    throw new UsageError((err as Error).message);
  }
}

function positiveDays(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n <= 0 || n > 3650) throw new UsageError(`--days must be a whole number of days in 1..3650, got ${value}`);
  return n;
}

async function newPeerKey(ctx: CliContext, name: string, opts: { fabric: string; keyOut: string; csrOut: string; keyType: KeyType }, verb: 'create' | 'rotate'): Promise<void> {
  if (!PEER_NAME.test(name)) throw new UsageError(`peer name ${JSON.stringify(name)} must be a DNS-1123 subdomain of at most 63 characters (e.g. cluster17.us-east)`);
  const fabric = loadFabric(opts.fabric);
  if (isInside(opts.csrOut, opts.fabric)) throw new UsageError('write the CSR outside the fabric repository: only the signed peer.pem is committed');
  const { privateKeyPem, csrPem } = await createPeerKey({ peerName: name, fabricName: fabric.name, keyType: opts.keyType });
  writePrivateKey(opts.keyOut, privateKeyPem, opts.fabric);
  write(opts.csrOut, csrPem, { overwrite: false });
  ctx.stdout.write(
    `${verb === 'create' ? 'created' : 'rotating'} ${opts.keyType} key for peer ${name} of fabric ${fabric.name}\n` +
      `  private key: ${opts.keyOut} (mode 0600; keep it on this peer)\n` +
      `  CSR:         ${opts.csrOut}\n` +
      `next: send the CSR to the fabric admin, who runs\n  clgo sign ${opts.csrOut} --ca <ca.crt> --ca-key <ca.key> --fabric <fabric-repo>\n` +
      (verb === 'rotate' ? `the current certificate stays valid until the new peers/${name}/peer.pem is merged; then switch ${name} to ${opts.keyOut}\n` : ''),
  );
}

export const register: RegisterCommand = (program, ctx) => {
  const create = program.command('create').description('create a fabric (CA) or a peer key + CSR');

  create
    .command('fabric')
    .description('create the fabric CA and a fabric.yaml holding its certificate')
    .requiredOption('--name <name>', 'fabric name (DNS-1123 label)')
    .option('--out <dir>', 'fabric repository directory (default: ./<name>)')
    .option('--ca-key-out <path>', 'where to write the CA private key, outside the repository (default: ./<name>-ca.key)')
    .option('--ca-cert-out <path>', 'where to write a copy of the CA certificate for `clgo sign` (default: ./<name>-ca.crt)')
    .option('--days <n>', 'CA lifetime in days', '1825')
    .option('--force', 'replace an existing fabric.yaml')
    .addOption(keyTypeOption())
    .action(async (opts: { name: string; out?: string; caKeyOut?: string; caCertOut?: string; days: string; force?: boolean; keyType: KeyType }) => {
      if (!FABRIC_NAME.test(opts.name)) throw new UsageError(`fabric name ${JSON.stringify(opts.name)} must be a DNS-1123 label`);
      const out = opts.out ?? opts.name;
      const keyOut = opts.caKeyOut ?? `${opts.name}-ca.key`;
      const certOut = opts.caCertOut ?? `${opts.name}-ca.crt`;
      if (isInside(keyOut, out)) throw new UsageError(`refusing to write the CA key inside the fabric repository directory ${out}: choose --ca-key-out outside it`);
      if (existsSync(keyOut)) throw new UsageError(`${keyOut} already exists: refusing to overwrite a CA key`);
      if (!opts.force && existsSync(join(out, 'fabric.yaml'))) throw new UsageError(`${join(out, 'fabric.yaml')} already exists (use --force to replace it)`);
      const ca = await createCertificateAuthority({ fabricName: opts.name, keyType: opts.keyType, lifetimeDays: positiveDays(opts.days) });
      mkdirSync(out, { recursive: true });
      writePrivateKey(keyOut, ca.privateKeyPem, out);
      write(certOut, ca.certificatePem, { overwrite: Boolean(opts.force) });
      write(join(out, 'fabric.yaml'), renderFabricYaml(opts.name, [ca.certificatePem]), { overwrite: Boolean(opts.force) });
      ctx.stdout.write(
        `created fabric ${opts.name} (${opts.keyType} CA, sha256 ${fingerprintSha256(ca.certificatePem)})\n` +
          `  ${join(out, 'fabric.yaml')}\n  CA certificate: ${certOut}\n  CA private key: ${keyOut} (mode 0600; keep it offline, never commit it)\n` +
          `next: on each peer run  clgo create peer <name> --fabric ${out}\n`,
      );
    });

  create
    .command('peer <name>')
    .description("generate a peer's private key (locally, mode 0600) and a CSR for the fabric admin")
    .requiredOption('--fabric <dir>', 'fabric repository directory (reads fabric.yaml)')
    .option('--key-out <path>', 'private key path, outside the repository (default: ./<name>.key)')
    .option('--csr-out <path>', 'CSR path (default: ./<name>.csr)')
    .addOption(keyTypeOption())
    .action(async (name: string, opts: { fabric: string; keyOut?: string; csrOut?: string; keyType: KeyType }) => {
      await newPeerKey(ctx, name, { fabric: opts.fabric, keyOut: opts.keyOut ?? `${name}.key`, csrOut: opts.csrOut ?? `${name}.csr`, keyType: opts.keyType }, 'create');
    });

  program
    .command('sign <csr>')
    .description('(fabric admin) sign a peer CSR: writes peers/<name>/peer.pem and, if absent, a peer.yaml stub')
    .requiredOption('--ca <cert>', 'CA certificate (PEM); must be in fabric.yaml spec.caCertificates')
    .requiredOption('--ca-key <key>', 'CA private key (PEM)')
    .requiredOption('--fabric <dir>', 'fabric repository directory')
    .option('--days <n>', 'certificate lifetime in days', String(DEFAULT_PEER_LIFETIME_DAYS))
    .action(async (csrPath: string, opts: { ca: string; caKey: string; fabric: string; days: string }) => {
      const fabric = loadFabric(opts.fabric);
      const caPem = read(opts.ca, 'CA certificate');
      const caKeyPem = read(opts.caKey, 'CA key');
      const csrPem = read(csrPath, 'CSR');
      const days = positiveDays(opts.days);
      let caFp: string;
      try {
        caFp = fingerprintSha256(caPem);
      } catch (err) {
        throw new UsageError(`${opts.ca}: ${(err as Error).message}`);
      }
      if (!fabric.caCertificates.some((c) => fingerprintSha256(c) === caFp)) {
        throw new UsageError(`${opts.ca} is not in ${join(opts.fabric, 'fabric.yaml')} spec.caCertificates: peers would reject certificates it signs`);
      }
      let certificatePem: string;
      let peerName: string;
      try {
        peerName = (await inspectCsr(csrPem)).peerName;
        certificatePem = await signPeerCsr({ csrPem, ca: { certificatePem: caPem, privateKeyPem: caKeyPem }, fabricName: fabric.name, lifetimeDays: days });
      } catch (err) {
        throw new UsageError(`${csrPath}: ${(err as Error).message}`);
      }
      const peerDir = join(opts.fabric, 'peers', peerName);
      mkdirSync(peerDir, { recursive: true });
      const pemPath = join(peerDir, 'peer.pem');
      const previous = existsSync(pemPath) ? readFileSync(pemPath, 'utf8') : null;
      write(pemPath, certificatePem, { overwrite: true });
      const yamlPath = join(peerDir, 'peer.yaml');
      const stub = !existsSync(yamlPath);
      if (stub) write(yamlPath, renderPeerYamlStub(peerName), { overwrite: false });
      const cert = new X509Certificate(certificatePem);
      ctx.stdout.write(
        `signed peer ${peerName} of fabric ${fabric.name}\n  ${pemPath}  serial ${cert.serialNumber.toLowerCase()}  sha256 ${fingerprintSha256(certificatePem)}  valid until ${new Date(cert.validTo).toISOString()}\n` +
          (stub ? `  ${yamlPath}  (stub: EDIT spec.gateways to ${peerName}'s real gateway address)\n` : '') +
          (previous !== null
            ? `  replaced the previous certificate (sha256 ${safeFp(previous)}): it stops being accepted when this change is merged; to cut it off for good add that fingerprint to fabric.yaml spec.revoked.fingerprints\n`
            : '') +
          'next: commit and open a pull request\n',
      );
    });

  const rotate = program.command('rotate').description('rotate keys');
  rotate
    .command('peer <name>')
    .description('new key + CSR for a peer; the current certificate keeps working until the new peer.pem is merged')
    .requiredOption('--fabric <dir>', 'fabric repository directory')
    .option('--key-out <path>', 'new private key path (default: ./<name>.next.key)')
    .option('--csr-out <path>', 'CSR path (default: ./<name>.next.csr)')
    .addOption(keyTypeOption())
    .action(async (name: string, opts: { fabric: string; keyOut?: string; csrOut?: string; keyType: KeyType }) => {
      if (!existsSync(join(opts.fabric, 'peers', name, 'peer.pem'))) {
        throw new UsageError(`peer ${name} has no peers/${name}/peer.pem in ${opts.fabric}: use \`clgo create peer ${name}\``);
      }
      await newPeerKey(ctx, name, { fabric: opts.fabric, keyOut: opts.keyOut ?? `${name}.next.key`, csrOut: opts.csrOut ?? `${name}.next.csr`, keyType: opts.keyType }, 'rotate');
    });
  registerRotateCa(rotate, ctx);
};

function registerRotateCa(rotate: Command, ctx: CliContext): void {
  rotate
    .command('ca')
    .description('start a CA rotation: a new CA key + certificate, appended to fabric.yaml next to the current CA')
    .requiredOption('--fabric <dir>', 'fabric repository directory')
    .option('--ca-key-out <path>', 'new CA private key, outside the repository (default: ./<fabric>-ca.next.key)')
    .option('--ca-cert-out <path>', 'copy of the new CA certificate (default: ./<fabric>-ca.next.crt)')
    .option('--days <n>', 'CA lifetime in days', '1825')
    .addOption(keyTypeOption())
    .action(async (opts: { fabric: string; caKeyOut?: string; caCertOut?: string; days: string; keyType: KeyType }) => {
      const fabricPath = join(opts.fabric, 'fabric.yaml');
      const text = read(fabricPath, 'fabric');
      const fabric = loadFabric(opts.fabric);
      const keyOut = opts.caKeyOut ?? `${fabric.name}-ca.next.key`;
      const certOut = opts.caCertOut ?? `${fabric.name}-ca.next.crt`;
      if (isInside(keyOut, opts.fabric)) throw new UsageError(`refusing to write the CA key inside the fabric repository directory ${opts.fabric}`);
      if (existsSync(keyOut)) throw new UsageError(`${keyOut} already exists: refusing to overwrite a CA key`);
      const ca = await createCertificateAuthority({ fabricName: fabric.name, keyType: opts.keyType, lifetimeDays: positiveDays(opts.days) });
      const updated = addCaToFabricYaml(text, ca.certificatePem);
      writePrivateKey(keyOut, ca.privateKeyPem, opts.fabric);
      write(certOut, ca.certificatePem, { overwrite: false });
      write(fabricPath, updated, { overwrite: true });
      ctx.stdout.write(
        `added a new ${opts.keyType} CA to ${fabricPath} (now ${fabric.caCertificates.length + 1} CAs; sha256 ${fingerprintSha256(ca.certificatePem)})\n` +
          `  CA certificate: ${certOut}\n  CA private key: ${keyOut} (mode 0600; keep it offline)\n` +
          'next: merge this, re-sign every peer with the new CA (clgo sign ... --ca ' + certOut + '), then remove the old CA from spec.caCertificates\n',
      );
    });
}

function safeFp(pem: string): string {
  try {
    return fingerprintSha256(pem);
  } catch {
    return 'unparsable';
  }
}
