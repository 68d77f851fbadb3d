// The operator's certificates for spec.tls.mode SelfSigned: which names, whether to renew, and issuing.
export { type ClusterCertificates, type EnsureClusterCertificatesInput, ensureClusterCertificates } from "./ensure.js";
export {
  gitalyHeadlessServiceName,
  praefectServiceName,
  type ServingHostsParams,
  servingCertificateHosts,
} from "./hosts.js";
export {
  type CertificateInspection,
  hostDifference,
  InvalidCertificateError,
  inspectCertificate,
  normalizeHost,
  parsePrivateKey,
} from "./inspect.js";
export {
  CA_RENEW_BEFORE_MS,
  CA_VALIDITY_MS,
  type CaIssueReason,
  type CaPlan,
  type CertificateIssueReason,
  type CertificatePlan,
  checkRenewalPolicy,
  formatDuration,
  type IssuePlan,
  type KeepPlan,
  type PemInput,
  type PlanCaInput,
  type PlanCertificateInput,
  planCa,
  planCertificate,
} from "./plan.js";
