/**
 * Stopping a long-running command cleanly on Ctrl-C (SIGINT) or SIGTERM.
 */

/** A wait for the first stop signal; see {@link stopSignal}. */
export interface StopSignal {
  /** Resolves on the first SIGINT or SIGTERM since {@link stopSignal} was called. */
  readonly stopped: Promise<void>;
  /** Removes the handlers (the signals' default action, ending the process, applies again). */
  dispose(): void;
}

/**
 * Catches SIGINT and SIGTERM from now on. Call it before opening anything: a signal that arrives
 * while a database opens is then remembered and handled once the command is ready to shut down,
 * instead of ending the process with the database open (which costs a recovery at the next open).
 */
export function stopSignal(): StopSignal {
  let resolve!: () => void;
  const stopped = new Promise<void>((r) => {
    resolve = r;
  });
  const onSignal = () => {
    dispose();
    resolve();
  };
  const dispose = () => {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  return { stopped, dispose };
}
