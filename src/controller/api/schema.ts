// The GitalyCluster API (gitaly.dev/v1alpha1): the single source of truth for the
// spec and status. The CRD's OpenAPI schema (crds/) is generated from these zod
// schemas by ./crd.ts; defaults and CEL rules declared here end up in both.
import type { V1Affinity, V1Toleration, V1TopologySpreadConstraint } from "@kubernetes/client-node";
import { z } from "zod";
import { withCrdMeta, withRules } from "./crd-meta.js";
import { DURATION_PATTERN, isDuration, isQuantity, parseDuration, parseQuantity, QUANTITY_PATTERN } from "./units.js";

// ---------------------------------------------------------------------------------
// Building blocks

const quantityString = () =>
  z.string().max(64).regex(new RegExp(QUANTITY_PATTERN), "must be a Kubernetes quantity such as 10Gi");

const durationString = () => z.string().max(64).regex(new RegExp(DURATION_PATTERN), "must be a duration such as 90m");

/** A resource quantity as users write it: `cpu: 1` (integer) or `memory: 512Mi` (string). */
const intOrStringQuantity = withCrdMeta(z.union([z.int(), quantityString()]), { intOrString: true });

/** Embedded core/v1 types: the API server validates them where they land (the pod template). */
function embedded<T>(description: string) {
  return withCrdMeta(
    z.custom<T>((v) => typeof v === "object" && v !== null && !Array.isArray(v), "must be an object"),
    { openAPI: { type: "object", description, "x-kubernetes-preserve-unknown-fields": true } },
  );
}

const dnsSubdomain = () =>
  z
    .string()
    .min(1)
    .max(253)
    .regex(/^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/, "must be a DNS subdomain name");

const secretKey = () =>
  z
    .string()
    .min(1)
    .max(253)
    .regex(/^[-._a-zA-Z0-9]+$/, "must be a Secret key");

/** A key in a Secret of the cluster's namespace. */
const secretKeyRef = (defaultKey: string) =>
  z
    .object({
      name: dnsSubdomain().describe("Name of the Secret, in the GitalyCluster's namespace."),
      key: secretKey().default(defaultKey).describe(`Key in the Secret (default "${defaultKey}").`),
    })
    .describe("A key in a Secret of the GitalyCluster's namespace.");

const storageSizeNeverShrinks = withRules(
  quantityString().describe('Requested size of each volume, a quantity ("50Gi"). It can grow, never shrink.'),
  [
    {
      rule: "quantity(self).isGreaterThan(quantity('0'))",
      message: "storage size must be greater than zero",
      holds: (self) => !isQuantity(self) || parseQuantity(self) > 0,
    },
    {
      rule: "!isQuantity(self) || !isQuantity(oldSelf) || quantity(self).compareTo(quantity(oldSelf)) >= 0",
      message: "storage cannot shrink",
      transition: true,
      holds: (self, oldSelf) =>
        !isQuantity(self) || !isQuantity(oldSelf) || parseQuantity(self) >= parseQuantity(oldSelf),
    },
  ],
);

const storageSchema = () =>
  withRules(
    z
      .object({
        size: storageSizeNeverShrinks,
        storageClassName: dnsSubdomain()
          .optional()
          .describe("StorageClass of the volumes; the cluster default when absent. Cannot be changed later."),
      })
      .describe("Persistent volume of each pod."),
    [
      {
        rule:
          "has(self.storageClassName) == has(oldSelf.storageClassName) && " +
          "(!has(self.storageClassName) || self.storageClassName == oldSelf.storageClassName)",
        message: "storageClassName cannot be changed",
        fieldPath: ".storageClassName",
        transition: true,
        holds: (self, oldSelf) => self.storageClassName === oldSelf.storageClassName,
      },
    ],
  );

export const resourceRequirementsSchema = z
  .object({
    limits: z.record(z.string(), intOrStringQuantity).optional().describe("Maximum resources (cpu, memory, ...)."),
    requests: z.record(z.string(), intOrStringQuantity).optional().describe("Minimum resources (cpu, memory, ...)."),
  })
  .describe("Compute resources of each container (core/v1 ResourceRequirements).");

