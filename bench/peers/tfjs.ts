/**
 * TF.js with its WebGPU backend, the peer voxssl's kernels are compared with. It runs in the same Deno
 * process on its own device of the same adapter. The union package registers every gradient, so
 * `tf.grad` works.
 */
import * as tf from "@tensorflow/tfjs";
import "@tensorflow/tfjs-backend-webgpu";

/** The TF.js module, with the WebGPU backend initialised. */
export type Tfjs = typeof tf;

/** Initialises TF.js on WebGPU (once) and returns it. */
export async function loadTfjs(): Promise<Tfjs> {
  if (tf.getBackend() !== "webgpu") {
    const ok = await tf.setBackend("webgpu");
    if (!ok) throw new Error("TF.js could not initialise its WebGPU backend");
  }
  await tf.ready();
  return tf;
}
