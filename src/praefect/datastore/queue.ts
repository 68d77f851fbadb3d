// The replication queue in PostgreSQL, with upstream Praefect's semantics so several Praefects
// share one queue without long transactions:
// - replication_queue holds the jobs (JSON), their state and remaining attempts;
// - replication_queue_lock has one row per "<virtual storage>|<target storage>|<relative path>",
//   acquired while a worker processes jobs for that replica, so one replica is worked on by one
//   worker at a time;
// - replication_queue_job_lock ties each in-progress job to its lock, with a heartbeat time that
//   lets other Praefects detect jobs abandoned by a dead one.
import { type Queryable, toDateOrNull, toNumber } from "./db.js";
import { ReplicationEventExistsError } from "./errors.js";

export type JobState = "ready" | "in_progress" | "completed" | "cancelled" | "failed" | "dead";

/** `update` replicates target from source; `delete` and `delete_replica` remove the target's replica. */
export type ChangeType = "update" | "create" | "delete" | "delete_replica" | "rename";

/** The job as stored in replication_queue.job (upstream's JSON field names). */
export interface ReplicationJob {
  /** 0 when the job concerns no tracked repository (an orphaned replica). */
  repositoryId: number;
  replicaPath: string;
  change: ChangeType;
  relativePath: string;
  targetNodeStorage: string;
  /** Empty for jobs without a source (deletions). */
  sourceNodeStorage: string;
  virtualStorage: string;
  params: Record<string, unknown> | null;
}

export interface ReplicationEvent {
  id: number;
  state: JobState;
  /** Attempts left; dequeuing takes one (except for delete_replica, which retries forever). */
  attempt: number;
  lockId: string;
  createdAt: Date;
  updatedAt: Date | null;
  job: ReplicationJob;
  /** Holds correlation_id. */
  meta: Record<string, unknown> | null;
}

/** The meta key carrying the correlation ID of the request that caused the job. */
export const CORRELATION_ID_KEY = "correlation_id";

/** The job JSON with upstream's field names, as stored in replication_queue.job. */
export interface StoredReplicationJob {
  repository_id?: number | string;
  replica_path?: string;
  change?: string;
  relative_path?: string;
  target_node_storage?: string;
  source_node_storage?: string | null;
  virtual_storage?: string;
  params?: Record<string, unknown> | null;
}

export function jobToJson(job: ReplicationJob): StoredReplicationJob {
  return {
    repository_id: job.repositoryId,
    replica_path: job.replicaPath,
    change: job.change,
    relative_path: job.relativePath,
    target_node_storage: job.targetNodeStorage,
    source_node_storage: job.sourceNodeStorage,
    virtual_storage: job.virtualStorage,
    params: job.params,
  };
}

export function jobFromJson(stored: StoredReplicationJob): ReplicationJob {
  return {
    repositoryId: stored.repository_id === undefined ? 0 : toNumber(stored.repository_id),
    replicaPath: stored.replica_path ?? "",
    change: (stored.change ?? "") as ChangeType,
    relativePath: stored.relative_path ?? "",
    targetNodeStorage: stored.target_node_storage ?? "",
    sourceNodeStorage: stored.source_node_storage ?? "",
    virtualStorage: stored.virtual_storage ?? "",
    params: stored.params ?? null,
  };
}

/** The lock a job takes: `<virtual storage>|<target storage>|<relative path>`. */
export function lockIdOf(job: Pick<ReplicationJob, "virtualStorage" | "targetNodeStorage" | "relativePath">): string {
  return `${job.virtualStorage}|${job.targetNodeStorage}|${job.relativePath}`;
}

/** The state a failed attempt leads to: retried while attempts remain, dead after the last. */
export function failureState(event: Pick<ReplicationEvent, "attempt">): "failed" | "dead" {
  return event.attempt <= 0 ? "dead" : "failed";
}

interface EventRow {
  id: string;
  state: JobState;
  created_at: Date;
  updated_at: Date | null;
  lock_id: string;
  attempt: number;
  job: StoredReplicationJob;
  meta: Record<string, unknown> | null;
}

function toEvent(row: EventRow): ReplicationEvent {
  return {
    id: toNumber(row.id),
    state: row.state,
    attempt: row.attempt,
    lockId: row.lock_id,
    createdAt: row.created_at,
    updatedAt: toDateOrNull(row.updated_at),
    job: jobFromJson(row.job),
    meta: row.meta,
  };
}

