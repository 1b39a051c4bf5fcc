// Messages between the ONNX backend (event loop) and its worker threads.

import type { BackendMetadata, Tensor } from '../protocol/oip.js';

export interface OnnxWorkerData {
  path: string;
  intraOpThreads: number;
}

export type WorkerRequest =
  | { type: 'infer'; id: number; inputs: Tensor[]; outputs: string[] | undefined }
  /** Finish the current run, release the session and let the thread end (terminating mid-run aborts the process). */
  | { type: 'close' };

export type WorkerResponse =
  | { type: 'ready'; metadata: BackendMetadata; warmupError: string | undefined }
  | { type: 'load-error'; message: string }
  /** `completedAtUs`: when the run ended, on the process-wide clock (completion-order.ts). */
  | { type: 'result'; id: number; outputs: Tensor[]; completedAtUs: number }
  | { type: 'error'; id: number; message: string; completedAtUs: number };
