import { parseCsv, parseCsvRecords } from "../../../core/data/csv.ts";
import { assertEquals } from "../../assert.ts";

Deno.test("parseCsv() handles quotes, doubled quotes, embedded commas and newlines, CRLF and a BOM", () => {
  const text = '\ufeffa,b,c\r\n1,"x, y","say ""hi"""\r\n2,"line\nbreak",\n';
  assertEquals(parseCsv(text), [["a", "b", "c"], ["1", "x, y", 'say "hi"'], ["2", "line\nbreak", ""]]);
  assertEquals(parseCsv("a,b\n1,2"), [["a", "b"], ["1", "2"]]);
});

Deno.test("parseCsvRecords() keys rows by header and skips blank lines", () => {
  assertEquals(parseCsvRecords("x,y\n1\n\n3,4\n"), [{ x: "1", y: "" }, { x: "3", y: "4" }]);
});
