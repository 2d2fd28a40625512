// Self time per function from a CDP `Profiler.stop` profile, for the benches
// that sample the page's JavaScript (chat.mjs, realtime_rtt.mjs).

/**
 * Adds `profile`'s self time (ms) per function, keyed `name file:line`, into
 * `totals` (a Map, so that several profiles can be summed); returns `totals`.
 */
export function addSelfTimes(totals, { nodes, samples, timeDeltas }) {
  const names = new Map(nodes.map(({ id, callFrame: f }) => [id, `${f.functionName || "(anonymous)"} ${f.url.split("/").pop()}:${f.lineNumber + 1}`]));
  samples.forEach((id, i) => {
    const name = names.get(id);
    totals.set(name, (totals.get(name) ?? 0) + (timeDeltas[i + 1] ?? 0) / 1000);
  });
  return totals;
}

/** Prints the `count` largest self times of `totals`, largest first. */
export function printSelfTimes(totals, count = 25) {
  for (const [name, ms] of [...totals].sort((a, b) => b[1] - a[1]).slice(0, count)) console.log(`${ms.toFixed(1).padStart(9)} ms  ${name}`);
}
