import cliProgress from 'cli-progress';

/** Where a stage's log lines and progress go. */
export interface Reporter {
  log(line: string): void;
  stage(name: string, total: number): { tick(done: number, info?: Record<string, string | number>): void; end(): void };
}

export interface Io {
  out: (text: string) => void;
  err: (text: string) => void;
}

/** Progress bars on a terminal, plain lines (about ten per stage) otherwise. */
export function reporter(io: Io, quiet: boolean, prefix: string): Reporter {
  const tty = !quiet && process.stderr.isTTY;
  return {
    log: (line) => {
      if (!quiet) io.err(`${prefix}${line}`);
    },
    stage(name, total) {
      const started = performance.now();
      if (tty) {
        const bar = new cliProgress.SingleBar(
          {
            format: `${prefix}${name.padEnd(6)} [{bar}] {value}/{total} | {info} | ETA {eta_formatted}`,
            hideCursor: true,
            clearOnComplete: false,
            stream: process.stderr,
          },
          cliProgress.Presets.shades_classic,
        );
        bar.start(total, 0, { info: '' });
        return {
          tick: (done, info) =>
            bar.update(done, {
              info: Object.entries(info ?? {})
                .map(([k, v]) => `${k} ${v}`)
                .join(' '),
            }),
          end: () => bar.stop(),
        };
      }
      let next = 0;
      return {
        tick(done, info) {
          if (quiet || done < next) return;
          next = done + Math.max(1, Math.ceil(total / 10));
          const eta = ((performance.now() - started) / 1000 / done) * (total - done);
          io.err(
            `${prefix}${name} ${done}/${total}${
              info
                ? ' ' +
                  Object.entries(info)
                    .map(([k, v]) => `${k} ${v}`)
                    .join(' ')
                : ''
            } eta ${eta.toFixed(0)}s`,
          );
        },
        end() {
          if (!quiet) io.err(`${prefix}${name} done in ${((performance.now() - started) / 1000).toFixed(1)} s`);
        },
      };
    },
  };
}
