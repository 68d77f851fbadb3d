// The flags of `gitaly-cluster up`, apart from the runner so the program's command table
// can show them without loading the runner.

export const DEFAULT_HTTP_PORT = 8181;
export const DEFAULT_PRAEFECT_PORT = 2305;
export const DEFAULT_PRAEFECT_TLS_PORT = 3305;
export const UP_USAGE = `usage: gitaly-cluster up [--sample FILE] [--state-dir DIR] [--reset]
                         [--http-port N] [--praefect-port N] [--praefect-tls-port N] [--log-level LEVEL]

Runs a Gitaly Cluster from a GitalyCluster manifest on this machine, on 127.0.0.1 only:
an embedded PostgreSQL, the Gitaly nodes, the Praefect routers, and an HTTP git gateway
in front of them (clone, fetch, push; a push to a new path creates the repository).
Stops on Ctrl-C (a second Ctrl-C does not wait).

  --sample FILE           the GitalyCluster manifest (default: config/samples/minimal.yaml)
  --state-dir DIR         repositories, database, tokens, CA, configs and logs, kept across runs
                          (default: \${XDG_STATE_HOME:-~/.local/state}/gitaly-cluster/<metadata.name>)
  --reset                 delete the state directory's contents first
  --http-port N           the gateway's port (default: ${DEFAULT_HTTP_PORT}; 0 picks a free one)
  --praefect-port N       the first Praefect's plaintext gRPC port (default: ${DEFAULT_PRAEFECT_PORT})
  --praefect-tls-port N   its TLS port, when the manifest asks for TLS (default: ${DEFAULT_PRAEFECT_TLS_PORT})
  --log-level LEVEL       debug, info, warn or error, for every process (default: info)

When the cluster serves, a summary goes to stdout, followed by one line
"READY {json}" for scripts.
`;
