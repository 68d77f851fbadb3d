// Errors the datastore reports. Messages match upstream Praefect's where callers (the
// router, the CLI, PraefectInfoService) pass them on to clients.

/** The repository has no record in the database. */
export class RepositoryNotFoundError extends Error {
  constructor(readonly what = "") {
    super(what ? `repository not found: ${what}` : "repository not found");
    this.name = "RepositoryNotFoundError";
  }
}

/** Creating a repository whose (virtual storage, relative path) already has a record. */
export class RepositoryAlreadyExistsError extends Error {
  constructor() {
    super("repository already exists");
    this.name = "RepositoryAlreadyExistsError";
  }
}

/** IncrementGeneration found none of the given storages on the latest generation. */
export class WriteToOutdatedNodesError extends Error {
  constructor() {
    super("write to outdated nodes");
    this.name = "WriteToOutdatedNodesError";
  }
}

/** A replication job would not move the target forward (it is already at or past the source). */
export class DowngradeAttemptedError extends Error {
  constructor(
    readonly storage: string,
    readonly currentGeneration: number,
    readonly attemptedGeneration: number,
  ) {
    super(`attempted downgrading storage "${storage}" from generation ${currentGeneration} to ${attemptedGeneration}`);
    this.name = "DowngradeAttemptedError";
  }
}

/** A statement that must change a row changed none. */
export class NoRowsAffectedError extends Error {
  constructor() {
    super("no rows were affected by the query");
    this.name = "NoRowsAffectedError";
  }
}

/** The repository has no primary recorded and none could be elected. */
export class NoPrimaryError extends Error {
  constructor() {
    super("no primary");
    this.name = "NoPrimaryError";
  }
}

/** Bad input from an administrator (unknown virtual storage, impossible replication factor). */
export class InvalidArgumentError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "InvalidArgumentError";
  }
}

/** Enqueue found an identical job still waiting in the `ready` state. */
export class ReplicationEventExistsError extends Error {
  constructor(
    readonly state: string,
    readonly virtualStorage: string,
    readonly targetNodeStorage: string,
    readonly relativePath: string,
  ) {
    super(
      `replication event "${state}" -> "${virtualStorage}" -> "${targetNodeStorage}" -> "${relativePath}" already exists`,
    );
    this.name = "ReplicationEventExistsError";
  }
}

/** The database records a migration this program does not know (it was written by a newer Praefect). */
export class UnknownMigrationError extends Error {
  constructor(readonly migrationId: string) {
    super(`Unable to create migration plan because of ${migrationId}: unknown migration in database`);
    this.name = "UnknownMigrationError";
  }
}
