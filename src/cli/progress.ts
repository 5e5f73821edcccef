/**
 * Progress of long work (rebuilding a view, an initial copy from a peer): a `cli-progress` bar on
 * a terminal, and a few plain lines (start, every quarter, end) when the output is a pipe or a
 * file, where a redrawn bar would be noise.
 */
import cliProgress from 'cli-progress';

/** One piece of long work being reported. */
export interface Progress {
  /** `done` of `total` units are done; the total may change (a copy learns of more events). */
  update(done: number, total: number): void;
  /** The work ended (finished or not): the bar is removed, or a last line printed. */
  stop(): void;
}

/** Reports progress of the work called `label` (e.g. "rebuilding the view") on `stream`. */
export function progress(label: string, stream: NodeJS.WriteStream = process.stderr): Progress {
  return stream.isTTY === true ? terminalBar(label, stream) : plainLines(label, stream);
}

function terminalBar(label: string, stream: NodeJS.WriteStream): Progress {
  const bar = new cliProgress.SingleBar(
    { format: `${label} [{bar}] {percentage}% {value}/{total}`, stream, hideCursor: true, clearOnComplete: true },
    cliProgress.Presets.shades_classic,
  );
  let started = false;
  return {
    update(done, total) {
      if (!started) {
        bar.start(total, done);
        started = true;
        return;
      }
      bar.setTotal(total);
      bar.update(done);
    },
    stop() {
      if (started) bar.stop();
      started = false;
    },
  };
}

function plainLines(label: string, stream: NodeJS.WriteStream): Progress {
  let quarter = -1;
  let last: [number, number] | undefined;
  return {
    update(done, total) {
      last = [done, total];
      const reached = total <= 0 ? 4 : Math.min(4, Math.floor((done / total) * 4));
      if (reached > quarter) {
        quarter = reached;
        stream.write(`${label}: ${done}/${total}\n`);
      }
    },
    stop() {
      if (last !== undefined && quarter < 4) stream.write(`${label}: ${last[0]}/${last[1]}\n`);
      last = undefined;
      quarter = -1;
    },
  };
}

/**
 * Progress of opening a database, for `Database.open`'s `onProgress`: one report per phase
 * (converting an old event log, rebuilding the view), each from its start. `stop` ends the last.
 */
export function openingProgress(stream: NodeJS.WriteStream = process.stderr): {
  onProgress: (report: { phase: 'rebuild' | 'convert-log'; done: number; total: number }) => void;
  stop(): void;
} {
  let shown: { phase: string; progress: Progress } | undefined;
  return {
    onProgress({ phase, done, total }) {
      if (shown?.phase !== phase) {
        shown?.progress.stop();
        shown = { phase, progress: progress(phase === 'rebuild' ? 'rebuilding the view' : 'converting the event log', stream) };
      }
      shown.progress.update(done, total);
    },
    stop: () => shown?.progress.stop(),
  };
}
