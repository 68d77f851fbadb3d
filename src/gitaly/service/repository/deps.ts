// What the RepositoryService needs from the rest of the node.
import type { Logger } from "../../../shared/logging.js";
import type { GitCommandFactory } from "../../git/command.js";
import type { StorageLocator } from "../../storage/locator.js";

export interface RepositoryServiceDeps {
  locator: StorageLocator;
  git: GitCommandFactory;
  logger: Logger;
  /** The default branch for new repositories when the client names none. */
  defaultBranch?: string;
}
