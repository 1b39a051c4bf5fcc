// What a command writes to and reads its environment from: the CLI passes the process's, tests their own.

export interface CommandIo {
  stdout: (text: string) => void;
  stderr: (text: string) => void;
  env: NodeJS.ProcessEnv;
}
