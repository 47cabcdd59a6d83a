// Access policy: attribute vocabulary, compiled decision point, explanations. Pure, no I/O.
export * from './attributes.ts';
export * from './engine.ts';
