// The Node data plane's connection to its control plane: configuration over ADS, and (when the
// data plane runs in its own process) per-connection authorization over ext_authz.
export { startXdsClient, type XdsClient, type XdsClientOptions, type XdsClientStatus } from './client.ts';
export { remoteAuthorizer, type RemoteAuthorizer } from './remote-authorizer.ts';
export { assembleConfig, decodeResource, NAMES, ResourceError } from './decode.ts';
