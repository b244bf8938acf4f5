/** PyTorch checkpoints (`.pth`) without Python: zip container, restricted pickle reader, writer. */
export * from "./checkpoint_dict.ts";
export * from "./errors.ts";
export * from "./read.ts";
export * from "./write.ts";
export {
  ALLOWED_GLOBALS,
  type PyValue,
  type StorageRef,
  TensorRef,
  type TorchDtype,
} from "./pickle_reader.ts";
export { writeZip, type ZipEntry, ZipReader, type ZipWriteOptions } from "./zip.ts";
