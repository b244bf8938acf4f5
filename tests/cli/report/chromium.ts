/**
 * Headless Chromium for the page tests, driven over the DevTools protocol (CDP) on a WebSocket: open a
 * page with the network off, collect console errors, exceptions, failed loads and every requested URL,
 * evaluate expressions. `chromiumPath()` is undefined when Debian's `chromium` is not installed (the
 * tests are then ignored; scripts/setup.sh installs it).
 */

/** The chromium binary on PATH, or undefined. */
export function chromiumPath(): string | undefined {
  for (const dir of (Deno.env.get("PATH") ?? "").split(":")) {
    for (const name of ["chromium", "chromium-browser"]) {
      try {
        if (Deno.statSync(`${dir}/${name}`).isFile) return `${dir}/${name}`;
      } catch { /* not here */ }
    }
  }
  return undefined;
}

type Message = {
  id?: number;
  method?: string;
  params?: Record<string, unknown>;
  result?: unknown;
  error?: unknown;
};

/** One CDP connection to a page target. */
class Cdp {
  #next = 1;
  #waiting = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  #listeners: ((m: Message) => void)[] = [];
  constructor(readonly socket: WebSocket) {
    socket.onmessage = (event) => {
      const m = JSON.parse(event.data) as Message;
      if (m.id !== undefined) {
        const w = this.#waiting.get(m.id);
        this.#waiting.delete(m.id);
        if (m.error) w?.reject(new Error(JSON.stringify(m.error)));
        else w?.resolve(m.result);
      } else for (const l of this.#listeners) l(m);
    };
  }
  send<T = Record<string, unknown>>(method: string, params: Record<string, unknown> = {}): Promise<T> {
    const id = this.#next++;
    this.socket.send(JSON.stringify({ id, method, params }));
    return new Promise((resolve, reject) =>
      this.#waiting.set(id, { resolve: resolve as (v: unknown) => void, reject })
    );
  }
  on(listener: (m: Message) => void): void {
    this.#listeners.push(listener);
  }
}

/** What a loaded page reported. */
export interface PageSession {
  /** Console errors, uncaught exceptions and failed loads, as text. */
  errors: string[];
  /** Every URL the page asked for. */
  requests: string[];
  /** Evaluates `expression` in the page and returns its (JSON) value. */
  evaluate<T>(expression: string): Promise<T>;
}

/** A headless browser; `open` loads a page with the network off. */
export interface Browser {
  /** Loads `url` in a new tab with the network emulated offline, waiting for the load event. */
  open(url: string): Promise<PageSession>;
  /** Ends the browser and removes its profile. */
  close(): Promise<void>;
}

/** Starts headless chromium with a fresh profile and a DevTools port. */
export async function launchChromium(path: string): Promise<Browser> {
  const profile = await Deno.makeTempDir({ prefix: "voxssl-chromium-" });
  const child = new Deno.Command(path, {
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--no-first-run",
      "--no-default-browser-check",
      "--disable-extensions",
      "--remote-debugging-port=0",
      `--user-data-dir=${profile}`,
      "--window-size=1400,1000",
      "about:blank",
    ],
    stdout: "null",
    stderr: "piped",
  }).spawn();
  // "DevTools listening on ws://127.0.0.1:PORT/devtools/browser/…"
  const reader = child.stderr.pipeThrough(new TextDecoderStream()).getReader();
  let text = "";
  let port: string | undefined;
  while (!port) {
    const { value, done } = await reader.read();
    if (done) throw new Error(`chromium exited before its DevTools port was open:\n${text}`);
    text += value;
    port = text.match(/DevTools listening on ws:\/\/[^:]+:(\d+)\//)?.[1];
  }
  (async () => {
    while (!(await reader.read()).done) { /* drain */ }
  })();
  const sockets: WebSocket[] = [];
  return {
    async open(url) {
      const target = await (await fetch(`http://127.0.0.1:${port}/json/new?about:blank`, { method: "PUT" }))
        .json();
      const socket = new WebSocket(target.webSocketDebuggerUrl);
      sockets.push(socket);
      await new Promise((resolve, reject) => {
        socket.onopen = resolve;
        socket.onerror = reject;
      });
      const cdp = new Cdp(socket);
      const errors: string[] = [];
      const requests: string[] = [];
      let loaded!: () => void;
      const load = new Promise<void>((resolve) => (loaded = resolve));
      cdp.on((m) => {
        const p = m.params ?? {};
        if (m.method === "Runtime.consoleAPICalled" && (p.type === "error" || p.type === "assert")) {
          errors.push(`console.${p.type}: ${JSON.stringify(p.args)}`);
        }
        if (m.method === "Runtime.exceptionThrown") {
          errors.push(`exception: ${JSON.stringify(p.exceptionDetails)}`);
        }
        if (m.method === "Log.entryAdded") {
          const entry = p.entry as { level: string; text: string; url?: string };
          if (entry.level === "error") errors.push(`log: ${entry.text} ${entry.url ?? ""}`);
        }
        if (m.method === "Network.requestWillBeSent") requests.push((p.request as { url: string }).url);
        if (m.method === "Network.loadingFailed") errors.push(`load failed: ${JSON.stringify(p)}`);
        if (m.method === "Page.loadEventFired") loaded();
      });
      await cdp.send("Page.enable");
      await cdp.send("Runtime.enable");
      await cdp.send("Log.enable");
      await cdp.send("Network.enable");
      await cdp.send("Network.emulateNetworkConditions", {
        offline: true,
        latency: 0,
        downloadThroughput: -1,
        uploadThroughput: -1,
      });
      await cdp.send("Page.navigate", { url });
      await load;
      return {
        errors,
        requests,
        async evaluate<T>(expression: string): Promise<T> {
          const r = await cdp.send<{ result: { value: T }; exceptionDetails?: unknown }>("Runtime.evaluate", {
            expression,
            returnByValue: true,
            awaitPromise: true,
          });
          if (r.exceptionDetails) {
            throw new Error(`evaluate ${expression}: ${JSON.stringify(r.exceptionDetails)}`);
          }
          return r.result.value;
        },
      };
    },
    async close() {
      for (const s of sockets) s.close();
      child.kill("SIGTERM");
      await child.status;
      await Deno.remove(profile, { recursive: true }).catch(() => {});
    },
  };
}
