/**
 * OpenMind-style round trips through the CLI: `voxssl import` an nnssl checkpoint, one step from it (a
 * pretraining step with `pretrain --init`, and a fine-tuning step with `finetune --pretrained`), `voxssl
 * export` to a .pth, import that again and compare with the trained network bit for bit.
 */
import { assert, assertEquals } from "../assert.ts";
import {
  decodeSafetensors,
  Generator,
  importTorchCheckpoint,
  readVoxsslWeights,
  scope,
  stateDict,
} from "../../mod.ts";
import { builtinRegistry } from "../../cli/builtins.ts";
import resenc from "../../plugins/arch/resenc/mod.ts";
import { gpuTest } from "../helpers.ts";
import { diagonalAffine, writeTinyDataset } from "../core/eval/fixtures.ts";
import { tinyRun, voxssl, writeConfig } from "./cli.ts";

const fixture = new URL("../fixtures/pth/nnssl_resenc_checkpoint.pth", import.meta.url).pathname;
const SMALL = { features: [4, 8], blocksPerStage: [1, 1], strides: [1, 2] };

gpuTest(
  "voxssl import → pretrain --init (one step) → export → import: the weights come back bit for bit",
  async () => {
    const dir = await Deno.makeTempDir();
    const imported = await voxssl(["import", fixture, "--out", `${dir}/imported`]);
    assertEquals(imported.code, 0, imported.text);
    assert(imported.text.includes("nnssl checkpoint (BaseMAETrainer, epoch 2) → resenc"), imported.text);
    const start = decodeSafetensors(await Deno.readFile(`${dir}/imported/network.safetensors`)).tensors;

    const run = `${dir}/run`;
    const config = tinyRun(run, {
      arch: "resenc",
      archConfig: SMALL,
      epochs: 1,
      stepsPerEpoch: 1,
      validationBatches: 0,
      init: `${dir}/imported/network.safetensors`,
    });
    const trained = await voxssl(["pretrain", "--config", await writeConfig(dir, config)]);
    assertEquals(trained.code, 0, trained.text);
    assert(trained.text.includes("initial network weights from"), trained.text);
    const after = decodeSafetensors(await Deno.readFile(`${run}/network.safetensors`)).tensors;
    // one SGD step moved the imported weights a little (a fresh He init would be ~0.3 away)
    const key = "encoder.stages.1.blocks.0.conv1.conv.weight";
    const moved = after[key].data.map((x, i) => Math.abs(x - start[key].data[i]));
    assert(Math.max(...moved) > 0 && Math.max(...moved) < 0.05, `moved by ${Math.max(...moved)}`);

    // a voxssl checkpoint (what `export` reads from an unfinished run) gives the same reference-form weights
    const registry = builtinRegistry();
    const fromCheckpoint = await readVoxsslWeights(
      `${run}/checkpoints/final.safetensors`,
      (name, config, shape) =>
        scope(() =>
          registry.architecture(name).plugin.create({
            config,
            inChannels: shape.inChannels,
            outChannels: 1,
            patchSize: shape.patch,
            encoderOnly: shape.encoderOnly,
            rng: new Generator(0),
          })
        ),
    );
    assertEquals(Object.keys(fromCheckpoint.tensors).sort(), Object.keys(after).sort());
    for (const [k, t] of Object.entries(fromCheckpoint.tensors)) assertEquals(t.data, after[k].data, k);
    assertEquals(fromCheckpoint.epoch, 1);

    const exported = await voxssl(["export", run, "--out", `${dir}/out/checkpoint_final.pth`]);
    assertEquals(exported.code, 0, exported.text);
    const plan = JSON.parse(await Deno.readTextFile(`${dir}/out/adaptation_plan.json`));
    assertEquals([plan.key_to_encoder, plan.key_to_stem], ["encoder.stages", "encoder.stem"]);

    const again = await importTorchCheckpoint({
      path: `${dir}/out/checkpoint_final.pth`,
      architecture: resenc,
      config: resenc.config.parse(SMALL),
    });
    try {
      const weights = await stateDict(again.network);
      for (const [name, t] of Object.entries(weights)) {
        assertEquals(t.data, after[name].data, name);
      }
      assertEquals(Object.keys(weights).length, 31);
    } finally {
      again.network.dispose();
    }
    await Deno.remove(dir, { recursive: true });
  },
);

gpuTest(
  "voxssl import → finetune (one step) → export → import: the fine-tuned encoder comes back bit for bit",
  async () => {
    const dir = await Deno.makeTempDir();
    const imported = await voxssl(["import", fixture, "--out", `${dir}/imported`]);
    assertEquals(imported.code, 0, imported.text);
    await writeTinyDataset(`${dir}/raw`, {
      cases: 4,
      channels: 1,
      shape: [12, 12, 12],
      affine: diagonalAffine([1, 1, 1]),
    });
    const run = `${dir}/run`;
    const tuned = await voxssl([
      "finetune",
      `${dir}/raw`,
      "--pretrained",
      `${dir}/imported/network.safetensors`,
      "--spacing",
      "none",
      "--out",
      run,
      ...["--epochs", "1", "--steps", "1", "--batch", "1", "--patch", "8", "--no-score"],
    ]);
    assertEquals(tuned.code, 0, tuned.text);
    assert(/loaded \d+ encoder\/stem tensors/.test(tuned.text), tuned.text);
    const start = decodeSafetensors(await Deno.readFile(`${dir}/imported/network.safetensors`)).tensors;
    const after = decodeSafetensors(await Deno.readFile(`${run}/network.safetensors`)).tensors;
    // the imported encoder was the starting point, and one step moved it a little
    const key = "encoder.stages.1.blocks.0.conv1.conv.weight";
    const moved = after[key].data.map((x, i) => Math.abs(x - start[key].data[i]));
    assert(Math.max(...moved) > 0 && Math.max(...moved) < 0.05, `moved by ${Math.max(...moved)}`);

    const exported = await voxssl(["export", run, "--out", `${dir}/out/checkpoint_final.pth`]);
    assertEquals(exported.code, 0, exported.text);
    const again = await voxssl(["import", `${dir}/out/checkpoint_final.pth`, "--out", `${dir}/again`]);
    assertEquals(again.code, 0, again.text);
    // `import` is for pretrained networks: the .pth holds the fine-tuned decoder too (3 classes), which
    // import lists as skipped; the encoder and stem, the part pretraining hands on, come back exactly
    assert(/skipped\): decoder\.seg_layers\.0\.bias/.test(again.text), again.text);
    const back = decodeSafetensors(await Deno.readFile(`${dir}/again/network.safetensors`)).tensors;
    const encoderKeys = Object.keys(after).filter((k) => k.startsWith("encoder."));
    assert(encoderKeys.length > 20, `${encoderKeys.length} encoder tensors`);
    assertEquals(Object.keys(back).filter((k) => k.startsWith("encoder.")).sort(), encoderKeys.sort());
    for (const name of encoderKeys) assertEquals(back[name].data, after[name].data, name);
    await Deno.remove(dir, { recursive: true });
  },
);
