// A throwaway "Widget" custom resource for API-server tests: namespaced, version v1,
// with a status subresource; each suite passes its own group and schema parts.
import type { V1CustomResourceDefinition, V1JSONSchemaProps } from "@kubernetes/client-node";

export interface WidgetCrdOptions {
  group: string;
  /** OpenAPI schema of .spec. */
  spec: V1JSONSchemaProps;
  /** Properties of .status. */
  status: Record<string, V1JSONSchemaProps>;
}

export function widgetCrd({ group, spec, status }: WidgetCrdOptions): V1CustomResourceDefinition {
  return {
    apiVersion: "apiextensions.k8s.io/v1",
    kind: "CustomResourceDefinition",
    metadata: { name: `widgets.${group}` },
    spec: {
      group,
      scope: "Namespaced",
      names: { plural: "widgets", singular: "widget", kind: "Widget", listKind: "WidgetList" },
      versions: [
        {
          name: "v1",
          served: true,
          storage: true,
          subresources: { status: {} },
          schema: {
            openAPIV3Schema: {
              type: "object",
              properties: { spec, status: { type: "object", properties: status } },
            },
          },
        },
      ],
    },
  };
}
