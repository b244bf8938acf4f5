/** Neural-network building blocks: Module, layers, initialisers, parameter arenas, safetensors. */
export * from "./conv.ts";
export * from "./init.ts";
export * from "./linear.ts";
export * from "./module.ts";
export * from "./norm.ts";
export * from "./parameter_groups.ts";
export * from "./safetensors.ts";
export * from "./state_dict.ts";
export * from "./pth/mod.ts";
export * from "./checkpointing.ts";
