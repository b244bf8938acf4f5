/**
 * Weights in the reference implementation's state-dict form: the network's parameters plus the alias
 * keys and persistent buffers the PyTorch class also lists, so `safetensors.torch.load_file` +
 * `load_state_dict(strict=True)` accepts an export, and a PyTorch state dict loads back here.
 */
import { type HostTensor, type LoadReport, loadStateDict, stateDict } from "../nn/mod.ts";
import type { Network } from "./architecture.ts";

/**
 * The network's parameters with their reference alias keys (same data under each key), plus the
 * reference's persistent buffers.
 */
export async function referenceStateDict(network: Network): Promise<Record<string, HostTensor>> {
  const out: Record<string, HostTensor> = {};
  for (const [name, t] of Object.entries(await stateDict(network))) {
    out[name] = t;
    for (const alias of network.referenceAliases?.(name) ?? []) out[alias] = t;
  }
  Object.assign(out, network.referenceBuffers?.() ?? {});
  return out;
}

/**
 * Loads a reference-form state dict (aliases and buffers are skipped; every parameter must be
 * present).
 */
export function loadReferenceStateDict(
  network: Network,
  tensors: Record<string, HostTensor>,
  source = "reference state dict",
): LoadReport {
  const skipped = new Set<string>();
  for (const [name] of network.namedParameters()) {
    for (const a of network.referenceAliases?.(name) ?? []) skipped.add(a);
  }
  for (const name of Object.keys(network.referenceBuffers?.() ?? {})) skipped.add(name);
  return loadStateDict(network, tensors, { source, rename: (n) => (skipped.has(n) ? undefined : n) });
}
