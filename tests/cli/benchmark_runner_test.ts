/** The real runner's pure parts: per-case scores from `voxssl evaluate`'s summary, stage option checks. */
import { assert, assertEquals, assertThrows } from "../assert.ts";
import { caseScores, checkStageOptions } from "../../cli/benchmark_runner.ts";
import { ConfigError } from "../../cli/errors.ts";

Deno.test("caseScores: mean over foreground classes, nnU-Net's NaN (empty in both) left out", () => {
  const summary = {
    classes: [1, 2],
    names: { "1": "anterior", "2": "posterior" },
    cases: [
      { name: "h_001.nii.gz", classes: { "1": { dice: 0.8 }, "2": { dice: 0.6 } } },
      { name: "h_002.nii.gz", classes: { "1": { dice: "NaN" }, "2": { dice: 0.5 } } },
      { name: "h_003.nii.gz", classes: { "1": { dice: "NaN" }, "2": { dice: "NaN" } } },
    ],
  };
  const scores = caseScores(summary);
  assertEquals(scores.map((s) => s.case), ["h_001", "h_002"]); // h_003 has no class to score
  assert(Math.abs(scores[0].dice - 0.7) < 1e-15);
  assertEquals(scores[1].dice, 0.5);
  assertEquals(scores[1].perClass, { anterior: null, posterior: 0.5 });
});

Deno.test("checkStageOptions: unknown or wrong finetune/predict options name the field", () => {
  checkStageOptions({
    finetune: { epochs: 2, patch: [32, 32, 32], spacing: "none" },
    predict: { mirroring: true },
  }, "s.json");
  const error = assertThrows(
    () => checkStageOptions({ finetune: { epochs: 0, steps: 3 }, predict: { step: 2 } }, "s.json"),
    ConfigError,
  );
  for (const part of ["s.json:", "finetune.epochs:", "finetune:", '"steps"', "predict.step:"]) {
    assert(error.message.includes(part), `${part} in ${error.message}`);
  }
});
