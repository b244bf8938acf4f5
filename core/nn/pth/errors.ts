/** The error every problem with a PyTorch checkpoint file raises: the message names the file and the key. */

/** A `.pth` file that cannot be read or written as asked (corrupt, truncated, unsupported, unsafe). */
export class PthError extends Error {
  override name = "PthError";
}
