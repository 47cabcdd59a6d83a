# The `clgo` image deploy/ runs (ghcr.io/clusterlink-gitops/clgo): the reconciler (`clgo run`) and
# the Node data plane (`clgo dataplane`). Build from the repository root:
#   docker build -t ghcr.io/clusterlink-gitops/clgo:0.1.0 .
# Pin the base images by digest (FROM ...@sha256:...) in a release pipeline.

# 1. build: all dependencies, then the esbuild bundle in dist/ (scripts/build.mjs).
FROM node:20-bookworm-slim AS build
WORKDIR /src
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json ./
COPY scripts/ scripts/
COPY schema/ schema/
COPY protocol/ protocol/
COPY reconciler/ reconciler/
COPY dataplane/ dataplane/
RUN npm run build

# 2. production dependencies only, from the same lockfile (the bundle leaves gRPC and the
#    Kubernetes client in node_modules; no dependency needs an install script).
FROM node:20-bookworm-slim AS deps
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund

# 3. runtime: Node 20 without a shell or package manager, user nonroot (65532, as deploy/ sets).
#    No sources in /app, so bin/clgo.mjs runs dist/.
FROM gcr.io/distroless/nodejs20-debian12:nonroot AS runtime
WORKDIR /app
ENV NODE_ENV=production
COPY --from=deps /app/node_modules/ node_modules/
COPY --from=build /src/dist/ dist/
COPY package.json ./
COPY bin/clgo.mjs bin/
COPY fabric-example/ fabric-example/
USER 65532:65532
# deploy/ passes the subcommand and flags as args, e.g. ["run", "--git", ...].
ENTRYPOINT ["/nodejs/bin/node", "/app/bin/clgo.mjs"]
