// Where things are mounted inside the pods. The rendered configs refer to secrets by these
// file paths only, so no secret value ever lands in a ConfigMap.
export const GITALY_MOUNTS = {
  configDir: "/etc/gitaly",
  authDir: "/etc/gitaly/auth",
  tlsDir: "/etc/gitaly/tls",
  runtimeDir: "/run/gitaly",
  tmpDir: "/tmp",
} as const;

export const PRAEFECT_MOUNTS = {
  configDir: "/etc/praefect",
  /** The token clients present (Praefect's own [auth]). */
  authDir: "/etc/praefect/auth",
  /** The token Praefect presents to the Gitaly nodes. */
  gitalyAuthDir: "/etc/praefect/gitaly-auth",
  tlsDir: "/etc/praefect/tls",
  databaseCaDir: "/etc/praefect/database-ca",
  tmpDir: "/tmp",
} as const;

export const TOKEN_FILE_NAME = "token";
export const TLS_CERT_KEY = "tls.crt";
export const TLS_KEY_KEY = "tls.key";
export const CA_CERT_KEY = "ca.crt";
