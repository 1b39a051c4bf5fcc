// Shared pieces of the config schema: the name alphabet of models and versions, HTTP header names.

import { z } from 'zod';

/** Model and version names appear in URL paths and metric labels: keep them to a safe alphabet. */
export const NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/;
export const name = (what: string) => z.string().regex(NAME, `${what} must match ${NAME.source} (letters, digits, '_', '.', '-')`);

/** A valid HTTP header name (RFC 9110 token). */
export const HEADER_NAME = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;

/** A header name, lower-cased as Node delivers request headers. */
export const httpHeaderName = z
  .string()
  .regex(HEADER_NAME, 'must be a valid HTTP header name')
  .transform((h) => h.toLowerCase());
