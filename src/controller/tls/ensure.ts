// The one call the reconciler makes for spec.tls.mode SelfSigned: given what the Secrets hold,
// return the CA and serving certificate to store, reusing whatever can be kept.
import {
  createCertificateAuthority,
  issueCertificate,
  loadCertificateAuthority,
  type PemPair,
  readCertificate,
} from "../../shared/tls/certificates.js";
import {
  CA_RENEW_BEFORE_MS,
  CA_VALIDITY_MS,
  type CaPlan,
  type CertificatePlan,
  checkRenewalPolicy,
  formatDuration,
  type PemInput,
  planCa,
  planCertificate,
} from "./plan.js";

const DAY_MS = 24 * 60 * 60 * 1000;

export interface EnsureClusterCertificatesInput {
  /** ca.crt / ca.key from the CA Secret, if it exists. */
  caPem?: PemInput | undefined;
  /** tls.crt / tls.key from the serving Secret, if it exists. */
  servingPem?: PemInput | undefined;
  /** Wanted subjectAltNames: servingCertificateHosts(...). */
  hosts: readonly string[];
  now: Date;
  /** spec.tls.duration in ms (parseDuration). */
  durationMs: number;
  /** spec.tls.renewBefore in ms; shorter than durationMs. */
  renewBeforeMs: number;
  /** Subject CN of the serving certificate, e.g. `<cluster>-gitaly`. */
  commonName: string;
  /** Subject CN of a new CA; `<commonName>-ca` unless given. */
  caCommonName?: string;
  /** Lifetime of a new CA; CA_VALIDITY_MS (ten years) unless given. */
  caValidityMs?: number;
  /** Replace the CA when less than this is left; CA_RENEW_BEFORE_MS unless given, never below renewBeforeMs + 1 day. */
  caRenewBeforeMs?: number;
}

export interface ClusterCertificates {
  /** Store as ca.crt / ca.key; ca.certificate is also what clients trust. */
  ca: PemPair;
  /** Store as tls.crt / tls.key (and ca.crt beside them). */
  serving: PemPair;
  /** What happened to the CA: kept, or issued and why. */
  caAction: CaPlan;
  /** What happened to the serving certificate: kept, or issued and why. */
  servingAction: CertificatePlan;
  /** True when either was issued, i.e. the Secrets must be written. */
  changed: boolean;
  /** Expiry of the serving certificate (status.certificates.notAfter). */
  notAfter: Date;
  caNotAfter: Date;
  /** The earliest instant something must be renewed (serving or CA): requeue the reconcile then. */
  renewAt: Date;
}

/**
 * Plans the CA, then the serving certificate against the CA that results, and issues only what
 * the plans ask for. The serving certificate never outlives its CA: its validity is cut to the
 * CA's remaining life, and the CA is replaced while that remaining life still exceeds
 * renewBefore, so a certificate issued here is never already due for renewal.
 */
export async function ensureClusterCertificates(input: EnsureClusterCertificatesInput): Promise<ClusterCertificates> {
  const { hosts, now, durationMs, renewBeforeMs, commonName } = input;
  checkRenewalPolicy(durationMs, renewBeforeMs);
  if (hosts.length === 0) throw new Error(`serving certificate ${commonName}: no hosts for its subjectAltNames`);
  const caValidityMs = input.caValidityMs ?? CA_VALIDITY_MS;
  const caRenewBeforeMs = Math.max(input.caRenewBeforeMs ?? CA_RENEW_BEFORE_MS, renewBeforeMs + DAY_MS);
  if (caRenewBeforeMs >= caValidityMs) {
    throw new Error(
      `CA validity ${formatDuration(caValidityMs)} must exceed its renewal window ${formatDuration(caRenewBeforeMs)}`,
    );
  }

  const caAction = planCa({ current: input.caPem, now, renewBeforeMs: caRenewBeforeMs });
  const authority =
    caAction.action === "keep"
      ? await loadCertificateAuthority({
          certificate: input.caPem?.certificate ?? "",
          privateKey: input.caPem?.privateKey ?? "",
        })
      : await createCertificateAuthority(input.caCommonName ?? `${commonName}-ca`, { validityMs: caValidityMs, now });
  const ca: PemPair = { certificate: authority.certificate, privateKey: authority.privateKey };
  const caNotAfter = caAction.action === "keep" ? caAction.notAfter : readCertificate(ca.certificate).notAfter;
  const caRenewAt = new Date(caNotAfter.getTime() - caRenewBeforeMs);

  const servingAction = planCertificate({ current: input.servingPem, ca, hosts, now, durationMs, renewBeforeMs });
  let serving: PemPair;
  let notAfter: Date;
  let servingRenewAt: Date;
  if (servingAction.action === "keep") {
    serving = { certificate: input.servingPem?.certificate ?? "", privateKey: input.servingPem?.privateKey ?? "" };
    notAfter = servingAction.notAfter;
    servingRenewAt = servingAction.renewAt;
  } else {
    const validityMs = Math.min(durationMs, caNotAfter.getTime() - now.getTime());
    const issued = await issueCertificate(authority, {
      commonName,
      hosts: [...hosts],
      validityMs,
      usage: "server",
      now,
    });
    serving = { certificate: issued.certificate, privateKey: issued.privateKey };
    notAfter = issued.notAfter;
    servingRenewAt = new Date(notAfter.getTime() - renewBeforeMs);
  }

  return {
    ca,
    serving,
    caAction,
    servingAction,
    changed: caAction.action === "issue" || servingAction.action === "issue",
    notAfter,
    caNotAfter,
    renewAt: servingRenewAt < caRenewAt ? servingRenewAt : caRenewAt,
  };
}
