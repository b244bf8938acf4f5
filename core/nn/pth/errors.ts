/** The error every problem with a PyTorch checkpoint file raises: the message names the file and the key. */

/** A `.pth` file that cannot be read or written as asked (corrupt, truncated, unsupported, unsafe). */
export class PthError extends Error {
  /** The CLI prints errors of this name without a stack trace. */
  override name = "PthError";
}
