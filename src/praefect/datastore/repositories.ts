// The repository metadata Praefect keeps in PostgreSQL: which repositories exist, where their
// replicas live, each replica's generation, host assignments and the per-repository primary.
// Semantics follow upstream's PostgresRepositoryStore, AssignmentStore and per-repository elector.
import { isUniqueViolation, type Queryable, toDateOrNull, toNumber } from "./db.js";
import {
  DowngradeAttemptedError,
  InvalidArgumentError,
  NoPrimaryError,
  NoRowsAffectedError,
  RepositoryAlreadyExistsError,
  RepositoryNotFoundError,
  WriteToOutdatedNodesError,
} from "./errors.js";
import { type ConsensusVote, healthyStoragesRelation } from "./health.js";

/** The generation of a replica that does not exist (and of a repository without one recorded). */
export const GENERATION_UNKNOWN = -1;

/** Configured physical storages per virtual storage, in configuration order. */
export type ConfiguredStorages = Readonly<Record<string, readonly string[]>>;

export interface RepositoryRecord {
  repositoryId: number;
  virtualStorage: string;
  relativePath: string;
  /** Where the replicas live on the Gitaly nodes. */
  replicaPath: string;
  /** The stored primary; null until one is elected. */
  primary: string | null;
  /** The latest generation; -1 when unknown. */
  generation: number;
}

export interface CreateRepositoryParams {
  repositoryId: number;
  virtualStorage: string;
  relativePath: string;
  replicaPath: string;
  /** The storage the repository was created on. */
  primary: string;
  /** Secondaries that took part in the creation successfully: they start at generation 0 too. */
  updatedSecondaries?: readonly string[];
  /** Secondaries that failed or were skipped: assigned, but with no replica record yet. */
  outdatedSecondaries?: readonly string[];
  /** Record `primary` as the repository's primary (per-repository election). Default true. */
  storePrimary?: boolean;
  /** Record the primary and all secondaries as the assigned hosts. Default true. */
  storeAssignments?: boolean;
}

export interface ReplicaState {
  storage: string;
  /** The replica's confirmed generation; -1 when the replica does not exist yet. */
  generation: number;
  assigned: boolean;
  /** Healthy by the consensus of the Praefects (healthy_storages). */
  healthy: boolean;
  /** Up to date, healthy, assigned and not being deleted: could serve as primary right now. */
  validPrimary: boolean;
  verifiedAt: Date | null;
}

export interface RepositoryMetadata extends RepositoryRecord {
  /** Every storage holding a replica or assigned to hold one, ordered by storage name. */
  replicas: ReplicaState[];
}

export interface DatalossStorage {
  name: string;
  behindBy: number;
  assigned: boolean;
  healthy: boolean;
  validPrimary: boolean;
}

/** One repository of a Dataloss answer, shaped like PraefectInfoService's DatalossResponse.Repository. */
export interface DatalossRepository {
  relativePath: string;
  primary: string;
  /** No replica can serve as primary: the repository cannot take writes. */
  unavailable: boolean;
  storages: DatalossStorage[];
}

export interface PrimaryElection {
  /** The primary after this call; null when none was ever elected and no candidate exists. */
  primary: string | null;
  /** The primary stored before this call. */
  previous: string | null;
  /** Whether `primary` is currently a valid primary (in valid_primaries). */
  valid: boolean;
}

interface RepositoryRow {
  repository_id: string;
  virtual_storage: string;
  relative_path: string;
  replica_path: string | null;
  primary: string | null;
  generation: string | null;
}

function toRecord(row: RepositoryRow): RepositoryRecord {
  return {
    repositoryId: toNumber(row.repository_id),
    virtualStorage: row.virtual_storage,
    relativePath: row.relative_path,
    replicaPath: row.replica_path ?? row.relative_path,
    primary: row.primary,
    generation: row.generation === null ? GENERATION_UNKNOWN : toNumber(row.generation),
  };
}

const REPOSITORY_COLUMNS = `repository_id, virtual_storage, relative_path, replica_path, "primary", generation`;

export interface RepositoryStoreOptions {
  /**
   * How the election counts health votes: "latest-check" with [failover] error thresholds
   * configured (fast failure detection, see health.ts), upstream's healthy_storages otherwise.
   */
  electionVote?: ConsensusVote;
}

