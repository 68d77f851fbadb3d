// Where things are mounted inside the pods. The rendered configs refer to secrets by these
// file paths only, so no secret value ever lands in a ConfigMap.
// The config ConfigMaps are mounted as directories, not with subPath: a subPath mount never
// sees a ConfigMap update, and the token rotation flips [auth] transitioning in running pods.
export const GITALY_MOUNTS = {
  /** One file per node, `<pod name>.toml`. */
  configDir: "/etc/gitaly/config",
  authDir: "/etc/gitaly/auth",
  tlsDir: "/etc/gitaly/tls",
  runtimeDir: "/run/gitaly",
  tmpDir: "/tmp",
} as const;

export const PRAEFECT_MOUNTS = {
  configDir: "/etc/praefect/config",
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

/** The node's config file; the kubelet expands $(POD_NAME) in container args. */
export const GITALY_POD_CONFIG_PATH = `${GITALY_MOUNTS.configDir}/$(POD_NAME).toml`;
export const PRAEFECT_POD_CONFIG_PATH = `${PRAEFECT_MOUNTS.configDir}/config.toml`;
