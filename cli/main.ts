/**
 * voxssl's command-line entry point (`deno task voxssl <command>`). Each subcommand lives in
 * cli/commands/<name>.ts and registers itself on the program; this file only lists them and turns
 * expected failures (bad config, bad plugin, no GPU, bad data) into a message and exit code 1.
 */
import { Command } from "@commander-js/extra-typings";
import { VERSION } from "../mod.ts";
import { registerCommands } from "./commands/mod.ts";

/** Errors that are the user's to fix: printed without a stack trace. */
const EXPECTED = new Set([
  "PluginError",
  "ConfigError",
  "GpuUnavailableError",
  "DataError",
  "NotFound",
  "PthError",
]);

const program = new Command()
  .name("voxssl")
  .description("Self-supervised pretraining of 3D medical image models on WebGPU")
  .version(VERSION);
registerCommands(program);
try {
  await program.parseAsync(Deno.args, { from: "user" });
} catch (error) {
  if (error instanceof Error && EXPECTED.has(error.name)) {
    console.error(`voxssl: ${error.message}`);
    Deno.exit(1);
  }
  throw error;
}
