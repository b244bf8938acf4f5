/** The benchmark suites `deno task bench` runs, in order. A new suite is one file plus one line here. */
import { attentionSuite } from "./attention_bench.ts";
import { augmentPipelinesSuite, augmentSuite } from "./augment_bench.ts";
import { convSuite } from "./conv_bench.ts";
import { dataSuite } from "./data_bench.ts";
import { distSuite } from "./dist_bench.ts";
import { e2eSuite } from "./e2e_bench.ts";
import type { BenchSuite } from "./harness.ts";
import { matmulSuite } from "./matmul_bench.ts";
import { methodSuite } from "./method_bench.ts";
import { normSuite } from "./norm_bench.ts";

/** Every suite. */
export const suites: BenchSuite[] = [
  matmulSuite,
  convSuite,
  normSuite,
  attentionSuite,
  dataSuite,
  augmentSuite,
  augmentPipelinesSuite,
  methodSuite,
  distSuite,
  e2eSuite,
];