export class RepositoryStore {
  private readonly electionVote: ConsensusVote;

  constructor(
    private readonly db: Queryable,
    private readonly configuredStorages: ConfiguredStorages = {},
    options: RepositoryStoreOptions = {},
  ) {
    this.electionVote = options.electionVote ?? "recent-sighting";
  }

  private storagesOf(virtualStorage: string): readonly string[] {
    const storages = this.configuredStorages[virtualStorage];
    if (!storages) throw new InvalidArgumentError(`virtual storage "${virtualStorage}" not found`);
    return storages;
  }

  /** Takes the next repository ID for a repository about to be created; fails if the path is taken. */
  async reserveRepositoryId(virtualStorage: string, relativePath: string): Promise<number> {
    const { rows } = await this.db.query<{ id: string }>(
      `SELECT nextval('repositories_repository_id_seq') AS id
       WHERE NOT EXISTS (SELECT FROM repositories WHERE virtual_storage = $1 AND relative_path = $2)`,
      [virtualStorage, relativePath],
    );
    const row = rows[0];
    if (!row) throw new RepositoryAlreadyExistsError();
    return toNumber(row.id);
  }

  /**
   * Records a new repository: its row at generation 0, generation-0 replicas on the primary and
   * the updated secondaries, and (optionally) its primary and assignments.
   */
  async createRepository(params: CreateRepositoryParams): Promise<void> {
    const updated = params.updatedSecondaries ?? [];
    const outdated = params.outdatedSecondaries ?? [];
    try {
      await this.db.query(
        `WITH new_repository AS (
           INSERT INTO repositories (repository_id, virtual_storage, relative_path, replica_path, generation, "primary")
           VALUES ($1, $2, $3, $4, 0, CASE WHEN $6::boolean THEN $5 END)
         ),
         new_assignments AS (
           INSERT INTO repository_assignments (repository_id, virtual_storage, relative_path, storage)
           SELECT $1, $2, $3, storage
           FROM (SELECT $5::text AS storage UNION SELECT unnest($7::text[]) UNION SELECT unnest($8::text[])) AS hosts
           WHERE $9::boolean
         )
         INSERT INTO storage_repositories (repository_id, virtual_storage, relative_path, storage, generation)
         SELECT $1, $2, $3, storage, 0
         FROM (SELECT $5::text AS storage UNION SELECT unnest($7::text[])) AS up_to_date`,
        [
          params.repositoryId,
          params.virtualStorage,
          params.relativePath,
          params.replicaPath,
          params.primary,
          params.storePrimary ?? true,
          updated,
          outdated,
          params.storeAssignments ?? true,
        ],
      );
    } catch (err) {
      if (!isUniqueViolation(err)) throw err;
      // Which unique index trips first depends on the plan; tell the two cases apart by the ID's owner.
      const owner = await this.getRepositoryById(params.repositoryId);
      if (owner && (owner.virtualStorage !== params.virtualStorage || owner.relativePath !== params.relativePath)) {
        throw new Error(`repository id ${params.repositoryId} already in use`, { cause: err });
      }
      throw new RepositoryAlreadyExistsError();
    }
  }

  async getRepository(virtualStorage: string, relativePath: string): Promise<RepositoryRecord | null> {
    const { rows } = await this.db.query<RepositoryRow>(
      `SELECT ${REPOSITORY_COLUMNS} FROM repositories WHERE virtual_storage = $1 AND relative_path = $2`,
      [virtualStorage, relativePath],
    );
    return rows[0] ? toRecord(rows[0]) : null;
  }

  async getRepositoryById(repositoryId: number): Promise<RepositoryRecord | null> {
    const { rows } = await this.db.query<RepositoryRow>(
      `SELECT ${REPOSITORY_COLUMNS} FROM repositories WHERE repository_id = $1`,
      [repositoryId],
    );
    return rows[0] ? toRecord(rows[0]) : null;
  }

  /** The repository's ID; RepositoryNotFoundError when it is not tracked. */
  async getRepositoryId(virtualStorage: string, relativePath: string): Promise<number> {
    const repo = await this.getRepository(virtualStorage, relativePath);
    if (!repo) throw new RepositoryNotFoundError(`${virtualStorage}/${relativePath}`);
    return repo.repositoryId;
  }

