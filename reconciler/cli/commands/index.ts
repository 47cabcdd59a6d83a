// Every `clgo` subcommand registers itself here: one module per command (or command group).
import type { RegisterCommand } from '../context.ts';
import { register as dataplane } from './dataplane.ts';
import { register as demo } from './demo.ts';
import { register as pki } from './pki.ts';
import { register as plan } from './plan.ts';
import { register as policy } from './policy.ts';
import { register as run } from './run.ts';
import { register as status } from './status.ts';
import { register as validate } from './validate.ts';

export const commands: RegisterCommand[] = [dataplane, demo, pki, plan, policy, run, status, validate];
