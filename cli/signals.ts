/** Resolve with the first of these signals; handlers are removed afterwards. */
export function waitForSignal(signals: NodeJS.Signals[]): Promise<NodeJS.Signals> {
  return new Promise((resolve) => {
    const handlers = signals.map((s) => {
      const h = () => {
        for (const [sig, fn] of handlers) process.off(sig, fn);
        resolve(s);
      };
      process.on(s, h);
      return [s, h] as const;
    });
  });
}