  async repositoryExists(virtualStorage: string, relativePath: string): Promise<boolean> {
    const { rows } = await this.db.query(
      "SELECT 1 FROM repositories WHERE virtual_storage = $1 AND relative_path = $2",
      [virtualStorage, relativePath],
    );
    return rows.length > 0;
  }

  async getReplicaPath(repositoryId: number): Promise<string> {
    const repo = await this.getRepositoryById(repositoryId);
    if (!repo) throw new RepositoryNotFoundError(`repository id ${repositoryId}`);
    return repo.replicaPath;
  }

  /** Relative paths of every repository on the virtual storage. */
  async listRepositoryPaths(virtualStorage: string): Promise<string[]> {
    const { rows } = await this.db.query<{ relative_path: string }>(
      "SELECT relative_path FROM repositories WHERE virtual_storage = $1 ORDER BY relative_path",
      [virtualStorage],
    );
    return rows.map((r) => r.relative_path);
  }

  /** Whether the repository with this replica path has explicit host assignments. */
  async hasRepositoryAssignments(replicaPath: string): Promise<boolean> {
    const { rows } = await this.db.query<{ assigned: boolean }>(
      `SELECT EXISTS (
         SELECT FROM repository_assignments
         WHERE repository_id = (SELECT repository_id FROM repositories WHERE replica_path = $1 LIMIT 1)
       ) AS assigned`,
      [replicaPath],
    );
    return rows[0]?.assigned ?? false;
  }

  /** The replica's generation on `storage`; -1 when there is no replica there. */
  async getGeneration(repositoryId: number, storage: string): Promise<number> {
    const { rows } = await this.db.query<{ generation: string }>(
      "SELECT generation FROM storage_repositories WHERE repository_id = $1 AND storage = $2",
      [repositoryId, storage],
    );
    return rows[0] ? toNumber(rows[0].generation) : GENERATION_UNKNOWN;
  }

  /**
   * After a successful write: bumps the generation of those of `primary` and `secondaries` that
   * were on the latest generation, and the repository's. Replicas that were already behind stay
   * behind (they missed earlier writes). WriteToOutdatedNodesError when none was up to date.
   */
  async incrementGeneration(repositoryId: number, primary: string, secondaries: readonly string[]): Promise<void> {
    const { rows } = await this.db.query<{ found: boolean; updated: boolean }>(
      `WITH up_to_date AS (
         SELECT replica.repository_id, replica.storage
         FROM repositories AS repo
         JOIN storage_repositories AS replica
           ON replica.repository_id = repo.repository_id AND replica.generation = repo.generation
         WHERE repo.repository_id = $1 AND replica.storage = ANY($2::text[])
         FOR UPDATE
       ),
       bumped_replicas AS (
         UPDATE storage_repositories AS replica
         SET generation = replica.generation + 1
         FROM up_to_date
         WHERE replica.repository_id = up_to_date.repository_id AND replica.storage = up_to_date.storage
         RETURNING replica.repository_id
       ),
       bumped_repository AS (
         UPDATE repositories
         SET generation = generation + 1
         WHERE repository_id IN (SELECT repository_id FROM bumped_replicas)
       )
       SELECT EXISTS (SELECT FROM repositories WHERE repository_id = $1) AS found,
              EXISTS (SELECT FROM bumped_replicas) AS updated`,
      [repositoryId, [...secondaries, primary]],
    );
    const row = rows[0];
    if (!row?.found) throw new RepositoryNotFoundError(`repository id ${repositoryId}`);
    if (!row.updated) throw new WriteToOutdatedNodesError();
  }

  /**
   * Records that `storage` holds `generation` (after replication), creating its replica row if
   * needed, and raises the repository's generation if it was lower so generations only grow.
   */
  async setGeneration(repositoryId: number, storage: string, relativePath: string, generation: number): Promise<void> {
    await this.db.query(
      `WITH raise_repository AS (
         UPDATE repositories SET generation = $3
         WHERE repository_id = $1 AND coalesce(generation, -1) < $3
       )
       INSERT INTO storage_repositories (repository_id, virtual_storage, relative_path, storage, generation)
       SELECT repository_id, virtual_storage, $4, $2, $3
       FROM repositories
       WHERE repository_id = $1
       ON CONFLICT (repository_id, storage) DO UPDATE
         SET relative_path = EXCLUDED.relative_path, generation = EXCLUDED.generation`,
      [repositoryId, storage, generation, relativePath],
    );
  }