/**
 * The timestamps are `timestamp without time zone` holding UTC; converting them in SQL keeps the
 * client's time zone out of it.
 */
function eventColumns(prefix = ""): string {
  return `${prefix}id, ${prefix}state, ${prefix}created_at AT TIME ZONE 'UTC' AS created_at,
          ${prefix}updated_at AT TIME ZONE 'UTC' AS updated_at, ${prefix}lock_id, ${prefix}attempt,
          ${prefix}job, ${prefix}meta`;
}

export interface QueueDepth {
  virtualStorage: string;
  targetStorage: string;
  state: JobState;
  count: number;
}

export interface HeartbeatHandle {
  /** Stops refreshing; resolves once any refresh in flight has finished. */
  stop(): Promise<void>;
}

export class ReplicationQueue {
  constructor(private readonly db: Queryable) {}

  /**
   * Adds a job in the `ready` state (3 attempts) and makes sure its lock row exists. An identical
   * job (same virtual storage, path, target and change) still waiting makes this one redundant:
   * ReplicationEventExistsError, which callers normally ignore.
   */
  async enqueue(job: ReplicationJob, meta: Record<string, unknown> | null = null): Promise<ReplicationEvent> {
    const { rows } = await this.db.query<EventRow>(
      `WITH lock AS (
         INSERT INTO replication_queue_lock (id) VALUES ($1)
         ON CONFLICT (id) DO UPDATE SET id = EXCLUDED.id
         RETURNING id
       )
       INSERT INTO replication_queue (lock_id, job, meta)
       SELECT lock.id, $2::jsonb, $3::jsonb
       FROM lock
       WHERE NOT EXISTS (
         SELECT FROM replication_queue AS waiting
         WHERE waiting.state = 'ready'
           AND waiting.job ->> 'virtual_storage' = $2::jsonb ->> 'virtual_storage'
           AND waiting.job ->> 'relative_path' = $2::jsonb ->> 'relative_path'
           AND waiting.job ->> 'target_node_storage' = $2::jsonb ->> 'target_node_storage'
           AND waiting.job ->> 'change' = $2::jsonb ->> 'change'
       )
       RETURNING ${eventColumns()}`,
      [lockIdOf(job), JSON.stringify(jobToJson(job)), meta === null ? null : JSON.stringify(meta)],
    );
    const row = rows[0];
    if (!row) {
      throw new ReplicationEventExistsError("ready", job.virtualStorage, job.targetNodeStorage, job.relativePath);
    }
    return toEvent(row);
  }

  /** `enqueue`, answering null instead of throwing when an identical job is already waiting. */
  async enqueueUnlessWaiting(
    job: ReplicationJob,
    meta: Record<string, unknown> | null = null,
  ): Promise<ReplicationEvent | null> {
    try {
      return await this.enqueue(job, meta);
    } catch (err) {
      if (err instanceof ReplicationEventExistsError) return null;
      throw err;
    }
  }

  /**
   * Takes up to `count` jobs targeting `targetStorage` of `virtualStorage`, oldest first: ready or
   * failed jobs whose replica lock is free, only the oldest per (lock, change). They move to
   * in_progress with one attempt less (delete_replica keeps its attempts so a half-done deletion is
   * always finished), get a job lock, and their replica locks become acquired. Rows another
   * dequeuer is taking are skipped, so concurrent dequeuers never get the same job.
   */
  async dequeue(virtualStorage: string, targetStorage: string, count: number): Promise<ReplicationEvent[]> {
    const { rows } = await this.db.query<EventRow>(
      `WITH candidates AS (
         SELECT DISTINCT
                first_value(id) OVER (PARTITION BY lock_id, job ->> 'change' ORDER BY created_at) AS id,
                lock_id, created_at
         FROM (
           SELECT queue.id, queue.lock_id, queue.job, queue.created_at
           FROM replication_queue AS queue
           JOIN replication_queue_lock AS lock ON lock.id = queue.lock_id
           WHERE queue.state IN ('ready', 'failed')
             AND NOT EXISTS (SELECT FROM replication_queue_job_lock AS held WHERE held.lock_id = queue.lock_id)
             AND lock.id LIKE $1 || '|' || $2 || '|%'
             AND NOT lock.acquired
           FOR UPDATE SKIP LOCKED
         ) AS free
         ORDER BY created_at
         LIMIT $3
       ),
       started AS (
         UPDATE replication_queue AS queue
         SET attempt = CASE WHEN queue.job ->> 'change' = 'delete_replica' THEN queue.attempt ELSE queue.attempt - 1 END,
             state = 'in_progress',
             updated_at = now() AT TIME ZONE 'UTC'
         FROM candidates
         WHERE queue.id = candidates.id
         RETURNING ${eventColumns("queue.")}
       ),
       job_locks AS (
         INSERT INTO replication_queue_job_lock (job_id, lock_id, triggered_at)
         SELECT id, lock_id, now() AT TIME ZONE 'UTC' FROM started
       ),
       acquired AS (
         UPDATE replication_queue_lock SET acquired = true
         WHERE id IN (SELECT lock_id FROM candidates)
       )
       SELECT * FROM started ORDER BY id`,
      [virtualStorage, targetStorage, count],
    );
    return rows.map(toEvent);
  }

