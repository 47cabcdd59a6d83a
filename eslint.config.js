// Lint with typescript-eslint's recommended rules; `any` is an error at module boundaries.
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['.scratch/**', 'node_modules/**', 'dist/**', 'dist.next/**', 'dist.old/**', 'schema/json/**', 'test/tmp/**', 'bench-results.json', '**/*.d.ts'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    languageOptions: { globals: { process: 'readonly', console: 'readonly', Buffer: 'readonly', setTimeout: 'readonly', clearTimeout: 'readonly', setInterval: 'readonly', clearInterval: 'readonly', setImmediate: 'readonly', URL: 'readonly', AbortController: 'readonly', AbortSignal: 'readonly', TextEncoder: 'readonly', TextDecoder: 'readonly', performance: 'readonly', fetch: 'readonly', queueMicrotask: 'readonly', structuredClone: 'readonly' } },
    rules: {
      '@typescript-eslint/no-explicit-any': 'error',
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_', caughtErrors: 'none' }],
      'no-constant-condition': ['error', { checkLoops: false }],
    },
  },
  // The layering (README "Layout", ../shared/DESIGN.md): protocol/ is the wire contract both sides
  // share and imports neither; the Node data plane runs as a process of its own and never imports the
  // reconciler; schema/ is a pure core under both. Tests may cross (they assemble whole systems).
  ...layer('protocol/**/*.ts', ['reconciler', 'dataplane', 'schema'], 'protocol/ is the shared wire contract: it imports neither side'),
  ...layer('dataplane/**/*.ts', ['reconciler'], 'the Node data plane must not import the reconciler: share through protocol/'),
  ...layer('schema/**/*.ts', ['reconciler', 'dataplane'], 'schema/ is a pure core: it imports neither the reconciler nor the data plane'),
);

/** An ESLint block forbidding files matching `files` (tests excepted) to import from the given top-level folders. */
function layer(files, forbidden, message) {
  const group = forbidden.flatMap((dir) => [`../${dir}/*`, `../../${dir}/*`, `../../../${dir}/*`, `../${dir}/**`, `../../${dir}/**`, `../../../${dir}/**`]);
  return [{ files: [files], ignores: ['**/*.test.ts'], rules: { 'no-restricted-imports': ['error', { patterns: [{ group, message }] }] } }];
}
