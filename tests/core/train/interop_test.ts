/**
 * PyTorch checkpoints into voxssl networks and back: nnssl's ResEnc checkpoint, a `module._orig_mod.`
 * state dict and an EvaMAE Primus checkpoint load into the architecture plugins with the values torch
 * saved (SHA-256 from scripts/fixtures/make_pth_fixtures.py); the position embedding is reordered from
 * EvaMAE's token order; bad shapes and disagreeing aliases are errors naming the file and key; the export
 * is byte-identical to the file PyTorch loaded as nnU-Net's PretrainedTrainer does.
 */
import { assert, assertEquals, assertRejects, assertThrows } from "../../assert.ts";
import { gpuTest } from "../../helpers.ts";
import { Generator, scope } from "../../../mod.ts";
import {
  architectureFromNnsslPlan,
  exportWeights,
  importTorchCheckpoint,
  loadInitialWeights,
  mapTorchStateDict,
  nnsslArchitecturePlans,
  openPth,
  permuteTokens,
  PthError,
  readTorchCheckpoint,
  readVoxsslWeights,
  stateDict,
  tokenGrid,
  writeImportedNetwork,
} from "../../../mod.ts";
import resenc from "../../../plugins/arch/resenc/mod.ts";
import primus from "../../../plugins/arch/primus/mod.ts";

const dir = new URL("../../fixtures/pth/", import.meta.url);
const path = (name: string) => new URL(name, dir).pathname;
const EXPECTED = JSON.parse(Deno.readTextFileSync(path("expected.json")));
const SMALL = EXPECTED.resenc_state_dict.archConfig;

async function sha256(data: Float32Array): Promise<string> {
  const bytes = new Uint8Array(data.buffer as ArrayBuffer, data.byteOffset, data.byteLength);
  const hash = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
  return [...hash].map((b) => b.toString(16).padStart(2, "0")).join("");
}

async function assertNetworkHolds(
  network: Parameters<typeof stateDict>[0],
  want: Record<string, { sha256: string }>,
) {
  const weights = await stateDict(network);
  for (const [name, t] of Object.entries(weights)) {
    assert(want[name], `${name} is in the file`);
    assertEquals(await sha256(t.data), want[name].sha256, name);
  }
  return Object.keys(weights).length;
}

Deno.test("interop: nnssl plans name voxssl architectures (ResEncL, Primus presets, ResidualEncoderUNet kwargs)", () => {
  const plan = EXPECTED.nnssl_resenc_checkpoint.nnssl_adaptation_plan;
  assertEquals(architectureFromNnsslPlan(plan), {
    spec: "resenc",
    archConfig: { ...SMALL, kernel: 3, convsPerDecoderStage: 1 },
  });
  assertEquals(
    architectureFromNnsslPlan({ architecture_plans: { arch_class_name: "ResEncL" } })?.spec,
    "resenc-l",
  );
  assertEquals(
    architectureFromNnsslPlan({ architecture_plans: { arch_class_name: "PrimusM" } })?.spec,
    "primus-m",
  );
  assertEquals(architectureFromNnsslPlan({ architecture_plans: { arch_class_name: "PlainConvUNet" } }), null);
  const l = resenc.config.parse(resenc.sizes!.l);
  assertEquals(nnsslArchitecturePlans({ plugin: "resenc", config: l }), {
    arch_class_name: "ResEncL",
    arch_kwargs: null,
    arch_kwargs_requiring_import: null,
  });
  const m = primus.config.parse({});
  assertEquals(
    (nnsslArchitecturePlans({ plugin: "primus", config: m }) as { arch_class_name: string }).arch_class_name,
    "PrimusM",
  );
  assertThrows(
    () =>
      nnsslArchitecturePlans({
        plugin: "primus",
        config: primus.config.parse({ embedDim: 24, depth: 2, heads: 2 }),
      }),
    PthError,
    "no nnssl preset",
  );
});

gpuTest(
  "interop: nnssl's ResEnc checkpoint imports exactly; the export is the file PyTorch checked",
  async () => {
    const config = resenc.config.parse(SMALL);
    const imported = await importTorchCheckpoint({
      path: path("nnssl_resenc_checkpoint.pth"),
      architecture: resenc,
      config,
    });
    try {
      assertEquals(imported.checkpoint.trainerName, "BaseMAETrainer");
      assertEquals(imported.checkpoint.currentEpoch, 2);
      assertEquals(imported.mapping.skipped, []);
      assertEquals(imported.network.encoderOnly, false);
      assertEquals(await assertNetworkHolds(imported.network, EXPECTED.nnssl_resenc_checkpoint.tensors), 31);
      // network.safetensors → export, as `voxssl import` + `voxssl export` do
      const tmp = await Deno.makeTempDir();
      await writeImportedNetwork(tmp, imported, "resenc@2.0.0", "nnssl_resenc_checkpoint.pth");
      const weights = await readVoxsslWeights(tmp, () => {
        throw new Error("a ResEnc export needs no network");
      });
      const [file] = await exportWeights(`${tmp}/checkpoint_final.pth`, "nnssl", {
        tensors: weights.tensors,
        adaptationPlan: weights.meta.adaptationPlan,
        plugins: weights.meta.plugins,
        architecture: weights.architecture,
        epoch: weights.epoch,
        nnsslPlan: weights.meta.importedFrom?.nnsslAdaptationPlan,
      });
      assertEquals(await Deno.readFile(file), await Deno.readFile(path("voxssl_export_resenc.pth")));
      assert(
        (await Deno.readTextFile(`${tmp}/adaptation_plan.json`)).includes(
          '"key_to_encoder": "encoder.stages"',
        ),
      );
      await Deno.remove(tmp, { recursive: true });
    } finally {
      imported.network.dispose();
    }
  },
);

