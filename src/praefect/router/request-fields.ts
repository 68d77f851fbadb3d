// Finds and rewrites the fields Praefect routes by in a decoded request: the target repository,
// the additional repository and the storage name, located through the proto annotations
// (shared/proto/operations.ts). Like upstream's protoregistry, only populated fields count, and
// exactly one populated flagged field is expected; an `ObjectPool` field stands for its
// `repository`.
import type { DescField, DescMessage, Message } from "@bufbuild/protobuf";
import { isReflectMessage, type ReflectMessage, reflect } from "@bufbuild/protobuf/reflect";
import type { Repository } from "../../gen/shared_pb.js";
import {
  additionalRepositoryFields,
  type FieldPath,
  storageFields,
  targetRepositoryFields,
} from "../../shared/proto/operations.js";

/** The request has no populated field of the kind asked for. */
export class RepositoryFieldNotFoundError extends Error {
  constructor() {
    super("repository field not found");
    this.name = "RepositoryFieldNotFoundError";
  }
}

export class FieldAmbiguousError extends Error {
  constructor() {
    super("field is ambiguous");
    this.name = "FieldAmbiguousError";
  }
}

export class StorageFieldNotFoundError extends Error {
  constructor() {
    super("target storage field not found");
    this.name = "StorageFieldNotFoundError";
  }
}

/** Where a request type keeps what routing needs; computed once per method. */
export interface RequestFields {
  readonly input: DescMessage;
  readonly target: readonly FieldPath[];
  readonly additional: readonly FieldPath[];
  readonly storage: readonly FieldPath[];
}

export function requestFieldsOf(input: DescMessage): RequestFields {
  return {
    input,
    target: targetRepositoryFields(input),
    additional: additionalRepositoryFields(input),
    storage: storageFields(input),
  };
}

interface PopulatedField {
  owner: ReflectMessage;
  field: DescField;
}

/** The flagged fields that are populated in `root`, following only populated parents. */
function populated(root: ReflectMessage, paths: readonly FieldPath[]): PopulatedField[] {
  const found: PopulatedField[] = [];
  for (const path of paths) {
    let owner: ReflectMessage | undefined = root;
    for (let i = 0; owner && i < path.length - 1; i++) {
      const step = path[i] as DescField;
      if (!owner.isSet(step)) {
        owner = undefined;
        break;
      }
      const next: unknown = owner.get(step);
      owner = isReflectMessage(next) ? next : undefined;
    }
    const last = path[path.length - 1];
    if (owner && last && owner.isSet(last)) found.push({ owner, field: last });
  }
  return found;
}

function single(found: PopulatedField[], notFound: () => Error): PopulatedField {
  if (found.length > 1) throw new FieldAmbiguousError();
  const only = found[0];
  if (!only) throw notFound();
  return only;
}

/** The Repository a flagged field holds (an ObjectPool's repository), or undefined if unset. */
function repositoryIn(found: PopulatedField): Repository | undefined {
  const value: unknown = found.owner.get(found.field);
  if (!isReflectMessage(value)) throw new Error(`expected repository message, got ${found.field.fieldKind}`);
  switch (value.desc.typeName) {
    case "gitaly.Repository":
      return value.message as Repository;
    case "gitaly.ObjectPool": {
      const field = value.desc.fields.find((f) => f.number === 1);
      if (!field || !value.isSet(field)) return undefined;
      const repo: unknown = value.get(field);
      return isReflectMessage(repo) ? (repo.message as Repository) : undefined;
    }
    default:
      throw new Error(`repository message has unexpected type ${value.desc.typeName}`);
  }
}

/** The request's target repository, which callers may modify in place. */
export function targetRepository(fields: RequestFields, request: Message): Repository {
  const found = single(
    populated(reflect(fields.input, request), fields.target),
    () => new RepositoryFieldNotFoundError(),
  );
  const repo = repositoryIn(found);
  if (!repo) throw new RepositoryFieldNotFoundError();
  return repo;
}

/** The request's additional repository; undefined when the request has none or it is unset. */
export function additionalRepository(fields: RequestFields, request: Message): Repository | undefined {
  if (fields.additional.length === 0) return undefined;
  const found = populated(reflect(fields.input, request), fields.additional);
  if (found.length === 0) return undefined;
  return repositoryIn(single(found, () => new RepositoryFieldNotFoundError()));
}

/** Reads and writes the request's `(storage)` field. */
export interface StorageField {
  readonly value: string;
  set(storage: string): void;
}

export function storageField(fields: RequestFields, request: Message): StorageField {
  const found = single(
    populated(reflect(fields.input, request), fields.storage),
    () => new StorageFieldNotFoundError(),
  );
  if (found.field.fieldKind !== "scalar" || typeof found.owner.get(found.field) !== "string") {
    throw new Error(`expected string, got ${found.field.fieldKind}`);
  }
  return {
    value: found.owner.get(found.field) as string,
    set: (storage) => found.owner.set(found.field, storage),
  };
}
