/** Plugin contracts, manifest validation, registry and loader. */
export * from "./contract.ts";
export * from "./loader.ts";
export * from "./manifest.ts";
export * from "./reference_weights.ts";
export * from "./registry.ts";
