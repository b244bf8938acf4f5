/**
 * voxssl's command-line entry point (`deno task voxssl <command>`). Each subcommand lives in
 * cli/commands/<name>.ts and registers itself on the program; this file only lists them.
 */
import { Command } from "@commander-js/extra-typings";
import { VERSION } from "../mod.ts";
import { registerCommands } from "./commands/mod.ts";

const program = new Command()
  .name("voxssl")
  .description("Self-supervised pretraining of 3D medical image models on WebGPU")
  .version(VERSION);
registerCommands(program);
await program.parseAsync(Deno.args, { from: "user" });
