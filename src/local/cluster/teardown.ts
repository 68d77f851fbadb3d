// Ordered teardown. Processes start in whatever order is fastest (the Gitaly nodes while
// PostgreSQL comes up), but stop in one fixed order of stages: the gateway, the Praefects,
// the Gitaly nodes, PostgreSQL, then the state dir's lock. A stop may begin while the cluster
// is still starting (Ctrl-C during start): whatever starts after that is stopped as soon as
// it is registered.

export const STOP_STAGES = ["gateway", "praefect", "gitaly", "postgres", "lock"] as const;
export type StopStage = (typeof STOP_STAGES)[number];

interface Step {
  stage: StopStage;
  what: string;
  stop: () => Promise<unknown>;
}

export class Teardown {
  private readonly steps: Step[] = [];
  private running: Promise<void> | undefined;
  private readonly report: (what: string, err: unknown) => void;

  constructor(report: (what: string, err: unknown) => void) {
    this.report = report;
  }

  get started(): boolean {
    return this.running !== undefined;
  }

  /** Registers a step; runs it at once (after the running ones) when the teardown has begun. */
  push(stage: StopStage, what: string, stop: () => Promise<unknown>): void {
    const step = { stage, what, stop };
    if (this.running) {
      this.running = this.running.then(() => this.runStep(step));
      return;
    }
    this.steps.push(step);
  }

  /**
   * Runs the steps stage by stage (those of one stage at once), and the steps registered
   * meanwhile; calling it again joins the same run.
   */
  async run(): Promise<void> {
    this.running ??= (async () => {
      const steps = this.steps.splice(0);
      for (const stage of STOP_STAGES) {
        await Promise.all(steps.filter((s) => s.stage === stage).map((s) => this.runStep(s)));
      }
    })();
    let current: Promise<void>;
    do {
      current = this.running;
      await current;
    } while (current !== this.running);
  }

  private async runStep(step: Step): Promise<void> {
    try {
      await step.stop();
    } catch (err) {
      this.report(step.what, err);
    }
  }
}
