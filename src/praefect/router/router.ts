// Per-repository routing (upstream's PerRepositoryRouter): which node(s) a request goes to.
// Reads go to a random node that this Praefect sees healthy and that holds the latest
// generation; writes go to the repository's primary, which must be healthy and up to date;
// creations pick a random healthy primary and the secondaries up to the replication factor;
// maintenance goes to every healthy assigned replica that exists.

import { RepositoryNotFoundError } from "../datastore/errors.js";
import type { UpToDateReplicas } from "../datastore/notifications.js";
import { replicaPathFor } from "../datastore/replica-path.js";
import type { RepositoryMetadata, RepositoryStore } from "../datastore/repositories.js";
import type { GitalyNode, NodeManager } from "../nodes/types.js";
import {
  AdditionalRepositoryNotFoundError,
  NoHealthyNodesError,
  NoSuitableNodeError,
  PrimaryNotHealthyError,
  PrimaryUnassignedError,
  repositoryReadOnlyError,
  VirtualStorageNotFoundError,
  wrapError,
} from "./errors.js";

/** Randomness, replaceable in tests. */
export interface Random {
  /** An integer in [0, n). */
  int(n: number): number;
}

export const mathRandom: Random = { int: (n) => Math.floor(Math.random() * n) };

function shuffle<T>(items: T[], random: Random): T[] {
  for (let i = items.length - 1; i > 0; i--) {
    const j = random.int(i + 1);
    [items[i], items[j]] = [items[j] as T, items[i] as T];
  }
  return items;
}

/** The up-to-date replicas of a repository, cached (UpToDateCache) so reads cost no query. */
export interface UpToDateReplicasSource {
  get(virtualStorage: string, relativePath: string): Promise<UpToDateReplicas>;
}

export type RouterStore = Pick<
  RepositoryStore,
  | "getRepository"
  | "getPrimary"
  | "getConsistentStoragesById"
  | "getHostAssignments"
  | "reserveRepositoryId"
  | "getRepositoryMetadataByPath"
  | "getReplicaPath"
>;

export interface AccessorRoute {
  node: GitalyNode;
  replicaPath: string;
}

export interface MutatorRoute {
  repositoryId: number;
  replicaPath: string;
  /** The replica path of the request's additional repository; "" when there is none. */
  additionalReplicaPath: string;
  primary: GitalyNode;
  /** Healthy, up-to-date assigned replicas. */
  secondaries: GitalyNode[];
  /** Assigned replicas that are unhealthy or outdated: they catch up through replication. */
  replicationTargets: string[];
}

export interface MaintenanceRoute {
  repositoryId: number;
  replicaPath: string;
  nodes: GitalyNode[];
}

export interface StorageRoute {
  node: GitalyNode;
}

export interface RouterOptions {
  nodes: NodeManager;
  store: RouterStore;
  upToDate: UpToDateReplicasSource;
  /** default_replication_factor per virtual storage; 0 or absent means every node. */
  replicationFactors: Readonly<Record<string, number>>;
  random?: Random;
}

export class PerRepositoryRouter {
  private readonly nodes: NodeManager;
  private readonly store: RouterStore;
  private readonly upToDate: UpToDateReplicasSource;
  private readonly replicationFactors: Readonly<Record<string, number>>;
  private readonly random: Random;

  constructor(options: RouterOptions) {
    this.nodes = options.nodes;
    this.store = options.store;
    this.upToDate = options.upToDate;
    this.replicationFactors = options.replicationFactors;
    this.random = options.random ?? mathRandom;
  }

  /** Whether the virtual storage is configured. */
  hasVirtualStorage(virtualStorage: string): boolean {
    return this.nodes.virtualStorages().includes(virtualStorage);
  }

  /** The nodes this Praefect currently sees healthy, in configuration order. */
  healthyNodes(virtualStorage: string): GitalyNode[] {
    if (!this.hasVirtualStorage(virtualStorage)) throw new VirtualStorageNotFoundError();
    const healthy = this.nodes.locallyHealthy(virtualStorage);
    const nodes = this.nodes.nodes(virtualStorage).filter((n) => healthy.has(n.storage));
    if (nodes.length === 0) throw new NoHealthyNodesError();
    return nodes;
  }

