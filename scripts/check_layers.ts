/**
 * Fails on an import that runs upward through voxssl's layers (../shared/docs/design.md):
 *
 *   cli, bench, scripts → mod.ts, testing.ts → eval, testing → train → plugin / dist → nn / optim
 *   → tensor → kernels → gpu
 *   data stands beside the compute stack: it imports none of it, and only plugin and above import it.
 *   plugins/ and examples/ import the core only by its package name (`@voxssl/core`, and
 *   `@voxssl/core/testing` in their tests) and their own files, exactly like a third-party plugin.
 *
 * Also prints the lines of code per layer (non-blank, non-comment lines) so growth of the core is visible.
 */
import { dirname, join, relative, resolve } from "node:path";

const root = resolve(dirname(new URL(import.meta.url).pathname), "..");
const rank: Record<string, number> = {
  "core/gpu": 0,
  "kernels": 1,
  "core/tensor": 2,
  "core/nn": 3,
  "core/optim": 3,
  "core/plugin": 4,
  "core/dist": 4,
  "core/train": 5,
  "core/eval": 6,
  "core/testing": 6,
  "mod.ts": 7,
  "testing.ts": 7,
  "plugins": 8,
  "examples": 8,
  "cli": 9,
  "bench": 9,
  "scripts": 9,
  "tests": 10,
};
const computeStack = ["core/gpu", "kernels", "core/tensor", "core/nn", "core/optim"];

function layerOf(path: string): string | undefined {
  if (path === "mod.ts" || path === "testing.ts") return path;
  if (path.startsWith("core/data/")) return "core/data";
  return Object.keys(rank).find((layer) => path.startsWith(layer + "/"));
}

async function* sourceFiles(dir: string): AsyncGenerator<string> {
  for await (const entry of Deno.readDir(dir)) {
    if (entry.name.startsWith(".") || entry.name === "node_modules") continue;
    const full = join(dir, entry.name);
    if (entry.isDirectory) yield* sourceFiles(full);
    else if (/\.(ts|wgsl)$/.test(entry.name)) yield full;
  }
}

const problems: string[] = [];
const lines = new Map<string, number>();
const importPattern = /(?:from|import)\s*\(?\s*["']([^"']+)["']/g;

const tops = ["mod.ts", "testing.ts", ...Object.keys(rank).filter((l) => !l.endsWith(".ts")), "core/data"];
for (const top of tops) {
  const start = join(root, top);
  const stat = await Deno.stat(start).catch(() => undefined);
  if (!stat) continue;
  const files = stat.isFile ? [start] : await Array.fromAsync(sourceFiles(start));
  for (const file of files) {
    const path = relative(root, file);
    const layer = layerOf(path)!;
    const text = await Deno.readTextFile(file);
    const code = text.split("\n").filter((l) => {
      const t = l.trim();
      return t !== "" && !t.startsWith("//") && !t.startsWith("*") && !t.startsWith("/*");
    });
    lines.set(layer, (lines.get(layer) ?? 0) + code.length);
    if (!file.endsWith(".ts")) continue;
    for (const match of text.matchAll(importPattern)) {
      const spec = match[1];
      if ((layer === "plugins" || layer === "examples") && !spec.startsWith(".")) {
        const isTest = path.endsWith("_test.ts");
        const allowed = spec === "@voxssl/core" || (isTest && spec === "@voxssl/core/testing") ||
          /^@voxssl\/(?!core)[a-z0-9-]+$/.test(spec);
        if (!allowed) {
          problems.push(
            `${path} imports "${spec}": plugins import the core as "@voxssl/core" (zod as its \`z\`)` +
              `${isTest ? ', "@voxssl/core/testing"' : ""} or another plugin package`,
          );
        }
        continue;
      }
      if (!spec.startsWith(".")) continue; // npm:, node:, bare names from the import map
      const target = relative(root, resolve(dirname(file), spec));
      const targetLayer = layerOf(target);
      if (!targetLayer) continue;
      const where = `${path} imports ${target}`;
      if (layer === "plugins" || layer === "examples") {
        const ownDir = path.split("/").slice(0, layer === "plugins" ? 3 : 2).join("/");
        if (!target.startsWith(ownDir + "/")) {
          problems.push(`${where}: plugins import the core as "@voxssl/core", never by a relative path`);
        }
        continue;
      }
      if (layer === "core/data") {
        if (targetLayer !== "core/data") {
          problems.push(`${where}: core/data imports nothing of the compute stack`);
        }
        continue;
      }
      if (targetLayer === "core/data") {
        if (computeStack.includes(layer)) {
          problems.push(`${where}: the compute stack never imports core/data`);
        }
        continue;
      }
      if (rank[targetLayer] > rank[layer]) {
        problems.push(
          `${where}: ${layer} (layer ${rank[layer]}) must not import ${targetLayer} (layer ${
            rank[targetLayer]
          })`,
        );
      }
    }
  }
}

console.log("lines of code per layer:");
for (const [layer, count] of [...lines].sort((a, b) => (rank[a[0]] ?? 2.5) - (rank[b[0]] ?? 2.5))) {
  console.log(`  ${layer.padEnd(12)} ${String(count).padStart(6)}`);
}
if (problems.length > 0) {
  console.error(`\n${problems.length} upward import(s):`);
  for (const p of problems) console.error(`  ${p}`);
  Deno.exit(1);
}
console.log("layers: no upward imports");