/** Placement and resources shared by every pod kind the operator runs. */
const podPlacement = {
  resources: resourceRequirementsSchema.optional(),
  affinity: embedded<V1Affinity>(
    "Pod affinity (core/v1 Affinity). Merged with the operator's anti-affinity.",
  ).optional(),
  tolerations: withCrdMeta(z.array(embedded<V1Toleration>("A core/v1 Toleration.")), { listType: "atomic" })
    .optional()
    .describe("Pod tolerations (core/v1 Toleration)."),
  topologySpreadConstraints: withCrdMeta(
    z.array(embedded<V1TopologySpreadConstraint>("A core/v1 TopologySpreadConstraint.")),
    { listType: "atomic" },
  )
    .optional()
    .describe("Pod topology spread constraints (core/v1 TopologySpreadConstraint)."),
  nodeSelector: z.record(z.string(), z.string()).optional().describe("Node labels the pods must match."),
};

// ---------------------------------------------------------------------------------
// Spec

export const imagePullPolicies = ["Always", "IfNotPresent", "Never"] as const;

export const concurrencyLimitSchema = z
  .object({
    rpc: z
      .string()
      .max(256)
      .regex(
        /^\/gitaly\.[A-Za-z]+\/[A-Za-z]+$/,
        'must be a full RPC name such as "/gitaly.SmartHTTPService/PostUploadPackWithSidechannel"',
      )
      .describe("Full RPC name, e.g. /gitaly.SmartHTTPService/PostUploadPackWithSidechannel."),
    maxPerRepo: z.int().min(1).describe("Concurrent calls per repository (Gitaly's max_per_repo)."),
    maxQueueSize: z.int().min(1).optional().describe("Calls waiting per repository before new ones are refused."),
    maxQueueWait: durationString().optional().describe('Longest time a call waits for a slot ("1s").'),
  })
  .describe("A Gitaly [[concurrency]] limit.");

export const gitalySpecSchema = z
  .object({
    replicas: z.int().min(1).max(64).default(3).describe("Gitaly nodes (one storage each). Scaling down is refused."),
    storage: storageSchema(),
    concurrency: withCrdMeta(z.array(concurrencyLimitSchema), { listType: "map", listMapKeys: ["rpc"] })
      .optional()
      .describe("Per-RPC concurrency limits."),
    ...podPlacement,
  })
  .describe("The Gitaly nodes: a StatefulSet, one storage per pod.");

export const failoverSchema = z
  .object({
    enabled: z.boolean().default(true).describe("Elect a new primary when a Gitaly node fails."),
    readErrorThresholdCount: z
      .int()
      .min(1)
      .optional()
      .describe("Read errors within the window that mark a node unhealthy."),
    writeErrorThresholdCount: z
      .int()
      .min(1)
      .optional()
      .describe("Write errors within the window that mark a node unhealthy."),
    errorThresholdWindow: durationString().optional().describe('Window for the error thresholds ("20s").'),
  })
  .describe("Praefect failover.");

/** Praefect's per-stream receive window on its connections to Gitaly, unless the spec says otherwise. */
export const DEFAULT_PRAEFECT_STREAM_WINDOW_BYTES = 4 * 1024 * 1024;

export const praefectYamuxSchema = z
  .object({
    maximumStreamWindowSizeBytes: z
      .int()
      .min(262_144)
      .max(256 * 1024 * 1024)
      .default(DEFAULT_PRAEFECT_STREAM_WINDOW_BYTES)
      .describe(
        "yamux.maximum_stream_window_size_bytes: how much a node may send on one stream (a clone's pack) before Praefect grants more. " +
          "Upstream's 256 KiB costs a round trip per 128 KiB relayed; each relayed clone may hold up to this much in Praefect while its client reads slower than the node sends.",
      ),
  })
  .describe("Multiplexing of Praefect's connections to the Gitaly nodes.");

export const praefectSpecSchema = z
  .object({
    replicas: z.int().min(1).max(32).default(2).describe("Praefect routers (a Deployment)."),
    replicationFactor: z
      .int()
      .min(1)
      .optional()
      .describe("Copies of each repository; at most gitaly.replicas. Default: min(3, gitaly.replicas)."),
    failover: failoverSchema.prefault({}),
    yamux: praefectYamuxSchema.prefault({}),
    ...podPlacement,
  })
  .describe("The Praefect routers.");

