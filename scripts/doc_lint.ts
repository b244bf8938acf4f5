/**
 * Runs `deno doc --lint` on every package's entry points and exits non-zero on any diagnostic, for CI:
 *
 *   ./deno run --allow-read --allow-run scripts/doc_lint.ts
 *
 * The packages are the root (`@voxssl/core`: its deno.json "exports", i.e. mod.ts and testing.ts) and
 * each member listed under "workspace" (a built-in plugin or an example, with its own "exports").
 *
 * A member imports the core by its package name. `deno doc --lint` counts a type from another package as
 * private (denoland/deno#27364), so a member is linted with the core's entry points as extra roots (its
 * `Tensor`, `Module`, `z`, … are public there) and only the diagnostics inside the member's folder are
 * counted: the core's own are counted once, in the core's run.
 */
import { dirname, join, relative, resolve } from "node:path";

const root = resolve(dirname(new URL(import.meta.url).pathname), "..");

interface PackageJson {
  name?: string;
  exports?: string | Record<string, string>;
  workspace?: string[];
}

async function readPackage(dir: string): Promise<PackageJson> {
  return JSON.parse(await Deno.readTextFile(join(dir, "deno.json")));
}

/** The entry files of a package, relative to the repository root. */
function entryPoints(dir: string, pkg: PackageJson): string[] {
  const exports = typeof pkg.exports === "string" ? { ".": pkg.exports } : pkg.exports ?? {};
  return Object.values(exports).map((file) => relative(root, resolve(dir, file)));
}

/** One diagnostic block of `deno doc --lint` output, with the file it points at. */
interface Diagnostic {
  file: string;
  text: string;
}

function parseDiagnostics(output: string): Diagnostic[] {
  const out: Diagnostic[] = [];
  for (const block of output.split(/\n(?=error\[)/)) {
    if (!block.startsWith("error[")) continue;
    const at = /-->\s+(?:file:\/\/)?(\S+?):\d+:\d+/.exec(block);
    out.push({
      file: at ? relative(root, at[1]) : "",
      text: block.replace(/\n+error: Found \d+ documentation lint errors?\.[\s\S]*$/, "").trimEnd(),
    });
  }
  return out;
}

async function docLint(roots: string[]): Promise<{ code: number; output: string }> {
  const command = new Deno.Command(Deno.execPath(), {
    args: ["doc", "--lint", ...roots],
    cwd: root,
    env: { NO_COLOR: "1" },
    stdout: "piped",
    stderr: "piped",
  });
  const { code, stdout, stderr } = await command.output();
  const decoder = new TextDecoder();
  return { code, output: decoder.decode(stdout) + decoder.decode(stderr) };
}

const rootPackage = await readPackage(root);
const coreEntries = entryPoints(root, rootPackage);
const packages: { name: string; dir: string; entries: string[]; extraRoots: string[] }[] = [
  { name: rootPackage.name ?? ".", dir: "", entries: coreEntries, extraRoots: [] },
];
for (const member of rootPackage.workspace ?? []) {
  const dir = resolve(root, member);
  const pkg = await readPackage(dir);
  packages.push({
    name: pkg.name ?? member,
    dir: relative(root, dir),
    entries: entryPoints(dir, pkg),
    extraRoots: coreEntries,
  });
}

let total = 0;
for (const pkg of packages) {
  const { code, output } = await docLint([...pkg.entries, ...pkg.extraRoots]);
  const diagnostics = parseDiagnostics(output).filter((d) =>
    pkg.dir === ""
      ? !packages.some((p) => p.dir !== "" && d.file.startsWith(p.dir + "/"))
      : d.file.startsWith(pkg.dir + "/")
  );
  if (code !== 0 && diagnostics.length === 0 && !/Found \d+ documentation lint error/.test(output)) {
    // deno doc failed for another reason (a module that does not resolve or parse)
    console.error(output);
    console.error(`${pkg.name}: deno doc failed (exit ${code})`);
    total++;
    continue;
  }
  for (const d of diagnostics) console.error(d.text + "\n");
  console.log(`${pkg.name} (${pkg.entries.join(", ")}): ${diagnostics.length} error(s)`);
  total += diagnostics.length;
}
console.log(total === 0 ? "doc lint: clean" : `doc lint: ${total} error(s)`);
if (total > 0) Deno.exit(1);
