/**
 * Plugin manifests: `definePlugin()` for authors, zod validation for the loader, and the version check
 * that refuses a plugin whose `coreApi` range excludes the running core (saying both versions).
 */
import semver from "semver";
import { z } from "zod";
import type { ArchitecturePlugin } from "./architecture.ts";
import type { SslMethodPlugin } from "./method.ts";

/** Any plugin. */
export type Plugin = ArchitecturePlugin<unknown> | SslMethodPlugin<unknown>;

const name = z.string().regex(
  /^[a-z][a-z0-9-]*$/,
  "lower-case letters, digits and dashes, starting with a letter",
);
const version = z.string().refine((v) => semver.valid(v) !== null, "a semver version such as 1.2.0");
const range = z.string().refine((r) => semver.validRange(r) !== null, 'a semver range such as "^0.1.0"');
const zodSchema = z.custom<z.ZodType>(
  (v) => v instanceof z.ZodType,
  'a zod schema (import { z } from "@voxssl/core")',
);
const fn = z.custom<(...args: never[]) => unknown>((v) => typeof v === "function", "a function");
const family = z.enum(["cnn", "vit"]);
const vec3 = z.tuple([z.number().int().positive(), z.number().int().positive(), z.number().int().positive()]);

const base = {
  name,
  version,
  coreApi: range,
  description: z.string().min(1),
  config: zodSchema,
};

/** zod schema of an architecture plugin manifest. */
export const ArchitectureManifestSchema = z.object({
  kind: z.literal("architecture"),
  ...base,
  family,
  sizes: z.record(z.string(), z.record(z.string(), z.unknown())).optional(),
  create: fn,
  countParameters: fn.optional(),
  deepSupervision: z.boolean().optional(),
});

const needs = z.union([
  z.object({ outChannels: z.number().int().positive() }).strict(),
  z.object({ encoderOnly: z.literal(true) }).strict(),
]);

const defaults = z.object({
  optimizer: z.object({ name: z.enum(["sgd", "adamw"]), lr: z.number().positive() }).passthrough(),
  schedule: z.object({ name: z.string() }).passthrough(),
  clipGradNorm: z.number().min(0),
  patchSize: vec3,
  batchSize: z.number().int().positive(),
  augmentation: z.enum(["none", "nnssl-mae", "nnunet"]).optional(),
});

/** zod schema of an SSL-method plugin manifest. */
export const SslMethodManifestSchema = z.object({
  kind: z.literal("ssl-method"),
  ...base,
  supports: z.array(family).min(1),
  network: z.union([needs, fn]),
  defaults: z.object({ cnn: defaults.optional(), vit: defaults.optional() }),
  sample: fn.optional(),
  gpuAugmentation: z.boolean().optional(),
  gpuViewAugmentation: z.boolean().optional(),
  masks: fn.optional(),
  build: fn,
}).superRefine((m, ctx) => {
  for (const f of m.supports) {
    if (!m.defaults[f]) {
      ctx.addIssue({
        code: "custom",
        path: ["defaults", f],
        message: `supports "${f}" but has no defaults for it`,
      });
    }
  }
});

/** zod schema of any plugin manifest. */
export const PluginManifestSchema = z.discriminatedUnion("kind", [
  ArchitectureManifestSchema,
  SslMethodManifestSchema,
]);

/**
 * Declares a plugin: a plain object, checked by TypeScript against its contract (the hooks get the
 * config's parsed type) and by zod when loaded. Identity at run time.
 *
 * @example A method that reconstructs the patch from a noisy copy
 * ```ts
 * import { add, definePlugin, mean, mulScalar, powScalar, sub, z } from "@voxssl/core";
 *
 * export default definePlugin({
 *   kind: "ssl-method",
 *   name: "my-denoiser",
 *   version: "0.1.0",
 *   coreApi: "^0.2.0",
 *   description: "reconstruct the patch from patch + noise",
 *   supports: ["cnn"],
 *   network: { outChannels: 1 },
 *   config: z.object({ noiseStd: z.number().positive().default(0.3) }),
 *   defaults: {
 *     cnn: {
 *       optimizer: { name: "sgd", lr: 1e-2, momentum: 0.99, nesterov: true, weightDecay: 3e-5 },
 *       schedule: { name: "poly", exponent: 0.9 },
 *       clipGradNorm: 12,
 *       patchSize: [32, 32, 32],
 *       batchSize: 2,
 *     },
 *   },
 *   build: ({ network, config }) => ({
 *     modules: {},
 *     loss: (batch, { rng }) => {
 *       const image = batch.get("image");
 *       const noisy = add(image, mulScalar(rng.normal(image.shape, 0, 1), config.noiseStd));
 *       return { loss: mean(powScalar(sub(network.forward(noisy), image), 2)) };
 *     },
 *   }),
 * });
 * ```
 */
export function definePlugin<C>(plugin: ArchitecturePlugin<C>): ArchitecturePlugin<C>;
/** Declares an SSL-method plugin: returns it unchanged, typed (see the architecture overload's example). */
export function definePlugin<C>(plugin: SslMethodPlugin<C>): SslMethodPlugin<C>;
export function definePlugin(plugin: Plugin): Plugin {
  return plugin;
}

/** A plugin failed validation or does not fit this core. */
export class PluginError extends Error {
  /** Always "PluginError", so logs and `error.name` checks tell it apart. */
  override name = "PluginError";
}

/**
 * Validates a manifest and checks it against the running core version.
 * @throws {PluginError} listing every zod issue, or both versions when the range excludes the core.
 */
export function validatePlugin(candidate: unknown, coreVersion: string, source: string): Plugin {
  const parsed = PluginManifestSchema.safeParse(candidate);
  if (!parsed.success) {
    const issues = parsed.error.issues.map((i) => `  - ${i.path.join(".") || "(manifest)"}: ${i.message}`);
    throw new PluginError(`plugin ${source} has an invalid manifest:\n${issues.join("\n")}`);
  }
  const plugin = candidate as Plugin;
  if (!semver.satisfies(coreVersion, plugin.coreApi, { includePrerelease: true })) {
    throw new PluginError(
      `plugin ${plugin.name}@${plugin.version} (${source}) requires voxssl core ${plugin.coreApi}, ` +
        `but this is core ${coreVersion}`,
    );
  }
  return plugin;
}
