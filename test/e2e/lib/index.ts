// e2e harness: one import for tests.
export * from './proc.js';
export * from './wait.js';
export * from './cleanup.js';
export * from './engine.js';
export * from './tsnet.js';
export * from './snapshot.js';
export * from './containers.js';
