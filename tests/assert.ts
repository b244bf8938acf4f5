/**
 * Assertions for tests (Deno std is not reachable here): thin wrappers over `node:assert/strict` with
 * the std-style signatures the tests use.
 */
import nodeAssert from "node:assert/strict";

/** Asserts that `condition` is truthy. */
export function assert(condition: unknown, message = "assertion failed"): asserts condition {
  if (!condition) throw new Error(message);
}

/** Deep, strict equality. */
export function assertEquals<T>(actual: T, expected: T, message?: string): void {
  nodeAssert.deepStrictEqual(actual, expected, message);
}

/** Strict inequality. */
export function assertNotEquals<T>(actual: T, expected: T, message?: string): void {
  nodeAssert.notDeepStrictEqual(actual, expected, message);
}

// deno-lint-ignore no-explicit-any
type ErrorClass = new (...args: any[]) => Error;

function checkError(error: unknown, ErrorType?: ErrorClass, includes?: string): Error {
  if (!(error instanceof Error)) throw new Error(`expected an Error, got ${String(error)}`);
  const { name, message } = error;
  if (ErrorType && !(error instanceof ErrorType)) {
    throw new Error(`expected ${ErrorType.name}, got ${name}: ${message}`);
  }
  if (includes !== undefined && !error.message.includes(includes)) {
    throw new Error(`expected the message to include "${includes}", got: ${error.message}`);
  }
  return error;
}

/** Asserts that `fn` throws (optionally an instance of `ErrorType` whose message includes `includes`). */
export function assertThrows(fn: () => unknown, ErrorType?: ErrorClass, includes?: string): Error {
  try {
    fn();
  } catch (error) {
    return checkError(error, ErrorType, includes);
  }
  throw new Error("expected the function to throw");
}

/** Asserts that the promise returned by `fn` rejects (like {@link assertThrows}). */
export async function assertRejects(
  fn: () => Promise<unknown>,
  ErrorType?: ErrorClass,
  includes?: string,
): Promise<Error> {
  try {
    await fn();
  } catch (error) {
    return checkError(error, ErrorType, includes);
  }
  throw new Error("expected the promise to reject");
}
