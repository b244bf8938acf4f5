/** `file://` URL of an absolute path (percent-encoding what URLs need). */
export function toFileUrl(path: string): string {
  return new URL(`file://${path.split("/").map(encodeURIComponent).join("/")}`).href;
}
