/** The list of subcommands. A new command is one file in this folder plus one line here. */
import type { Command } from "@commander-js/extra-typings";
import { registerAutotune } from "./autotune.ts";
import { registerBenchmark } from "./benchmark.ts";
import { registerClassify } from "./classify.ts";
import { registerDoctor } from "./doctor.ts";
import { registerEvaluate } from "./evaluate.ts";
import { registerFinetune } from "./finetune.ts";
import { registerIndex } from "./index.ts";
import { registerInterop } from "./interop.ts";
import { registerPlugin } from "./plugin.ts";
import { registerPlugins } from "./plugins.ts";
import { registerPredict } from "./predict.ts";
import { registerPreprocess } from "./preprocess.ts";
import { registerPretrain } from "./pretrain.ts";
import { registerReport } from "./report.ts";

/** A function that adds one subcommand to the program. */
export type RegisterCommand = (program: Command) => void;

const commands: RegisterCommand[] = [
  registerDoctor,
  registerPlugins,
  registerPlugin,
  registerIndex,
  registerPreprocess,
  registerPretrain,
  registerPredict,
  registerEvaluate,
  registerInterop,
  registerReport,
  registerFinetune,
  registerClassify,
  registerBenchmark,
  registerAutotune,
];

/** Adds every subcommand to `program`. */
export function registerCommands(program: Command): void {
  for (const register of commands) register(program);
}
