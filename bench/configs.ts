// Moved to lib/bench/configs.ts (the bench-kernels command ships with the library).
export * from '../lib/bench/configs';