gpuTest("interop: module._orig_mod. prefixes are stripped; aliases that disagree are an error", async () => {
  const config = resenc.config.parse(SMALL);
  const imported = await importTorchCheckpoint({
    path: path("resenc_state_dict_prefixed.pth"),
    architecture: resenc,
    config,
  });
  try {
    await assertNetworkHolds(imported.network, EXPECTED.resenc_state_dict.tensors);
    const ckpt = readTorchCheckpoint(openPth(Deno.readFileSync(path("resenc_state_dict.pth")), "sd.pth"));
    const alias = ckpt.weights.get("decoder.encoder.stem.convs.0.all_modules.0.weight")!;
    const changed = new Float32Array(alias.data as Float32Array);
    changed[3] += 1;
    ckpt.weights.set("decoder.encoder.stem.convs.0.all_modules.0.weight", { ...alias, data: changed });
    assertThrows(
      () => mapTorchStateDict(ckpt, imported.network, "sd.pth"),
      PthError,
      `sd.pth: "decoder.encoder.stem.convs.0.all_modules.0.weight" is an alias of "encoder.stem.convs.0.conv.weight"`,
    );
    // an alias alone stands in for its original
    ckpt.weights.set("decoder.encoder.stem.convs.0.all_modules.0.weight", alias);
    const original = ckpt.weights.get("encoder.stem.convs.0.conv.weight")!;
    ckpt.weights.delete("encoder.stem.convs.0.conv.weight");
    const mapped = mapTorchStateDict(ckpt, imported.network, "sd.pth");
    assertEquals(mapped.tensors["encoder.stem.convs.0.conv.weight"].data, original.data);
    // an integer tensor where a weight belongs: the dtype, the file and the key
    ckpt.weights.set("encoder.stem.convs.0.norm.bias", {
      dtype: "int64",
      shape: [4],
      data: new BigInt64Array(4),
    });
    assertThrows(
      () => mapTorchStateDict(ckpt, imported.network, "sd.pth"),
      PthError,
      `sd.pth: "encoder.stem.convs.0.norm.bias": dtype int64 where floating-point weights were expected`,
    );
  } finally {
    imported.network.dispose();
  }
});

gpuTest("interop: a shape mismatch against the architecture names the file and the key", async () => {
  const config = resenc.config.parse({ ...SMALL, features: [4, 16] });
  await assertRejects(
    () => importTorchCheckpoint({ path: path("resenc_state_dict.pth"), architecture: resenc, config }),
    PthError,
    `resenc_state_dict.pth: "encoder.stages.1.blocks.0.conv1.conv.weight" has shape [8,4,3,3,3], the network's`,
  );
});

gpuTest(
  "interop: an EvaMAE Primus checkpoint imports with its position embedding in Primus's token order",
  async () => {
    const want = EXPECTED.nnssl_primus_evamae;
    const config = primus.config.parse(want.archConfig);
    for (const order of ["auto", "primus"] as const) {
      const imported = await importTorchCheckpoint({
        path: path("nnssl_primus_evamae.pth"),
        architecture: primus,
        config,
        outChannels: want.outChannels,
        positionEmbeddingOrder: order,
      });
      try {
        assertEquals(imported.patch, want.patch, "patch from the plan");
        assertEquals(imported.mapping.skipped, ["decoder.norm.weight"], "EvaMAE's decoder is the method's");
        assertEquals(imported.mapping.positionEmbeddingOrder, order === "auto" ? "evamae" : "primus");
        const weights = await stateDict(imported.network);
        const pe = await sha256(weights["eva.pos_embed"].data);
        if (order === "auto") {
          await assertNetworkHolds(imported.network, want.tensors); // pos_embed in Primus's order included
          // export's "evamae" order gives back the rows as EvaMAE stored them
          const back = permuteTokens(weights["eva.pos_embed"], tokenGrid(imported.network), "primus→evamae");
          assertEquals(await sha256(back.data), want.pos_embed_file_sha256);
          assertEquals(tokenGrid(imported.network), [2, 3, 4]);
        } else {
          assertEquals(pe, want.pos_embed_file_sha256, "read as stored");
        }
      } finally {
        imported.network.dispose();
      }
    }
  },
);

gpuTest(
  "interop: pretraining's --init loads a .pth into a freshly built network (prefixes stripped)",
  async () => {
    const network = scope(() =>
      resenc.create({
        config: resenc.config.parse(SMALL),
        inChannels: 1,
        outChannels: 1,
        patchSize: [16, 16, 16],
        encoderOnly: false,
        rng: new Generator(9),
      })
    );
    try {
      const { skipped } = await loadInitialWeights(network, path("resenc_state_dict_prefixed.pth"));
      assertEquals(skipped, []);
      await assertNetworkHolds(network, EXPECTED.resenc_state_dict.tensors);
    } finally {
      network.dispose();
    }
  },
);
