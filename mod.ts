/**
 * voxssl: self-supervised pretraining of 3D medical image models on WebGPU.
 *
 * This module is the public API for plugin authors and scripts. Built-in plugins import only this
 * file, exactly as third-party plugins must.
 *
 * @module
 */

/** The version of voxssl's core; plugins declare the range of core versions they work with. */
export const VERSION = "0.1.0";

export * from "./core/gpu/mod.ts";
