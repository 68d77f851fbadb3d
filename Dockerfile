# syntax=docker/dockerfile:1
# One image, three programs: gitaly, praefect and gitaly-operator. The first argument names
# the program, the rest are its arguments, which is what the operator's pod specs pass:
#
#   args: ["gitaly", "serve", "/etc/gitaly/config.toml"]
#   args: ["praefect", "-config", "/etc/praefect/config.toml", "serve" | "sql-migrate" | "sql-ping"]
#   docker run --rm gitaly-operator:0.1.0 gitaly-operator --help
#
# Build (the operator's default image is gitaly-operator:<package.json version>):
#   docker build -t gitaly-operator:0.1.0 --build-arg REVISION="$(git rev-parse HEAD)" .
#
# The runtime layout (/app) is made by scripts/lib/install-production.sh, which
# test/integration/image/production-layout.test.ts also runs and starts the programs from.

# Keep equal to .node-version (the test checks it).
ARG NODE_VERSION=24.21.0
ARG DEBIAN_RELEASE=bookworm

FROM node:${NODE_VERSION}-${DEBIAN_RELEASE}-slim AS build
WORKDIR /src
COPY package.json package-lock.json ./
# `npm ci` rejects this lock file (it has no entries for other platforms' optional packages,
# see scripts/lib/toolchain.sh); `npm install` installs it as it is, and a lock it had to
# change is stale, which fails the build.
RUN --mount=type=cache,target=/root/.npm \
    cp package-lock.json /tmp/package-lock.reviewed \
    && npm install --ignore-scripts --prefer-offline --no-audit --no-fund --loglevel=error \
    && if ! cmp -s package-lock.json /tmp/package-lock.reviewed; then \
         echo "package-lock.json does not match package.json; run 'npm install' and commit the lock file" >&2; \
         exit 1; \
       fi
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
# A type error fails the image build (tsc still emits, but exits non-zero).
RUN ./node_modules/.bin/tsc -p tsconfig.build.json
COPY scripts/lib/install-production.sh ./scripts/lib/
RUN --mount=type=cache,target=/root/.npm \
    bash scripts/lib/install-production.sh /src /app

FROM node:${NODE_VERSION}-${DEBIAN_RELEASE}-slim
ARG NODE_VERSION
ARG DEBIAN_RELEASE
ARG VERSION=0.1.0
ARG REVISION=""
LABEL org.opencontainers.image.title="gitaly-operator" \
      org.opencontainers.image.description="Gitaly, Praefect and the gitaly-operator Kubernetes operator, in TypeScript" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.licenses="MIT" \
      org.opencontainers.image.base.name="docker.io/library/node:${NODE_VERSION}-${DEBIAN_RELEASE}-slim"

# git does the repository work; ca-certificates lets it verify https remotes. tini is PID 1:
# Node.js does not reap orphans, and git's children (pack-objects, ...) are orphaned when
# Gitaly cancels a git process. Versions come with the pinned base's Debian release, whose
# security updates a rebuild picks up (exact pins would break once the archive moves on).
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends git ca-certificates tini \
    && rm -rf /var/lib/apt/lists/*

# The base image's user 1000 ("node") becomes "git"; the operator's pods run as 1000.
# /var/lib/gitaly/storage and /run/gitaly are where the pods mount the storage and the
# runtime directory; owning them lets `docker run -v` volumes start writable.
RUN groupmod --new-name git node \
    && usermod --login git --home /home/git --move-home node \
    && test "$(id -u git):$(id -g git)" = "1000:1000" \
    && install -d -o git -g git -m 0750 /var/lib/gitaly/storage /run/gitaly

# Owned by root: the programs cannot change themselves, with or without a read-only root.
COPY --from=build /app /app
ENV PATH=/app/bin:$PATH \
    NODE_ENV=production

USER 1000:1000
ENTRYPOINT ["/usr/bin/tini", "--", "/app/entrypoint"]
CMD ["--help"]
