/**
 * `voxssl evaluate <predictions> <labels>`: Dice, IoU, precision, recall and HD95 per case and class
 * (core/eval/evaluate.ts), written as `metrics.csv` and `summary.json`. Classes and their names come from
 * `--dataset` (an nnU-Net raw folder's dataset.json) or from the values found in the reference maps.
 * Bad input is a user error (cli/user_errors.ts): one line naming the file, exit status 1.
 */
import type { Command } from "@commander-js/extra-typings";
import { join } from "node:path";
import { evaluateFolders, readNnunetDataset, writeEvaluation } from "../../core/eval/mod.ts";

/** Adds `evaluate` to the program. */
export function registerEvaluate(program: Command): void {
  program
    .command("evaluate")
    .description(
      "score predicted label maps against reference label maps (Dice, IoU, precision, recall, HD95)",
    )
    .argument("<predictions>", "folder of predicted label maps (<case>.nii.gz)")
    .argument("<labels>", "folder of reference label maps with the same file names")
    .option("--out <folder>", "where metrics.csv and summary.json go (default: <predictions>/evaluation)")
    .option(
      "--dataset <folder>",
      "nnU-Net raw dataset folder: its dataset.json gives classes, names, file ending",
    )
    .option("--no-hd95", "skip HD95 (the slowest metric)")
    .action(async (predictions, labels, options) => {
      await runEvaluate(predictions, labels, options);
    });
}

async function runEvaluate(
  predictions: string,
  labels: string,
  options: { out?: string; dataset?: string; hd95: boolean },
): Promise<void> {
  const dataset = options.dataset ? await readNnunetDataset(options.dataset) : undefined;
  const names = dataset
    ? Object.fromEntries(Object.entries(dataset.labels).map(([name, value]) => [value, name]))
    : undefined;
  const summary = await evaluateFolders(predictions, labels, {
    classes: dataset?.foreground,
    names,
    fileEnding: dataset?.fileEnding,
    hd95: options.hd95,
  });
  const paths = await writeEvaluation(options.out ?? join(predictions, "evaluation"), summary);
  const fmt = (v: number | undefined) => (v === undefined || Number.isNaN(v) ? "NaN" : v.toFixed(4));
  for (const k of summary.classes) {
    const m = summary.mean[k];
    console.log(
      `class ${k}${names?.[k] ? ` (${names[k]})` : ""}: Dice ${fmt(m.dice)}, IoU ${fmt(m.iou)}, ` +
        `precision ${fmt(m.precision)}, recall ${fmt(m.recall)}` +
        (m.hd95 !== undefined ? `, HD95 ${fmt(m.hd95)} mm` : "") +
        ` (${m.n} of ${summary.cases.length} cases)`,
    );
  }
  console.log(
    `foreground mean Dice ${fmt(summary.foregroundMean.dice)} over ${summary.cases.length} cases`,
  );
  console.log(`wrote ${paths.csv} and ${paths.json}`);
}
