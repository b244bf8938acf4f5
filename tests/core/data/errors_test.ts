import { asDataFileError, DataFileError } from "../../../core/data/errors.ts";
import { assertEquals } from "../../assert.ts";

Deno.test("DataFileError carries the path and the problem; asDataFileError() names OS errors", () => {
  const e = new DataFileError("/a/b.nii", "wrong magic");
  assertEquals([e.message, e.path, e.problem, e.name], [
    "/a/b.nii: wrong magic",
    "/a/b.nii",
    "wrong magic",
    "DataFileError",
  ]);
  assertEquals(asDataFileError("/x", e), e);
  assertEquals(asDataFileError("/x", new Deno.errors.NotFound("no")).problem, "file not found");
  assertEquals(
    asDataFileError("/x", new Deno.errors.PermissionDenied("no")).problem,
    "permission denied (unreadable)",
  );
  assertEquals(
    asDataFileError("/x", new Deno.errors.IsADirectory("no")).problem,
    "is a directory, not a file",
  );
  assertEquals(asDataFileError("/x", new Error("disk on fire")).message, "/x: disk on fire");
  assertEquals(asDataFileError("/x", "plain").problem, "plain");
});
