/**
 * How durably the driver's endpoint records are written. CreateEndpoint's, Join's and Leave's
 * records, on every container start and stop, are written without waiting for an fsync
 * (store/store.ts, durable: false). Safe because what they describe dies with the machine:
 * - tsnet killed (kill -9, a crash of tsnet alone): the write is in the kernel's page cache, so
 *   the next start reads it as if it had been synced (test/unit/file-store-processes.test.ts).
 * - power loss or kernel crash: every veth and sandbox is gone as well. The record may read as
 *   before the write (absent, not joined, still joined) or be an empty file the store
 *   quarantines: an endpoint Docker cleans up after its own restart, whose address stays taken
 *   (its lease was durable), released by garbage collection once Docker no longer explains it
 *   (test/unit/endpoint-durability.test.ts).
 * Everything else stays durable: removals (one that came undone would bring back what Docker
 * considers gone), published ports, networks, and IPAM's claims.
 */
export const DIES_WITH_THE_MACHINE = { durable: false } as const
