// What /proc says about a broker process: which process listens on a port, its
// resident memory (VmRSS) and its CPU time. Linux only; the soak bench uses it
// to watch the embedded server and sockudo alike without changing how the
// test harness starts them.
import { execFileSync } from "node:child_process";
import { readdirSync, readFileSync, readlinkSync } from "node:fs";

/** Clock ticks per second, the unit of utime and stime in /proc/PID/stat. */
const TICKS = (() => {
  try {
    return Number(execFileSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).trim()) || 100;
  } catch {
    return 100;
  }
})();

/** The inodes of the TCP sockets listening on `port` (IPv4 and IPv6). */
function listeningInodes(port) {
  const hex = `:${port.toString(16).toUpperCase().padStart(4, "0")}`;
  const inodes = new Set();
  for (const table of ["/proc/net/tcp", "/proc/net/tcp6"]) {
    let text;
    try {
      text = readFileSync(table, "utf8");
    } catch {
      continue;
    }
    for (const line of text.split("\n").slice(1)) {
      const fields = line.trim().split(/\s+/);
      // fields: sl local_address rem_address st ... inode (the 10th)
      if (fields.length > 9 && fields[1].endsWith(hex) && fields[3] === "0A") inodes.add(fields[9]);
    }
  }
  return inodes;
}

/**
 * The id of the process that holds the socket listening on `port`, and the
 * path of its executable. Throws when no process (that this user may
 * inspect) does.
 */
export function processListeningOn(port) {
  const inodes = listeningInodes(port);
  if (inodes.size === 0) throw new Error(`nothing listens on TCP port ${port}`);
  const wanted = new Set([...inodes].map((inode) => `socket:[${inode}]`));
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry) || Number(entry) === process.pid) continue;
    let fds;
    try {
      fds = readdirSync(`/proc/${entry}/fd`);
    } catch {
      continue;
    }
    for (const fd of fds) {
      let target;
      try {
        target = readlinkSync(`/proc/${entry}/fd/${fd}`);
      } catch {
        continue;
      }
      if (wanted.has(target)) {
        let exe = "?";
        try {
          exe = readlinkSync(`/proc/${entry}/exe`);
        } catch {
          // Kept as "?": the pid is what matters.
        }
        return { pid: Number(entry), exe };
      }
    }
  }
  throw new Error(`no process found that holds the listening socket of port ${port}`);
}

/** The resident set size of `pid` in KiB (VmRSS), or null once the process is gone. */
export function rssKiB(pid) {
  try {
    const match = /^VmRSS:\s+(\d+)\s+kB$/m.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
    return match ? Number(match[1]) : null;
  } catch {
    return null;
  }
}

/** The CPU time `pid` has used so far (user + system), in seconds, or null once it is gone. */
export function cpuSeconds(pid) {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    // The command name (field 2) is in parentheses and may hold spaces: count from after it.
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    // fields[0] is field 3 (state); utime and stime are fields 14 and 15.
    return (Number(fields[11]) + Number(fields[12])) / TICKS;
  } catch {
    return null;
  }
}

/** The number of threads of `pid`, or null once it is gone. */
export function threads(pid) {
  try {
    const match = /^Threads:\s+(\d+)$/m.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
    return match ? Number(match[1]) : null;
  } catch {
    return null;
  }
}
