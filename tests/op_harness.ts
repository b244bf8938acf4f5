/** The op-test harness lives in the testing entry point (core/testing/op_harness.ts). */
export * from "../core/testing/op_harness.ts";
