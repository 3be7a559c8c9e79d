/** The minimal logger recording reports to. */
export interface RecordingLog {
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
}

/** A logger that drops everything, for callers that pass none. */
export const noLog: RecordingLog = { info: () => undefined, warn: () => undefined };