  /**
   * The generation a replication job from `source` to `target` would give the target: the source's.
   * DowngradeAttemptedError when the target already has that generation or a later one.
   */
  async getReplicatedGeneration(repositoryId: number, source: string, target: string): Promise<number> {
    const { rows } = await this.db.query<{ storage: string; generation: string }>(
      "SELECT storage, generation FROM storage_repositories WHERE repository_id = $1 AND storage = ANY($2::text[])",
      [repositoryId, [source, target]],
    );
    let sourceGeneration = GENERATION_UNKNOWN;
    let targetGeneration = GENERATION_UNKNOWN;
    for (const row of rows) {
      if (row.storage === source) sourceGeneration = toNumber(row.generation);
      else if (row.storage === target) targetGeneration = toNumber(row.generation);
    }
    if (targetGeneration !== GENERATION_UNKNOWN && targetGeneration >= sourceGeneration) {
      throw new DowngradeAttemptedError(target, targetGeneration, sourceGeneration);
    }
    return sourceGeneration;
  }

  /**
   * accept-dataloss: bumps the repository's generation and gives only `storage` the new value, so
   * every other replica becomes outdated and is repaired from it.
   */
  async setAuthoritativeReplica(virtualStorage: string, relativePath: string, storage: string): Promise<void> {
    const result = await this.db.query(
      `WITH bumped AS (
         UPDATE repositories SET generation = generation + 1
         WHERE virtual_storage = $1 AND relative_path = $2
         RETURNING repository_id, virtual_storage, relative_path, generation
       )
       INSERT INTO storage_repositories (repository_id, virtual_storage, relative_path, storage, generation)
       SELECT repository_id, virtual_storage, relative_path, $3, generation FROM bumped
       ON CONFLICT (virtual_storage, relative_path, storage) DO UPDATE
         SET repository_id = EXCLUDED.repository_id, generation = EXCLUDED.generation`,
      [virtualStorage, relativePath, storage],
    );
    if (result.rowCount === 0) throw new RepositoryNotFoundError(`${virtualStorage}/${relativePath}`);
  }

  /**
   * Deletes the repository's records (replicas and assignments cascade). Returns its replica path
   * and the storages that had a replica, for the caller to remove from disk.
   */
  async deleteRepository(
    virtualStorage: string,
    relativePath: string,
  ): Promise<{ replicaPath: string; storages: string[] }> {
    const { rows } = await this.db.query<{ replica_path: string | null; storages: (string | null)[] }>(
      `WITH deleted AS (
         DELETE FROM repositories WHERE virtual_storage = $1 AND relative_path = $2
         RETURNING repository_id, replica_path, relative_path
       )
       SELECT coalesce(deleted.replica_path, deleted.relative_path) AS replica_path,
              array_agg(replica.storage ORDER BY replica.storage) AS storages
       FROM deleted
       LEFT JOIN storage_repositories AS replica USING (repository_id)
       GROUP BY deleted.replica_path, deleted.relative_path`,
      [virtualStorage, relativePath],
    );
    const row = rows[0];
    if (!row) throw new RepositoryNotFoundError(`${virtualStorage}/${relativePath}`);
    return {
      replicaPath: row.replica_path ?? relativePath,
      storages: row.storages.filter((s): s is string => s !== null),
    };
  }

  /** Deletes every repository of the virtual storage together with its queued jobs and locks. */
  async deleteAllRepositories(virtualStorage: string): Promise<void> {
    await this.db.query(
      `WITH dropped_jobs AS (
         DELETE FROM replication_queue WHERE job ->> 'virtual_storage' = $1 RETURNING id
       ),
       dropped_job_locks AS (
         DELETE FROM replication_queue_job_lock WHERE job_id IN (SELECT id FROM dropped_jobs)
       ),
       dropped_locks AS (
         DELETE FROM replication_queue_lock WHERE id LIKE $1 || '|%|%'
       )
       DELETE FROM repositories WHERE virtual_storage = $1`,
      [virtualStorage],
    );
  }

