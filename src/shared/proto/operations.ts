// Reads Gitaly's routing annotations (lint.proto) from the descriptors at run time.
// Praefect builds its routing table from these; nothing here is hand-maintained.
import type { DescField, DescMessage, DescMethod, DescService } from "@bufbuild/protobuf";
import { getOption, hasOption } from "@bufbuild/protobuf";
import {
  additional_repository,
  intercepted,
  OperationMsg_Operation,
  OperationMsg_Scope,
  op_type,
  storage,
  target_repository,
} from "../../gen/lint_pb.js";

export type Operation = "unknown" | "mutator" | "accessor" | "maintenance";
export type Scope = "repository" | "storage" | "partition";

export interface MethodRouting {
  /** `/gitaly.Service/Method` */
  path: string;
  operation: Operation;
  scope: Scope;
  /** The service is answered by Praefect itself, never proxied. */
  intercepted: boolean;
}

const operations: Record<OperationMsg_Operation, Operation> = {
  [OperationMsg_Operation.UNKNOWN]: "unknown",
  [OperationMsg_Operation.MUTATOR]: "mutator",
  [OperationMsg_Operation.ACCESSOR]: "accessor",
  [OperationMsg_Operation.MAINTENANCE]: "maintenance",
};

const scopes: Record<OperationMsg_Scope, Scope> = {
  [OperationMsg_Scope.REPOSITORY]: "repository",
  [OperationMsg_Scope.STORAGE]: "storage",
  [OperationMsg_Scope.PARTITION]: "partition",
};

export function isIntercepted(service: DescService): boolean {
  return hasOption(service, intercepted) && getOption(service, intercepted);
}

export function methodRouting(method: DescMethod): MethodRouting {
  const path = `/${method.parent.typeName}/${method.name}`;
  const svcIntercepted = isIntercepted(method.parent);
  if (!hasOption(method, op_type)) {
    return { path, operation: "unknown", scope: "repository", intercepted: svcIntercepted };
  }
  const op = getOption(method, op_type);
  return {
    path,
    operation: operations[op.op] ?? "unknown",
    scope: scopes[op.scopeLevel] ?? "repository",
    intercepted: svcIntercepted,
  };
}

/** A path of field descriptors from the request message down to a flagged field. */
export type FieldPath = readonly DescField[];

function findFlagged(message: DescMessage, flag: typeof target_repository, seen: Set<string>): FieldPath[] {
  if (seen.has(message.typeName)) return [];
  seen.add(message.typeName);
  const found: FieldPath[] = [];
  for (const field of message.fields) {
    if (hasOption(field, flag) && getOption(field, flag)) {
      found.push([field]);
      continue;
    }
    if (field.fieldKind === "message" && field.message) {
      for (const sub of findFlagged(field.message, flag, seen)) found.push([field, ...sub]);
    }
  }
  seen.delete(message.typeName);
  return found;
}

/** Every field path in a request type flagged `(target_repository)`, at any depth. */
export function targetRepositoryFields(message: DescMessage): FieldPath[] {
  return findFlagged(message, target_repository, new Set());
}

/** Every field path in a request type flagged `(additional_repository)`. */
export function additionalRepositoryFields(message: DescMessage): FieldPath[] {
  return findFlagged(message, additional_repository, new Set());
}

/** Every field path in a request type flagged `(storage)`. */
export function storageFields(message: DescMessage): FieldPath[] {
  return findFlagged(message, storage, new Set());
}