export const managedDatabaseSchema = z
  .object({
    storage: storageSchema(),
    image: z.string().min(1).max(512).optional().describe("PostgreSQL image; the operator's default when absent."),
    resources: resourceRequirementsSchema.optional(),
  })
  .describe("A PostgreSQL StatefulSet run by the operator, with a generated password.");

export const sslModes = ["disable", "allow", "prefer", "require", "verify-ca", "verify-full"] as const;

export const externalDatabaseSchema = z
  .object({
    host: z.string().min(1).max(253).describe("Host name or address of the PostgreSQL server."),
    port: z.int().min(1).max(65535).default(5432).describe("PostgreSQL port."),
    dbname: z.string().min(1).max(63).describe("Database holding Praefect's metadata."),
    user: z.string().min(1).max(63).describe("PostgreSQL role Praefect connects as."),
    passwordSecretRef: secretKeyRef("password"),
    sslMode: z.enum(sslModes).default("prefer").describe("libpq sslmode."),
    caSecretRef: secretKeyRef("ca.crt").optional().describe("CA bundle that signs the server's certificate."),
  })
  .describe("A PostgreSQL server managed elsewhere.");

export const databaseSpecSchema = withRules(
  z
    .object({
      managed: managedDatabaseSchema.optional(),
      external: externalDatabaseSchema.optional(),
    })
    .describe("Praefect's PostgreSQL database: exactly one of managed or external."),
  [
    {
      rule: "has(self.managed) != has(self.external)",
      message: "exactly one of spec.database.managed and spec.database.external must be set",
      holds: (self) => (self.managed === undefined) !== (self.external === undefined),
    },
  ],
);

export const tlsModes = ["Disabled", "SelfSigned", "CertManager", "Secret"] as const;

export const issuerRefSchema = z
  .object({
    name: dnsSubdomain().describe("Name of the cert-manager issuer."),
    kind: z.string().min(1).max(63).default("Issuer").describe("Issuer or ClusterIssuer."),
    group: z.string().min(1).max(253).default("cert-manager.io").describe("API group of the issuer."),
  })
  .describe("The cert-manager issuer that signs the certificates (mode CertManager).");

export const tlsSpecSchema = withRules(
  z
    .object({
      mode: z
        .enum(tlsModes)
        .default("SelfSigned")
        .describe("Disabled (plaintext), SelfSigned (operator CA), CertManager (issuerRef) or Secret (secretName)."),
      issuerRef: issuerRefSchema.optional(),
      secretName: dnsSubdomain()
        .optional()
        .describe("kubernetes.io/tls Secret with tls.crt, tls.key and ca.crt (mode Secret)."),
      duration: durationString().default("2160h").describe("Validity of issued certificates."),
      renewBefore: durationString().default("168h").describe("Renew this long before expiry."),
    })
    .describe("TLS between GitLab, Praefect and Gitaly."),
  [
    {
      rule: "(self.mode == 'CertManager') == has(self.issuerRef)",
      message: "spec.tls.issuerRef is required when mode is CertManager and not allowed otherwise",
      fieldPath: ".issuerRef",
      holds: (self) => (self.mode === "CertManager") === (self.issuerRef !== undefined),
    },
    {
      rule: "(self.mode == 'Secret') == has(self.secretName)",
      message: "spec.tls.secretName is required when mode is Secret and not allowed otherwise",
      fieldPath: ".secretName",
      holds: (self) => (self.mode === "Secret") === (self.secretName !== undefined),
    },
    {
      rule: "duration(self.renewBefore) < duration(self.duration)",
      message: "spec.tls.renewBefore must be shorter than spec.tls.duration",
      fieldPath: ".renewBefore",
      holds: (self) =>
        !isDuration(self.renewBefore) ||
        !isDuration(self.duration) ||
        parseDuration(self.renewBefore) < parseDuration(self.duration),
    },
  ],
);