  /** Forgets the replica on `storage` (after it was removed from disk). NoRowsAffectedError if none. */
  async deleteReplica(repositoryId: number, storage: string): Promise<void> {
    const result = await this.db.query("DELETE FROM storage_repositories WHERE repository_id = $1 AND storage = $2", [
      repositoryId,
      storage,
    ]);
    if (result.rowCount === 0) throw new NoRowsAffectedError();
  }

  /**
   * Drops the record of a replica found to be invalid; when it was the repository's only replica
   * the repository's record goes too.
   */
  async deleteInvalidRepository(repositoryId: number, storage: string): Promise<void> {
    await this.db.query(
      `WITH locked AS (
         SELECT repository_id FROM repositories WHERE repository_id = $1 FOR UPDATE
       ),
       dropped_replica AS (
         DELETE FROM storage_repositories
         WHERE repository_id IN (SELECT repository_id FROM locked) AND storage = $2
       )
       DELETE FROM repositories
       WHERE repository_id IN (SELECT repository_id FROM locked)
         AND NOT EXISTS (SELECT FROM storage_repositories WHERE repository_id = $1 AND storage <> $2)`,
      [repositoryId, storage],
    );
  }

  /** The replica path and the storages holding the latest generation. RepositoryNotFoundError if untracked. */
  async getConsistentStorages(
    virtualStorage: string,
    relativePath: string,
  ): Promise<{ replicaPath: string; storages: string[] }> {
    return this.consistentStorages("repo.virtual_storage = $1 AND repo.relative_path = $2", [
      virtualStorage,
      relativePath,
    ]);
  }

  async getConsistentStoragesById(repositoryId: number): Promise<{ replicaPath: string; storages: string[] }> {
    return this.consistentStorages("repo.repository_id = $1", [repositoryId]);
  }

  private async consistentStorages(
    filter: string,
    args: unknown[],
  ): Promise<{ replicaPath: string; storages: string[] }> {
    const { rows } = await this.db.query<{ replica_path: string | null; relative_path: string; storages: string[] }>(
      `SELECT repo.replica_path, repo.relative_path, array_agg(replica.storage ORDER BY replica.storage) AS storages
       FROM repositories AS repo
       JOIN storage_repositories AS replica
         ON replica.repository_id = repo.repository_id
        AND replica.relative_path = repo.relative_path
        AND replica.generation = repo.generation
       WHERE ${filter}
       GROUP BY repo.replica_path, repo.relative_path`,
      args,
    );
    const row = rows[0];
    if (!row) throw new RepositoryNotFoundError(String(args.join("/")));
    return { replicaPath: row.replica_path ?? row.relative_path, storages: row.storages };
  }

  /**
   * The storages assigned to host the repository, limited to configured ones; every configured
   * storage when there are no (configured) assignments.
   */
  async getHostAssignments(virtualStorage: string, repositoryId: number): Promise<string[]> {
    const configured = this.storagesOf(virtualStorage);
    const { rows } = await this.db.query<{ storage: string }>(
      "SELECT storage FROM repository_assignments WHERE repository_id = $1 AND storage = ANY($2::text[]) ORDER BY storage",
      [repositoryId, configured],
    );
    return rows.length > 0 ? rows.map((r) => r.storage) : [...configured];
  }

