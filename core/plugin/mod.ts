/** Plugin contracts, manifest validation, registry and loader. */
export * from "./activity.ts";
export * from "./architecture.ts";
export * from "./guard.ts";
export * from "./loader.ts";
export * from "./manifest.ts";
export * from "./method.ts";
export * from "./plugin_base.ts";
export * from "./reference_weights.ts";
export * from "./strict_config.ts";
export * from "./registry.ts";
export * from "./torch_import.ts";
