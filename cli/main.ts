/**
 * voxssl's command-line entry point (`deno task voxssl <command>`). Each subcommand lives in
 * cli/commands/<name>.ts and registers itself on the program; this file only lists them and turns
 * expected failures (bad config, bad plugin, no GPU, bad data) into a message and exit code 1.
 */
import { Command } from "@commander-js/extra-typings";
import { VERSION } from "../mod.ts";
import { registerCommands } from "./commands/mod.ts";
import { reportError, takeDebugFlag } from "./user_errors.ts";
import { markCompleted, recordUnfinishedExit } from "./watchdog.ts";

// `--debug` (anywhere): stack traces for every error; without it a user error is one or two lines
const { debug, args } = takeDebugFlag(Deno.args);

const program = new Command()
  .name("voxssl")
  .description("Self-supervised pretraining of 3D medical image models on WebGPU")
  .version(VERSION);
registerCommands(program);
recordUnfinishedExit(); // the sandboxed child's completion handshake (cli/watchdog.ts)
try {
  await program.parseAsync(args, { from: "user" });
  markCompleted();
} catch (error) {
  Deno.exit(reportError(error, debug));
}