export const tokenRotationSchema = z
  .object({
    generation: withRules(
      z
        .int()
        .min(0)
        .default(0)
        .describe(
          "Bump to rotate both tokens without downtime (auth transitioning). Never decreases. Abort a rotation with the annotation gitaly.dev/abort-rotation set to its generation.",
        ),
      [
        {
          rule: "self >= oldSelf",
          message: "spec.auth.rotation.generation cannot decrease",
          transition: true,
          holds: (self, oldSelf) => self >= oldSelf,
        },
      ],
    ),
  })
  .describe("Token rotation: status.auth.generation catches up with generation when a rotation finishes.");

export const authSpecSchema = z
  .object({
    praefectTokenSecretRef: secretKeyRef("token")
      .optional()
      .describe("Token clients (GitLab) use to call Praefect. Generated by the operator when absent."),
    gitalyTokenSecretRef: secretKeyRef("token")
      .optional()
      .describe("Token Praefect uses to call the Gitaly nodes. Generated by the operator when absent."),
    rotation: tokenRotationSchema.prefault({}),
  })
  .describe("Authentication tokens.");

export const virtualStorageSchema = z
  .object({
    name: withRules(
      z
        .string()
        .min(1)
        .max(63)
        .regex(/^[A-Za-z0-9][A-Za-z0-9._-]*$/, "must be letters, digits, '.', '_' or '-'")
        .default("default")
        .describe("Virtual storage name GitLab uses (its repositories' storage). Cannot be changed."),
      [
        {
          rule: "self == oldSelf",
          message: "spec.virtualStorage.name cannot be changed",
          transition: true,
          holds: (self, oldSelf) => self === oldSelf,
        },
      ],
    ),
  })
  .describe("The virtual storage Praefect exposes.");

export const gitalyClusterSpecSchema = withRules(
  z
    .object({
      image: z
        .string()
        .min(1)
        .max(512)
        .optional()
        .describe("Image with the gitaly and praefect programs; the operator's default when absent."),
      imagePullPolicy: z.enum(imagePullPolicies).default("IfNotPresent").describe("Pull policy of every container."),
      virtualStorage: virtualStorageSchema.prefault({}),
      gitaly: gitalySpecSchema,
      praefect: praefectSpecSchema.prefault({}),
      database: databaseSpecSchema,
      tls: tlsSpecSchema.prefault({}),
      auth: authSpecSchema.prefault({}),
      paused: z.boolean().default(false).describe("Stop reconciling (for manual repair); status reports Paused."),
    })
    .describe("Desired state of a Gitaly Cluster."),
  [
    {
      rule: "!has(self.praefect) || !has(self.praefect.replicationFactor) || self.praefect.replicationFactor <= self.gitaly.replicas",
      message: "spec.praefect.replicationFactor must not exceed spec.gitaly.replicas",
      fieldPath: ".praefect.replicationFactor",
      holds: (self) =>
        self.praefect.replicationFactor === undefined || self.praefect.replicationFactor <= self.gitaly.replicas,
    },
  ],
);

// ---------------------------------------------------------------------------------
// Status

export const conditionTypes = [
  "Ready",
  "Progressing",
  "Degraded",
  "DatabaseReady",
  "MigrationsApplied",
  "TLSReady",
  "TokenRotation",
  "ReconciliationPaused",
] as const;

export const phases = ["Pending", "Provisioning", "Ready", "Updating", "Degraded", "Paused", "Failed"] as const;

const dateTime = () => z.iso.datetime({ offset: true });

/** metav1.Condition. */
export const conditionSchema = z.object({
  type: z
    .string()
    .min(1)
    .max(316)
    .regex(
      /^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*\/)?(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])$/,
    )
    .describe("Condition type, e.g. Ready."),
  status: z.enum(["True", "False", "Unknown"]),
  observedGeneration: z.int().min(0).optional().describe("metadata.generation the condition was computed from."),
  lastTransitionTime: dateTime().describe("When status last changed."),
  reason: z
    .string()
    .min(1)
    .max(1024)
    .regex(/^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$/)
    .describe("CamelCase reason."),
  message: z.string().max(32768).describe("Human-readable details."),
});

const tokenGenerationsSchema = z.object({
  internal: z.string().max(64).describe("Internal token (Praefect to Gitaly)."),
  client: z.string().max(64).describe("Client token (GitLab to Praefect)."),
});