  /**
   * Assigns or unassigns random hosts until the repository has `replicationFactor` assigned
   * storages. The primary is assigned first and never unassigned. Returns the assignments, sorted.
   */
  async setReplicationFactor(
    virtualStorage: string,
    relativePath: string,
    replicationFactor: number,
  ): Promise<string[]> {
    const candidates = this.storagesOf(virtualStorage);
    if (replicationFactor < 1) {
      throw new InvalidArgumentError(`attempted to set replication factor ${replicationFactor} but minimum is 1`);
    }
    if (replicationFactor > candidates.length) {
      throw new InvalidArgumentError(
        `attempted to set replication factor ${replicationFactor} but virtual storage only contains ${candidates.length} storages`,
      );
    }
    // Locking the repository row serialises concurrent changes: row locks on the assignments
    // alone would not stop two transactions from inserting different new hosts.
    const { rows } = await this.db.query<{ storage: string }>(
      `WITH repo AS (
         SELECT repository_id, virtual_storage, relative_path, "primary"
         FROM repositories
         WHERE virtual_storage = $1 AND relative_path = $2
         FOR UPDATE
       ),
       current_hosts AS (
         SELECT a.storage
         FROM repo
         JOIN repository_assignments AS a USING (virtual_storage, relative_path)
         WHERE a.storage = ANY($4::text[])
       ),
       added AS (
         INSERT INTO repository_assignments (virtual_storage, relative_path, storage, repository_id)
         SELECT repo.virtual_storage, repo.relative_path, candidate.storage, repo.repository_id
         FROM repo
         CROSS JOIN unnest($4::text[]) AS candidate (storage)
         WHERE candidate.storage NOT IN (SELECT storage FROM current_hosts)
         ORDER BY candidate.storage = repo."primary" DESC, random()
         LIMIT (SELECT greatest(count(*), $3) - count(*) FROM current_hosts)
         RETURNING storage
       ),
       removed AS (
         DELETE FROM repository_assignments AS a
         USING (
           SELECT repo.virtual_storage, repo.relative_path, current_hosts.storage
           FROM repo, current_hosts
           WHERE current_hosts.storage IS DISTINCT FROM repo."primary"
           ORDER BY random()
           LIMIT (SELECT count(*) - least(count(*), $3) FROM current_hosts)
         ) AS doomed
         WHERE a.virtual_storage = doomed.virtual_storage
           AND a.relative_path = doomed.relative_path
           AND a.storage = doomed.storage
         RETURNING doomed.storage
       )
       SELECT storage FROM current_hosts WHERE storage NOT IN (SELECT storage FROM removed)
       UNION
       SELECT storage FROM added
       ORDER BY storage`,
      [virtualStorage, relativePath, replicationFactor, candidates],
    );
    if (rows.length === 0) throw new InvalidArgumentError(`repository "${virtualStorage}"/"${relativePath}" not found`);
    return rows.map((r) => r.storage);
  }

  /** Marks the repository's replicas unverified so the verifier checks them next. Returns how many. */
  async markUnverified(repositoryId: number): Promise<number> {
    const result = await this.db.query(
      "UPDATE storage_repositories SET verified_at = NULL WHERE repository_id = $1 AND verified_at IS NOT NULL",
      [repositoryId],
    );
    return result.rowCount ?? 0;
  }

  async markVirtualStorageUnverified(virtualStorage: string): Promise<number> {
    const result = await this.db.query(
      `UPDATE storage_repositories AS replica SET verified_at = NULL
       FROM repositories AS repo
       WHERE repo.repository_id = replica.repository_id AND repo.virtual_storage = $1
         AND replica.verified_at IS NOT NULL`,
      [virtualStorage],
    );
    return result.rowCount ?? 0;
  }

  async markStorageUnverified(virtualStorage: string, storage: string): Promise<number> {
    const result = await this.db.query(
      `UPDATE storage_repositories AS replica SET verified_at = NULL
       FROM repositories AS repo
       WHERE repo.repository_id = replica.repository_id AND repo.virtual_storage = $1
         AND replica.storage = $2 AND replica.verified_at IS NOT NULL`,
      [virtualStorage, storage],
    );
    return result.rowCount ?? 0;
  }

  /** Full metadata of one repository (`praefect metadata`). RepositoryNotFoundError if untracked. */
  async getRepositoryMetadata(repositoryId: number): Promise<RepositoryMetadata> {
    const [metadata] = await this.metadata("repository_id = $3", [repositoryId], false);
    if (!metadata) throw new RepositoryNotFoundError(`repository id ${repositoryId}`);
    return metadata;
  }

  async getRepositoryMetadataByPath(virtualStorage: string, relativePath: string): Promise<RepositoryMetadata> {
    const [metadata] = await this.metadata(
      "virtual_storage = $3 AND relative_path = $4",
      [virtualStorage, relativePath],
      false,
    );
    if (!metadata) throw new RepositoryNotFoundError(`${virtualStorage}/${relativePath}`);
    return metadata;
  }

  /** Repositories of the virtual storage with at least one assigned replica that is not a valid primary. */
  async getPartiallyAvailableRepositories(virtualStorage: string): Promise<RepositoryMetadata[]> {
    if (!this.configuredStorages[virtualStorage]) throw new Error(`unknown virtual storage: "${virtualStorage}"`);
    return this.metadata("virtual_storage = $3", [virtualStorage], true);
  }

