/** Errors raised by the GPU layer. Each message says what happened and what to do about it. */

/** No WebGPU adapter or device could be obtained. */
export class GpuUnavailableError extends Error {
  /** Always "GpuUnavailableError", so logs and `error.name` checks tell the errors apart. */
  override name = "GpuUnavailableError";
}

/** The device was lost (driver reset, out of memory, destroyed); nothing more can run on it. */
export class GpuDeviceLostError extends Error {
  /** Always "GpuDeviceLostError", so logs and `error.name` checks tell the errors apart. */
  override name = "GpuDeviceLostError";
}

/** A validation or out-of-memory error reported by WebGPU, attributed to the kernels that were running. */
export class GpuValidationError extends Error {
  /** Always "GpuValidationError", so logs and `error.name` checks tell the errors apart. */
  override name = "GpuValidationError";
}

/** A buffer binding exceeds `maxStorageBufferBindingSize`: the kernel must split the work into chunks. */
export class BindingTooLargeError extends Error {
  /** Always "BindingTooLargeError", so logs and `error.name` checks tell the errors apart. */
  override name = "BindingTooLargeError";
}

/** The instructions printed when no adapter is found (also used by `voxssl doctor`). */
export const NO_ADAPTER_HELP: string = [
  "No WebGPU adapter was found.",
  "On a GPU server: install the vendor driver with Vulkan support (NVIDIA: the driver's Vulkan ICD).",
  "On a CPU-only machine: install Mesa's lavapipe, e.g. `sudo apt-get install mesa-vulkan-drivers`",
  "(./scripts/setup.sh does this when run as root), and run with DENO_WEBGPU_BACKEND=vulkan",
  "(the ./deno wrapper sets it).",
].join("\n");
