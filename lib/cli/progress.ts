// A one-line progress bar on stderr (redrawn in place on a TTY, a line per update otherwise).
export class ProgressBar {
  private readonly started = Date.now();
  private lastDraw = 0;
  constructor(
    private readonly total: number,
    private readonly label: string,
    private readonly stream: NodeJS.WritableStream = process.stderr,
  ) {}

  update(done: number, note = ''): void {
    const now = Date.now();
    if (done < this.total && now - this.lastDraw < 200) return;
    this.lastDraw = now;
    const width = 28;
    const filled = Math.round((width * done) / Math.max(1, this.total));
    const elapsed = (now - this.started) / 1000;
    const eta = done > 0 ? (elapsed * (this.total - done)) / done : 0;
    const line = `${this.label} [${'#'.repeat(filled)}${'-'.repeat(width - filled)}] ${done}/${this.total} ${note} eta ${eta.toFixed(0)}s`;
    const tty = (this.stream as NodeJS.WriteStream).isTTY;
    this.stream.write(tty ? `\r${line}\x1b[K` : `${line}\n`);
    if (done >= this.total && tty) this.stream.write('\n');
  }
}