  private pickRandom(nodes: readonly GitalyNode[]): GitalyNode {
    const node = nodes[this.random.int(nodes.length)];
    if (!node) throw new NoSuitableNodeError();
    return node;
  }

  /** Storage-scoped accessors run anywhere: any healthy node will do. */
  routeStorageAccessor(virtualStorage: string): StorageRoute {
    return { node: this.pickRandom(this.healthyNodes(virtualStorage)) };
  }

  async routeRepositoryAccessor(
    virtualStorage: string,
    relativePath: string,
    forcePrimary: boolean,
  ): Promise<AccessorRoute> {
    const healthy = this.healthyNodes(virtualStorage);
    if (forcePrimary) {
      const repo = await this.store.getRepository(virtualStorage, relativePath);
      if (!repo) {
        throw wrapError("get repository id", new RepositoryNotFoundError(`${virtualStorage}/${relativePath}`));
      }
      const primary = await this.store.getPrimary(repo.repositoryId).catch((err: unknown) => {
        throw wrapError("get primary", err);
      });
      const node = healthy.find((n) => n.storage === primary);
      if (!node) throw new PrimaryNotHealthyError();
      return { node, replicaPath: repo.replicaPath };
    }
    const replicas = await this.upToDate.get(virtualStorage, relativePath).catch((err: unknown) => {
      throw wrapError("consistent storages", err);
    });
    const upToDate = new Set(replicas.storages);
    const node = this.pickRandom(healthy.filter((n) => upToDate.has(n.storage)));
    return { node, replicaPath: replicas.replicaPath };
  }

  private async resolveAdditionalReplicaPath(virtualStorage: string, additionalRelativePath: string): Promise<string> {
    if (additionalRelativePath === "") return "";
    const repo = await this.store.getRepository(virtualStorage, additionalRelativePath);
    if (!repo) throw new AdditionalRepositoryNotFoundError(virtualStorage, additionalRelativePath);
    return repo.replicaPath;
  }

  async routeRepositoryMutator(
    virtualStorage: string,
    relativePath: string,
    additionalRelativePath: string,
  ): Promise<MutatorRoute> {
    const healthy = this.healthyNodes(virtualStorage);
    const repo = await this.store.getRepository(virtualStorage, relativePath);
    if (!repo) throw wrapError("get repository id", new RepositoryNotFoundError(`${virtualStorage}/${relativePath}`));
    const additionalReplicaPath = await this.resolveAdditionalReplicaPath(virtualStorage, additionalRelativePath).catch(
      (err: unknown) => {
        throw wrapError("resolve additional replica path", err);
      },
    );
    const primary = await this.store.getPrimary(repo.repositoryId).catch((err: unknown) => {
      throw wrapError("get primary", err);
    });
    const healthyByStorage = new Map(healthy.map((n) => [n.storage, n]));
    const primaryNode = healthyByStorage.get(primary);
    if (!primaryNode) throw new PrimaryNotHealthyError();

    const consistent = await this.store.getConsistentStoragesById(repo.repositoryId).catch((err: unknown) => {
      throw wrapError("consistent storages", err);
    });
    const upToDate = new Set(consistent.storages);
    if (!upToDate.has(primary)) throw repositoryReadOnlyError();

    const assigned = await this.store.getHostAssignments(virtualStorage, repo.repositoryId).catch((err: unknown) => {
      throw wrapError("get host assignments", err);
    });
    const route: MutatorRoute = {
      repositoryId: repo.repositoryId,
      replicaPath: consistent.replicaPath,
      additionalReplicaPath,
      primary: primaryNode,
      secondaries: [],
      replicationTargets: [],
    };
    let primaryAssigned = false;
    for (const storage of assigned) {
      if (storage === primary) {
        primaryAssigned = true;
        continue;
      }
      const node = healthyByStorage.get(storage);
      if (node && upToDate.has(storage)) route.secondaries.push(node);
      else route.replicationTargets.push(storage);
    }
    if (!primaryAssigned) throw new PrimaryUnassignedError();
    return route;
  }