  /**
   * The Dataloss RPC's answer: repositories without any valid primary (unavailable), plus, with
   * `includePartiallyReplicated`, those where only some assigned replicas are unusable.
   */
  async dataloss(virtualStorage: string, includePartiallyReplicated: boolean): Promise<DatalossRepository[]> {
    const repositories = await this.getPartiallyAvailableRepositories(virtualStorage);
    const result: DatalossRepository[] = [];
    for (const repo of repositories) {
      const unavailable = !repo.replicas.some((r) => r.validPrimary);
      if (!unavailable && !includePartiallyReplicated) continue;
      result.push({
        relativePath: repo.relativePath,
        primary: repo.primary ?? "",
        unavailable,
        storages: repo.replicas.map((r) => ({
          name: r.storage,
          behindBy: repo.generation - r.generation,
          assigned: r.assigned,
          healthy: r.healthy,
          validPrimary: r.validPrimary,
        })),
      });
    }
    return result;
  }

  /**
   * Replica states of the repositories matching `filter` (over `repositories`, parameters from $3).
   * A storage counts as assigned when explicitly assigned, or, for a repository without assignments
   * on configured storages, when it is configured; assignments to unconfigured storages are ignored.
   */
  private async metadata(
    filter: string,
    args: unknown[],
    onlyPartiallyAvailable: boolean,
  ): Promise<RepositoryMetadata[]> {
    const virtualStorages: string[] = [];
    const storages: string[] = [];
    for (const [virtualStorage, configured] of Object.entries(this.configuredStorages)) {
      for (const storage of configured) {
        virtualStorages.push(virtualStorage);
        storages.push(storage);
      }
    }
    const { rows } = await this.db.query<
      RepositoryRow & {
        storage: string;
        replica_generation: string;
        assigned: boolean;
        healthy: boolean;
        valid_primary: boolean;
        verified_at: Date | null;
      }
    >(
      `WITH configured AS (
         SELECT unnest($1::text[]) AS virtual_storage, unnest($2::text[]) AS storage
       ),
       repos AS (
         SELECT ${REPOSITORY_COLUMNS} FROM repositories WHERE ${filter}
       ),
       assigned_hosts AS (
         SELECT repos.repository_id, configured.storage
         FROM repos
         JOIN configured USING (virtual_storage)
         WHERE (
           SELECT count(*) = 0 OR count(*) FILTER (WHERE a.storage = configured.storage) = 1
           FROM repository_assignments AS a
           WHERE a.repository_id = repos.repository_id
             AND (a.virtual_storage, a.storage) IN (SELECT virtual_storage, storage FROM configured)
         )
       ),
       existing AS (
         SELECT replica.repository_id, replica.storage, replica.generation, replica.verified_at
         FROM storage_repositories AS replica
         WHERE replica.repository_id IN (SELECT repository_id FROM repos)
       ),
       replicas AS (
         SELECT repository_id, storage, existing.generation, existing.verified_at,
                assigned_hosts.storage IS NOT NULL AS assigned
         FROM existing
         FULL JOIN assigned_hosts USING (repository_id, storage)
       ),
       states AS (
         SELECT repos.*, replicas.storage,
                coalesce(replicas.generation, -1) AS replica_generation,
                replicas.assigned,
                healthy.storage IS NOT NULL AS healthy,
                valid.storage IS NOT NULL AS valid_primary,
                replicas.verified_at
         FROM repos
         JOIN replicas USING (repository_id)
         LEFT JOIN healthy_storages AS healthy
           ON healthy.virtual_storage = repos.virtual_storage AND healthy.storage = replicas.storage
         LEFT JOIN valid_primaries AS valid
           ON valid.repository_id = repos.repository_id AND valid.storage = replicas.storage
       )
       SELECT * FROM states
       WHERE NOT $${args.length + 3}::boolean
          OR repository_id IN (SELECT repository_id FROM states WHERE assigned AND NOT valid_primary)
       ORDER BY repository_id, storage`,
      [virtualStorages, storages, ...args, onlyPartiallyAvailable],
    );
    const result: RepositoryMetadata[] = [];
    for (const row of rows) {
      let repo = result.at(-1);
      const id = toNumber(row.repository_id);
      if (repo?.repositoryId !== id) {
        repo = { ...toRecord(row), replicas: [] };
        result.push(repo);
      }
      repo.replicas.push({
        storage: row.storage,
        generation: toNumber(row.replica_generation),
        assigned: row.assigned,
        healthy: row.healthy,
        validPrimary: row.valid_primary,
        verifiedAt: toDateOrNull(row.verified_at),
      });
    }
    return result;
  }