  /**
   * Finishes in-progress jobs. `completed` deletes them, together with older `ready` duplicates
   * (same lock, change and source) created before the job was taken, whose work is now done;
   * `dead` deletes them; `failed` keeps them for another attempt. Job locks are dropped and a
   * replica lock is released once none of its job locks remain. Returns the IDs that were in
   * progress (others are ignored).
   */
  async acknowledge(state: "completed" | "failed" | "dead", ids: readonly number[]): Promise<number[]> {
    if (ids.length === 0) return [];
    if (state !== "completed" && state !== "failed" && state !== "dead") {
      throw new Error(`event state is not supported: "${String(state)}"`);
    }
    const { rows } = await this.db.query<{ id: string }>(
      `WITH finishing AS (
         SELECT id, lock_id, updated_at, job
         FROM replication_queue
         WHERE id = ANY($1::bigint[]) AND state = 'in_progress'
         FOR UPDATE
       ),
       deleted AS (
         DELETE FROM replication_queue AS queue
         USING finishing
         WHERE ($2::replication_job_state = 'dead' AND queue.id = finishing.id)
            OR ($2::replication_job_state = 'completed' AND (
                 queue.id = finishing.id
                 OR (queue.state = 'ready'
                     AND queue.created_at < finishing.updated_at
                     AND queue.lock_id = finishing.lock_id
                     AND queue.job ->> 'change' = finishing.job ->> 'change'
                     AND coalesce(queue.job ->> 'source_node_storage', '') = coalesce(finishing.job ->> 'source_node_storage', ''))))
         RETURNING queue.id, queue.lock_id
       ),
       updated AS (
         UPDATE replication_queue AS queue
         SET state = $2::replication_job_state, updated_at = now() AT TIME ZONE 'UTC'
         FROM finishing
         WHERE queue.id = finishing.id
         RETURNING queue.id, queue.lock_id
       ),
       released_job_locks AS (
         DELETE FROM replication_queue_job_lock AS held
         USING (SELECT id, lock_id FROM deleted UNION SELECT id, lock_id FROM updated) AS done
         WHERE held.job_id = done.id AND held.lock_id = done.lock_id
         RETURNING done.lock_id
       ),
       released_locks AS (
         UPDATE replication_queue_lock SET acquired = false
         WHERE id IN (
           SELECT released.lock_id
           FROM (SELECT lock_id, count(*) AS n FROM released_job_locks GROUP BY lock_id) AS released
           JOIN (
             SELECT lock_id, count(*) AS n FROM replication_queue_job_lock
             WHERE lock_id IN (SELECT lock_id FROM released_job_locks)
             GROUP BY lock_id
           ) AS held ON held.lock_id = released.lock_id AND held.n = released.n
         )
       )
       SELECT id FROM finishing ORDER BY id`,
      [ids, state],
    );
    return rows.map((r) => toNumber(r.id));
  }

  /**
   * Heartbeat: refreshes the job locks of events being processed so stale-lock sweeps leave them
   * alone. Returns how many job locks were refreshed (0 once they are gone).
   */
  async refreshJobLocks(events: readonly Pick<ReplicationEvent, "id" | "lockId">[]): Promise<number> {
    if (events.length === 0) return 0;
    const result = await this.db.query(
      `UPDATE replication_queue_job_lock SET triggered_at = now() AT TIME ZONE 'UTC'
       WHERE (job_id, lock_id) IN (SELECT * FROM unnest($1::bigint[], $2::text[]))`,
      [events.map((e) => e.id), events.map((e) => e.lockId)],
    );
    return result.rowCount ?? 0;
  }

