import type { V1ObjectMeta, V1OwnerReference } from "@kubernetes/client-node";
import { API_VERSION, KIND } from "../api/resource.js";
import { type BuildInput, type Component, objectLabels } from "./input.js";

export function ownerReference(input: BuildInput): V1OwnerReference {
  return {
    apiVersion: API_VERSION,
    kind: KIND,
    name: input.cluster.name,
    uid: input.cluster.uid,
    controller: true,
    blockOwnerDeletion: true,
  };
}

/** Metadata of an object owned by the cluster: namespace, labels, controlling owner. */
export function ownedMeta(
  input: BuildInput,
  name: string,
  component: Component,
  annotations?: Record<string, string>,
): V1ObjectMeta {
  return {
    name,
    namespace: input.cluster.namespace,
    labels: objectLabels(input.cluster.name, component),
    ...(annotations && Object.keys(annotations).length > 0 ? { annotations } : {}),
    ownerReferences: [ownerReference(input)],
  };
}