  /**
   * The lazy per-repository election. Keeps the stored primary while it is a valid primary; if it
   * is not and a valid candidate exists, locks the row, rereads it (another Praefect may have just
   * elected) and stores a random valid candidate. With no candidate the stored primary stays as it
   * is, and `valid` is false: the repository is unavailable for writes.
   */
  async electPrimary(repositoryId: number): Promise<PrimaryElection> {
    // The candidates are valid_primaries; with the "latest-check" vote they are further limited
    // to storages healthy by that stricter consensus (a subset of healthy_storages, so this is
    // valid_primaries as it would be over that consensus, save that an unassigned replica does
    // not become eligible until the view itself drops the assigned ones: the cautious side).
    const latestCheck = this.electionVote === "latest-check";
    const { rows } = await this.db.query<{ current: string | null; previous: string | null; valid: boolean }>(
      `WITH candidates AS (
         SELECT vp.storage
         FROM valid_primaries AS vp
         WHERE vp.repository_id = $1
           AND (NOT $2::boolean OR EXISTS (
             SELECT FROM ${healthyStoragesRelation("latest-check")} AS healthy
             WHERE healthy.virtual_storage = vp.virtual_storage AND healthy.storage = vp.storage
           ))
       ),
       reread AS (
         SELECT repository_id, "primary"
         FROM repositories
         WHERE repository_id = $1
           AND NOT EXISTS (SELECT FROM candidates AS c WHERE c.storage = repositories."primary")
           AND EXISTS (SELECT FROM candidates)
         FOR NO KEY UPDATE
       ),
       elected AS (
         UPDATE repositories
         SET "primary" = (SELECT c.storage FROM candidates AS c ORDER BY random() LIMIT 1)
         FROM reread
         WHERE repositories.repository_id = reread.repository_id
           AND NOT EXISTS (SELECT FROM candidates AS c WHERE c.storage = reread."primary")
         RETURNING repositories."primary"
       ),
       outcome AS (
         SELECT
           CASE WHEN e.done THEN e."primary" WHEN r.done THEN r."primary" ELSE snapshot."primary" END AS current,
           CASE WHEN r.done THEN r."primary" ELSE snapshot."primary" END AS previous
         FROM repositories AS snapshot
         LEFT JOIN (SELECT true AS done, "primary" FROM reread) AS r ON true
         LEFT JOIN (SELECT true AS done, "primary" FROM elected) AS e ON true
         WHERE snapshot.repository_id = $1
       )
       SELECT current, previous,
              EXISTS (SELECT FROM candidates AS c WHERE c.storage = outcome.current) AS valid
       FROM outcome`,
      [repositoryId, latestCheck],
    );
    const row = rows[0];
    if (!row) throw new RepositoryNotFoundError(`repository id ${repositoryId}`);
    return { primary: row.current, previous: row.previous, valid: row.valid };
  }

  /**
   * GetPrimary as upstream: the primary after a lazy election. It may be a stale one when no valid
   * candidate exists (callers then see it unhealthy or outdated); NoPrimaryError when none is stored.
   */
  async getPrimary(repositoryId: number): Promise<string> {
    const { primary } = await this.electPrimary(repositoryId);
    if (primary === null) throw new NoPrimaryError();
    return primary;
  }

  /** Repositories without any valid primary, per virtual storage (the unavailable_repositories metric). */
  async countUnavailableRepositories(virtualStorages: readonly string[]): Promise<Record<string, number>> {
    const { rows } = await this.db.query<{ virtual_storage: string; count: string }>(
      `SELECT virtual_storage, count(*) AS count
       FROM repositories
       WHERE virtual_storage = ANY($1::text[])
         AND NOT EXISTS (SELECT FROM valid_primaries AS vp WHERE vp.repository_id = repositories.repository_id)
       GROUP BY virtual_storage`,
      [virtualStorages],
    );
    const counts: Record<string, number> = {};
    for (const vs of virtualStorages) counts[vs] = 0;
    for (const row of rows) counts[row.virtual_storage] = toNumber(row.count);
    return counts;
  }
}
