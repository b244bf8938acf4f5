/**
 * The data loader's Worker inside the plugin sandbox: the loader worker, with voxssl's whole public API
 * (`@voxssl/core`) and the built-in plugins loaded up front, so that the method plugin it imports later
 * finds every module of voxssl already loaded once the Worker has given up read access to voxssl's code.
 *
 * @module
 */
import "../mod.ts";
import "./builtins.ts";
import "../core/data/loader_worker.ts";
