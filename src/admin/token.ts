// Where the admin API's static bearer token comes from: the running config's `admin.token`, else the environment.

/** The environment variable holding the admin token when the config has none (read by the gateway at start). */
export const ADMIN_TOKEN_ENV = 'MODEL_GATEWAY_ADMIN_TOKEN';

/** The token admin calls must present: `admin.token`, else `$MODEL_GATEWAY_ADMIN_TOKEN` of the gateway's environment. */
export function adminToken(config: { readonly token?: string | undefined }, env: NodeJS.ProcessEnv): string | undefined {
  return config.token ?? (env[ADMIN_TOKEN_ENV] || undefined);
}
