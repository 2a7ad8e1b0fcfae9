/**
 * Lets the event loop run: timers, I/O and other requests get their turn. Binding a free port
 * completes without one (its callbacks run as next-ticks), so a loop of binds would otherwise
 * hold the whole daemon until it ends.
 */
export const yieldToLoop = (): Promise<void> => new Promise((resolve) => setImmediate(resolve))
