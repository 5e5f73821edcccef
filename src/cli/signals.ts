/**
 * Stopping a long-running command cleanly on Ctrl-C (SIGINT), SIGTERM, or SIGHUP (its terminal
 * closed: it ended the process with the database open, which costs a recovery at the next open).
 */

/** A wait for the first stop signal; see {@link stopSignal}. */
export interface StopSignal {
  /** Resolves on the first SIGINT, SIGTERM or SIGHUP since {@link stopSignal} was called. */
  readonly stopped: Promise<void>;
  /** Removes the handlers (the signals' default action, ending the process, applies again). */
  dispose(): void;
}

/**
 * Catches SIGINT, SIGTERM and SIGHUP from now on. Call it before opening anything: a signal that arrives
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
    for (const signal of SIGNALS) process.off(signal, onSignal);
  };
  for (const signal of SIGNALS) process.on(signal, onSignal);
  return { stopped, dispose };
}

/** The signals that stop a command cleanly. */
const SIGNALS = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const;
