// Structured JSON logs (pino) on stdout; errors keep their cause chain, never request bodies or tokens.

import { pino, stdSerializers, type Logger } from 'pino';

export type { Logger };

export function createLogger(level: string, destination?: NodeJS.WritableStream): Logger {
  return pino(
    {
      level,
      base: { service: 'model-gateway' },
      timestamp: pino.stdTimeFunctions.isoTime,
      serializers: { err: stdSerializers.errWithCause },
    },
    destination ?? pino.destination({ dest: 1, sync: false }),
  );
}
