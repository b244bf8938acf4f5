/**
 * What produced a cache or a dataset artefact: voxssl's version (from deno.json) and the cache format.
 * Recorded in every properties file so a cache can be traced to the code and parameters that made it.
 *
 * @module
 */
import denoJson from "../../deno.json" with { type: "json" };

/** Version of the on-disk cache format (`.vxc` + properties JSON); bump on incompatible changes. */
export const CACHE_FORMAT = 1;

/** The producer stamp written into caches. */
export const PRODUCER: { name: string; version: string; cacheFormat: number } = {
  name: "voxssl",
  version: denoJson.version,
  cacheFormat: CACHE_FORMAT,
};
