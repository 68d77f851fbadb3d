// Operator metrics under the names controller-runtime and client-go export, so existing
// dashboards and alerts for Go operators work unchanged.
import { Counter, Gauge, Histogram, type Registry } from "prom-client";

const reconcileBuckets = [
  0.005, 0.01, 0.025, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5, 0.6, 0.7, 0.8, 0.9, 1, 1.25, 1.5, 1.75, 2,
  2.5, 3, 3.5, 4, 4.5, 5, 6, 7, 8, 9, 10, 15, 20, 25, 30, 40, 50, 60,
];
// client-go: ExponentialBuckets(10e-9, 10, 12) — 10 ns up to ~1000 s.
const workqueueBuckets = Array.from({ length: 12 }, (_, i) => 1e-8 * 10 ** i);

export type ReconcileResultLabel = "success" | "error" | "requeue" | "requeue_after";

export class ControllerMetrics {
  private static readonly byRegistry = new WeakMap<Registry, ControllerMetrics>();

  readonly reconcileTotal: Counter<"controller" | "result">;
  readonly reconcileErrors: Counter<"controller">;
  readonly reconcileTime: Histogram<"controller">;
  readonly workqueueDepth: Gauge<"name">;
  readonly workqueueAdds: Counter<"name">;
  readonly workqueueRetries: Counter<"name">;
  readonly workqueueQueueDuration: Histogram<"name">;
  readonly workqueueWorkDuration: Histogram<"name">;
  readonly leaderStatus: Gauge<"name">;

  /** One instance per registry: prom-client refuses a second registration of the same name. */
  static forRegistry(registry: Registry): ControllerMetrics {
    let m = ControllerMetrics.byRegistry.get(registry);
    if (!m) {
      m = new ControllerMetrics(registry);
      ControllerMetrics.byRegistry.set(registry, m);
    }
    return m;
  }

  private constructor(registry: Registry) {
    const registers = [registry];
    this.reconcileTotal = new Counter({
      name: "controller_runtime_reconcile_total",
      help: "Total number of reconciliations per controller",
      labelNames: ["controller", "result"],
      registers,
    });
    this.reconcileErrors = new Counter({
      name: "controller_runtime_reconcile_errors_total",
      help: "Total number of reconciliation errors per controller",
      labelNames: ["controller"],
      registers,
    });
    this.reconcileTime = new Histogram({
      name: "controller_runtime_reconcile_time_seconds",
      help: "Length of time per reconciliation per controller",
      labelNames: ["controller"],
      buckets: reconcileBuckets,
      registers,
    });
    this.workqueueDepth = new Gauge({
      name: "workqueue_depth",
      help: "Current depth of workqueue",
      labelNames: ["name"],
      registers,
    });
    this.workqueueAdds = new Counter({
      name: "workqueue_adds_total",
      help: "Total number of adds handled by workqueue",
      labelNames: ["name"],
      registers,
    });
    this.workqueueRetries = new Counter({
      name: "workqueue_retries_total",
      help: "Total number of retries handled by workqueue",
      labelNames: ["name"],
      registers,
    });
    this.workqueueQueueDuration = new Histogram({
      name: "workqueue_queue_duration_seconds",
      help: "How long in seconds an item stays in workqueue before being requested",
      labelNames: ["name"],
      buckets: workqueueBuckets,
      registers,
    });
    this.workqueueWorkDuration = new Histogram({
      name: "workqueue_work_duration_seconds",
      help: "How long in seconds processing an item from workqueue takes",
      labelNames: ["name"],
      buckets: workqueueBuckets,
      registers,
    });
    this.leaderStatus = new Gauge({
      name: "leader_election_master_status",
      help: "Gauge of if the reporting system is master of the relevant lease, 0 indicates backup, 1 indicates master",
      labelNames: ["name"],
      registers,
    });
  }
}