  /**
   * Refreshes the events' job locks every `intervalMs` (upstream: 5 s) until stopped or until
   * nothing is left to refresh. Errors go to `onError` and do not stop the heartbeat.
   */
  startHeartbeat(
    events: readonly Pick<ReplicationEvent, "id" | "lockId">[],
    intervalMs: number,
    onError: (err: unknown) => void = () => undefined,
  ): HeartbeatHandle {
    let inFlight: Promise<void> = Promise.resolve();
    let stopped = events.length === 0;
    const timer = setInterval(() => {
      if (stopped) return;
      inFlight = this.refreshJobLocks(events).then(
        (refreshed) => {
          if (refreshed === 0) {
            stopped = true;
            clearInterval(timer);
          }
        },
        (err: unknown) => onError(err),
      );
    }, intervalMs);
    timer.unref();
    return {
      async stop() {
        stopped = true;
        clearInterval(timer);
        await inFlight;
      },
    };
  }

  /**
   * Sweeps jobs abandoned by a dead worker: job locks whose heartbeat is older than `staleAfterMs`
   * (upstream: 1 min) are dropped, their jobs become `failed` when attempts remain and are deleted
   * otherwise, and replica locks without job locks left are released. Returns the released locks.
   */
  async acknowledgeStale(staleAfterMs: number): Promise<number> {
    const result = await this.db.query(
      `WITH stale AS (
         DELETE FROM replication_queue_job_lock
         WHERE triggered_at < now() AT TIME ZONE 'UTC' - interval '1 millisecond' * $1
         RETURNING job_id, lock_id
       ),
       retried AS (
         UPDATE replication_queue AS queue SET state = 'failed'
         FROM stale
         WHERE queue.id = stale.job_id AND queue.attempt >= 1
       ),
       exhausted AS (
         DELETE FROM replication_queue WHERE attempt = 0 AND id IN (SELECT job_id FROM stale)
       )
       UPDATE replication_queue_lock SET acquired = false
       WHERE id IN (
         SELECT released.lock_id
         FROM (SELECT lock_id, count(*) AS n FROM stale GROUP BY lock_id) AS released
         JOIN (
           SELECT lock_id, count(*) AS n FROM replication_queue_job_lock
           WHERE lock_id IN (SELECT lock_id FROM stale)
           GROUP BY lock_id
         ) AS held ON held.lock_id = released.lock_id AND held.n = released.n
       )`,
      [staleAfterMs],
    );
    return result.rowCount ?? 0;
  }

  /** Deletes up to 1000 replica locks no job refers to any more. Returns how many. */
  async cleanUpLocks(): Promise<number> {
    const { rows } = await this.db.query<{ n: string }>(
      `WITH removed AS (
         DELETE FROM replication_queue_lock
         WHERE id IN (
           SELECT id FROM replication_queue_lock
           WHERE NOT acquired
             AND id NOT IN (
               SELECT lock_id FROM replication_queue_job_lock
               UNION
               SELECT lock_id FROM replication_queue WHERE lock_id IS NOT NULL
             )
           ORDER BY id
           LIMIT 1000
         )
         RETURNING id
       )
       SELECT count(*) AS n FROM removed`,
    );
    return toNumber(rows[0]?.n ?? 0);
  }

  /** Jobs per (virtual storage, target, state): the replication_queue_depth metric. */
  async queueDepth(): Promise<QueueDepth[]> {
    const { rows } = await this.db.query<{ vs: string; target: string; state: JobState; n: string }>(
      `SELECT job ->> 'virtual_storage' AS vs, job ->> 'target_node_storage' AS target, state, count(*) AS n
       FROM replication_queue
       GROUP BY 1, 2, 3
       ORDER BY 1, 2, 3`,
    );
    return rows.map((r) => ({ virtualStorage: r.vs, targetStorage: r.target, state: r.state, count: toNumber(r.n) }));
  }

  /** One job by ID, or null (for tests and diagnostics). */
  async getEvent(id: number): Promise<ReplicationEvent | null> {
    const { rows } = await this.db.query<EventRow>(`SELECT ${eventColumns()} FROM replication_queue WHERE id = $1`, [
      id,
    ]);
    return rows[0] ? toEvent(rows[0]) : null;
  }
}
