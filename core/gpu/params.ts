/**
 * Uniform parameters of one dispatch, written field by field in WGSL struct order. Deno's WebGPU has no
 * push constants, so every dispatch's scalars go through the uniform ring (see {@link Gpu.dispatch}).
 *
 * Scalars are 4 bytes; `align(16)` pads before a `vec4`/array member as WGSL's uniform layout requires.
 */
export class Params {
  readonly #words: number[] = [];
  readonly #kinds: ("u" | "i" | "f")[] = [];

  /** Appends a u32. */
  u32(value: number): this {
    if (!Number.isInteger(value) || value < 0 || value > 0xffffffff) {
      throw new RangeError(`uniform u32 out of range: ${value}`);
    }
    return this.#push(value, "u");
  }

  /** Appends an i32. */
  i32(value: number): this {
    if (!Number.isInteger(value) || value < -0x80000000 || value > 0x7fffffff) {
      throw new RangeError(`uniform i32 out of range: ${value}`);
    }
    return this.#push(value, "i");
  }

  /** Appends an f32. */
  f32(value: number): this {
    return this.#push(value, "f");
  }

  /** Appends u32 values, padded with zeros to `padTo` entries (for fixed-size `array<vec4<u32>, n>`). */
  u32s(values: readonly number[], padTo = values.length): this {
    if (values.length > padTo) throw new RangeError(`${values.length} values do not fit ${padTo} slots`);
    for (let i = 0; i < padTo; i++) this.u32(values[i] ?? 0);
    return this;
  }

  /** Pads with zero words to a multiple of `bytes` (4, 8 or 16). */
  align(bytes: number): this {
    while ((this.#words.length * 4) % bytes !== 0) this.#push(0, "u");
    return this;
  }

  /** Size in bytes. */
  get byteLength(): number {
    return this.#words.length * 4;
  }

  /** Writes the fields into `target` at `byteOffset`. */
  writeTo(target: DataView, byteOffset: number): void {
    this.#words.forEach((w, i) => {
      const at = byteOffset + 4 * i;
      const kind = this.#kinds[i];
      if (kind === "f") target.setFloat32(at, w, true);
      else if (kind === "i") target.setInt32(at, w, true);
      else target.setUint32(at, w, true);
    });
  }

  #push(value: number, kind: "u" | "i" | "f"): this {
    this.#words.push(value);
    this.#kinds.push(kind);
    return this;
  }
}