const replicaStatus = (what: string) =>
  z
    .object({
      replicas: z.int().min(0).optional().describe(`Desired ${what} pods.`),
      readyReplicas: z.int().min(0).optional().describe(`Ready ${what} pods.`),
    })
    .describe(`${what} pods.`);

export const gitalyClusterStatusSchema = z
  .object({
    observedGeneration: z.int().min(0).optional().describe("metadata.generation the status reflects."),
    phase: z.enum(phases).optional().describe("Short summary for kubectl get."),
    message: z.string().max(32768).optional().describe("Human-readable explanation of the phase."),
    conditions: withCrdMeta(z.array(conditionSchema), { listType: "map", listMapKeys: ["type"] }).optional(),
    gitaly: replicaStatus("Gitaly").optional(),
    praefect: replicaStatus("Praefect").optional(),
    certificates: z
      .object({
        secretName: z.string().optional().describe("Secret holding the serving certificate."),
        notAfter: dateTime().optional().describe("Expiry of the serving certificate."),
      })
      .optional()
      .describe("TLS certificates in use."),
    auth: z
      .object({
        phase: z
          .enum(["Stable", "Transitioning", "RollingOut", "Verifying", "Enforcing"])
          .optional()
          .describe("Step of the token rotation; Stable when none is in progress."),
        generation: z.int().min(0).optional().describe("Rotation generation of the tokens in force."),
        targetGeneration: z.int().min(0).optional().describe("Generation being rotated to."),
        aborting: z.boolean().optional().describe("The rotation is going back to the old tokens."),
        abortedGeneration: z.int().min(0).optional().describe("Last generation whose rotation was aborted."),
        outcome: z.enum(["Completed", "Aborted"]).optional().describe("How the last rotation ended."),
        startedAt: dateTime().optional().describe("When the current or last rotation started."),
        finishedAt: dateTime().optional().describe("When the last rotation finished."),
        lastObservation: z.string().max(4096).optional().describe("What the rotation saw last, or what it waits on."),
        from: tokenGenerationsSchema.optional().describe("Generations (hash prefixes) of the tokens before."),
        to: tokenGenerationsSchema.optional().describe("Generations (hash prefixes) of the tokens after."),
        quietSince: dateTime().optional().describe("Verifying: start of the current period without failures."),
        baseline: z
          .record(z.string(), z.int().min(0))
          .optional()
          .describe("Verifying: failure counts per server at quietSince."),
      })
      .optional()
      .describe("Token rotation (never a token value: generations are hash prefixes)."),
    migrations: z
      .object({
        applied: z.int().min(0).optional().describe("Praefect schema migrations applied."),
        lastApplied: z.string().max(256).optional().describe("Name of the newest applied migration."),
      })
      .optional()
      .describe("Praefect database schema."),
  })
  .describe("Observed state of a Gitaly Cluster.");

// ---------------------------------------------------------------------------------
// Types

/** The spec as written by users (defaults not yet applied). */
export type GitalyClusterSpecInput = z.input<typeof gitalyClusterSpecSchema>;
/** The spec with every static default applied (what the API server stores). */
export type GitalyClusterSpec = z.output<typeof gitalyClusterSpecSchema>;
export type GitalySpec = GitalyClusterSpec["gitaly"];
export type PraefectSpec = GitalyClusterSpec["praefect"];
export type DatabaseSpec = GitalyClusterSpec["database"];
export type ManagedDatabaseSpec = z.output<typeof managedDatabaseSchema>;
export type ExternalDatabaseSpec = z.output<typeof externalDatabaseSchema>;
export type TlsSpec = GitalyClusterSpec["tls"];
export type TlsMode = (typeof tlsModes)[number];
export type AuthSpec = GitalyClusterSpec["auth"];
export type ConcurrencyLimit = z.output<typeof concurrencyLimitSchema>;
export type ResourceRequirements = z.output<typeof resourceRequirementsSchema>;
export type SslMode = (typeof sslModes)[number];
export type GitalyClusterStatus = z.output<typeof gitalyClusterStatusSchema>;
export type Condition = z.output<typeof conditionSchema>;
export type ConditionType = (typeof conditionTypes)[number];
export type Phase = (typeof phases)[number];