  /**
   * Creations: a random healthy primary, and secondaries up to the replication factor (all
   * other nodes when it is 0). With an additional repository (a fork, a pool), the new
   * repository lives where that one does. The repository ID is reserved last, so a failed
   * routing does not waste one; an existing repository fails the reservation.
   */
  async routeRepositoryCreation(
    virtualStorage: string,
    relativePath: string,
    additionalRelativePath: string,
  ): Promise<MutatorRoute> {
    let additional: RepositoryMetadata | undefined;
    if (additionalRelativePath !== "") {
      try {
        additional = await this.store.getRepositoryMetadataByPath(virtualStorage, additionalRelativePath);
      } catch (err) {
        if (err instanceof RepositoryNotFoundError) {
          throw new AdditionalRepositoryNotFoundError(virtualStorage, additionalRelativePath);
        }
        throw wrapError("resolve additional replica metadata", err);
      }
    }
    const assigned = this.assignNodes(virtualStorage, additional);
    const repositoryId = await this.store.reserveRepositoryId(virtualStorage, relativePath).catch((err: unknown) => {
      throw wrapError("reserve repository id", err);
    });
    return {
      repositoryId,
      replicaPath: replicaPathFor(relativePath, repositoryId),
      additionalReplicaPath: additional?.replicaPath ?? "",
      ...assigned,
    };
  }

  private assignNodes(
    virtualStorage: string,
    additional: RepositoryMetadata | undefined,
  ): Pick<MutatorRoute, "primary" | "secondaries" | "replicationTargets"> {
    const healthy = this.healthyNodes(virtualStorage);
    const healthyByStorage = new Map(healthy.map((n) => [n.storage, n]));
    if (additional) {
      const primary = additional.primary === null ? undefined : healthyByStorage.get(additional.primary);
      if (!primary) throw new PrimaryNotHealthyError();
      const secondaries: GitalyNode[] = [];
      const replicationTargets: string[] = [];
      for (const replica of additional.replicas) {
        if (!replica.assigned || replica.storage === primary.storage) continue;
        const node = healthyByStorage.get(replica.storage);
        // A replica that differs from the source would make the new repository differ too.
        if (!node || replica.generation !== additional.generation) replicationTargets.push(replica.storage);
        else secondaries.push(node);
      }
      return { primary, secondaries, replicationTargets };
    }

    const primary = this.pickRandom(healthy);
    const factor = this.replicationFactors[virtualStorage] ?? 0;
    if (factor === 1) return { primary, secondaries: [], replicationTargets: [] };
    let others = this.nodes.nodes(virtualStorage).filter((n) => n.storage !== primary.storage);
    if (factor > 0) others = shuffle([...others], this.random).slice(0, Math.max(0, factor - 1));
    const secondaries: GitalyNode[] = [];
    const replicationTargets: string[] = [];
    for (const node of others) {
      if (healthyByStorage.has(node.storage)) secondaries.push(node);
      else replicationTargets.push(node.storage);
    }
    return { primary, secondaries, replicationTargets };
  }

  async routeRepositoryMaintenance(virtualStorage: string, relativePath: string): Promise<MaintenanceRoute> {
    const healthy = this.healthyNodes(virtualStorage);
    const healthyByStorage = new Map(healthy.map((n) => [n.storage, n]));
    const metadata = await this.store
      .getRepositoryMetadataByPath(virtualStorage, relativePath)
      .catch((err: unknown) => {
        throw wrapError("getting repository metadata", err);
      });
    const nodes: GitalyNode[] = [];
    for (const replica of metadata.replicas) {
      const node = healthyByStorage.get(replica.storage);
      // Unassigned replicas are not created yet or about to be deleted; missing ones need no care.
      if (!node || !replica.assigned || replica.generation < 0) continue;
      nodes.push(node);
    }
    if (nodes.length === 0) throw new NoHealthyNodesError();
    return { repositoryId: metadata.repositoryId, replicaPath: metadata.replicaPath, nodes };
  }
}
