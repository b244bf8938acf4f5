/**
 * What a checkpoint's object tree holds, in voxssl's terms: the state dict (nnssl's `network_weights`,
 * a `state_dict` / `model` entry, or the root itself) with every tensor read, and nnssl's metadata
 * (`nnssl_adaptation_plan` as JSON, `trainer_name`, `current_epoch`). Everything else in the file
 * (optimizer state, logs, init args) is left unread.
 */
import { PthError } from "./errors.ts";
import { type PyValue, TensorRef } from "./pickle_reader.ts";
import type { PthFile, TorchTensor } from "./read.ts";

/** A JSON value. */
export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

/** The state dict and metadata of a checkpoint. */
export interface TorchCheckpoint {
  /** Where the weights were found: "network_weights" (nnssl / nnU-Net), "state_dict", "model" or the root. */
  weightsKey: string | null;
  /** The tensors by state-dict name, in file order. */
  weights: Map<string, TorchTensor>;
  /** nnssl's adaptation plan, when present. */
  adaptationPlan: Json | null;
  /** nnssl's trainer class name, when present. */
  trainerName: string | null;
  /** nnssl's `current_epoch`, when present. */
  currentEpoch: number | null;
}

/** Converts a non-tensor value to JSON (dict keys to strings); `where` names it in errors. */
export function toJson(value: PyValue, where: string): Json {
  if (value === null || typeof value === "boolean" || typeof value === "string") return value;
  if (typeof value === "number") return Number.isFinite(value) ? value : String(value);
  if (typeof value === "bigint") return value.toString();
  if (value instanceof TensorRef) throw new PthError(`${where}: a tensor where plain data was expected`);
  if (value instanceof Uint8Array) throw new PthError(`${where}: bytes where plain data was expected`);
  if (Array.isArray(value)) return value.map((v, i) => toJson(v, `${where}[${i}]`));
  if (!(value instanceof Map)) throw new PthError(`${where}: an object that is not plain data`);
  const out: Record<string, Json> = {};
  for (const [k, v] of value) out[String(k)] = toJson(v, `${where}.${String(k)}`);
  return out;
}

/** Finds and reads the state dict and nnssl's metadata of an opened checkpoint. */
export function readTorchCheckpoint(file: PthFile): TorchCheckpoint {
  const { root, source } = file;
  if (!(root instanceof Map)) {
    throw new PthError(`${source}: the checkpoint is not a dict (found ${describe(root)})`);
  }
  let weightsKey: string | null = null;
  let dict: Map<PyValue, PyValue> = root;
  for (const key of ["network_weights", "state_dict", "model"]) {
    const v = root.get(key);
    if (v instanceof Map) {
      weightsKey = key;
      dict = v;
      break;
    }
  }
  const weights = new Map<string, TorchTensor>();
  for (const [k, v] of dict) {
    const name = weightsKey ? `${weightsKey}/${String(k)}` : String(k);
    if (typeof k !== "string") throw new PthError(`${source}: state-dict key ${String(k)} is not a string`);
    if (!(v instanceof TensorRef)) {
      throw new PthError(`${source}: "${name}" is ${describe(v)}, not a tensor (is this a state dict?)`);
    }
    weights.set(k, file.tensor(v, name));
  }
  const plan = root.get("nnssl_adaptation_plan");
  const trainer = root.get("trainer_name");
  const epoch = root.get("current_epoch");
  return {
    weightsKey,
    weights,
    adaptationPlan: plan === undefined || plan === null
      ? null
      : toJson(plan, `${source}: nnssl_adaptation_plan`),
    trainerName: typeof trainer === "string" ? trainer : null,
    currentEpoch: typeof epoch === "number" ? epoch : null,
  };
}

function describe(v: PyValue | undefined): string {
  if (v === null || v === undefined) return "None";
  if (v instanceof TensorRef) return "a tensor";
  if (v instanceof Map) return "a dict";
  if (Array.isArray(v)) return "a list";
  if (v instanceof Uint8Array) return "bytes";
  return `a ${typeof v}`;
}
