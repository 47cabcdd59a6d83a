// Bounds on what a load reads from a repository (counts and sizes, before any parse).
export interface LoadLimits {
  maxFiles: number;
  maxFileBytes: number;
  maxTotalBytes: number;
  maxDocumentsPerFile: number;
}

export const DEFAULT_LIMITS: LoadLimits = {
  maxFiles: 200_000,
  maxFileBytes: 4 * 1024 * 1024,
  maxTotalBytes: 512 * 1024 * 1024,
  maxDocumentsPerFile: 10_000,
};
