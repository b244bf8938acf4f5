/**
 * backward()'s `onLeafGradient`: each leaf is reported once, after its last use, with its gradient
 * complete at that point of the command stream (the gradient averaging queues its readback there).
 */
import { add, backward, clone, keep, mul, sum, type Tensor, tensor } from "../../../mod.ts";
import { assertEquals } from "../../assert.ts";
import { assertClose, gpuTest, seededRandom } from "../../helpers.ts";

gpuTest(
  "onLeafGradient reports each leaf once, after its last use, with its gradient complete",
  async (gpu) => {
    const next = seededRandom(11);
    const values = () => Array.from({ length: 5 }, () => next() * 2 - 1);
    const [xv, w1v, w2v, sv] = [values(), values(), values(), values()];
    const leaf = (v: number[]) => tensor(v, [5], { gpu, requiresGrad: true });
    const x = tensor(xv, [5], { gpu });
    const w1 = leaf(w1v), w2 = leaf(w2v), s = leaf(sv);
    const names = new Map<Tensor, string>([[w1, "w1"], [w2, "w2"], [s, "s"]]);
    // a = w1·x feeds two branches; s is used twice (w1 last: everything downstream of it comes first)
    const a = mul(w1, x);
    const loss = add(add(sum(mul(w2, a)), sum(mul(s, a))), sum(s));
    const reported: string[] = [];
    const snapshots = new Map<string, Tensor>();
    backward(loss, undefined, {
      onLeafGradient: (t) => {
        const name = names.get(t)!;
        reported.push(name);
        snapshots.set(name, keep(clone(t.grad!))); // recorded here: what the gradient holds at this point
      },
    });
    assertEquals(reported.length, 3);
    assertEquals(reported.at(-1), "w1");
    assertEquals(new Set(reported).size, 3);
    // float64 gradients: d/dw1 = x·(w2 + s), d/dw2 = w1·x, d/ds = w1·x + 1
    const expected: Record<string, number[]> = {
      w1: xv.map((xi, i) => xi * (w2v[i] + sv[i])),
      w2: w1v.map((w, i) => w * xv[i]),
      s: w1v.map((w, i) => w * xv[i] + 1),
    };
    for (const [name, t] of [["w1", w1], ["w2", w2], ["s", s]] as const) {
      const final = [...await t.grad!.toArray()];
      // each is one or two f32 products and an add of O(1) values: a few roundings, ≤ 4·2⁻²⁴ ≈ 2.4e-7
      assertClose(final, expected[name], { rtol: 1e-6, atol: 1e-6, label: `${name} gradient` });
      assertEquals([...await snapshots.get(name)!.toArray()], final, `${name} complete when reported`);
    }
    for (const t of [x, w1, w2, s, a, loss, ...snapshots.values()]) t.dispose();
  },
);
