/**
 * voxssl (`@voxssl/core`): self-supervised pretraining of 3D medical image models on WebGPU.
 *
 * This is the public API for plugin authors and scripts; built-in plugins import it by its package name
 * exactly as third-party plugins do. It holds the plugin contracts, the tensor ops with autograd, the
 * nn layers, the data-side tools of a method's `sample` hook, and the Trainer's entry points. Float64
 * reference implementations and the op-test harness are in `@voxssl/core/testing`.
 *
 * @example Compute on the GPU with autograd
 * ```ts
 * import { backward, initGpu, matmul, scope, sum, tensor } from "./mod.ts";
 *
 * await initGpu();
 * const w = tensor([1, 2, 3, 4], [2, 2], { requiresGrad: true });
 * const loss = scope(() => {
 *   const l = sum(matmul(w, w));
 *   backward(l);
 *   return l;
 * });
 * console.log(await loss.item(), await w.grad!.toArray()); // 54, [7, 11, 9, 13]
 * ```
 *
 * @example A method's data hook: two crops of the volume, each augmented on its own
 * ```ts
 * import { createRng, sampleArray, type SampleContext } from "./mod.ts";
 *
 * export function twoViews(context: SampleContext) {
 *   const size: [number, number, number] = [16, 16, 16];
 *   const views = new Float32Array(2 * 16 ** 3);
 *   for (let v = 0; v < 2; v++) {
 *     const rng = context.rng.fork("view", v);
 *     const crop = context.volume.crop(context.volume.randomStart(size, rng), size);
 *     context.augment(crop, { mirror: { p: 0.5 }, noise: { p: 0.1 } }, rng);
 *     views.set(crop.image, v * 16 ** 3);
 *   }
 *   return { views: sampleArray(views, [2, 1, ...size]) };
 * }
 * console.log(typeof twoViews, createRng(1).int(10) < 10); // "function" true
 * ```
 *
 * @module
 */

/** The version of voxssl's core API; plugins declare the range of core versions they work with. */
export const VERSION = "0.2.0";

import { z as zod } from "zod";
import type { ZodInput, ZodOutput, ZodSchema } from "./core/plugin/zod_types.ts";
/**
 * zod, re-exported so that plugins declare their config schemas with the same instance the core checks
 * (a schema from another zod copy is refused by the manifest check).
 */
export const z: typeof zod = zod;
/** zod's type helpers, under the same name: `z.output<typeof Schema>` is a parsed config's type. */
export declare namespace z {
  /** The type a schema parses to. */
  export type output<T extends ZodSchema> = ZodOutput<T>;
  /** The type a schema accepts. */
  export type input<T extends ZodSchema> = ZodInput<T>;
  /** Same as `output`. */
  export type infer<T extends ZodSchema> = ZodOutput<T>;
  /** A zod schema that parses to `O` from `I`. */
  export type ZodType<O = unknown, I = unknown> = ZodSchema<O, I>;
}

// --- the device ---------------------------------------------------------------------------------------
export {
  BindingTooLargeError,
  createGpu,
  getGpu,
  type Gpu,
  GpuDeviceLostError,
  type GpuFeature,
  type GpuOptions,
  GpuUnavailableError,
  GpuValidationError,
  initGpu,
} from "./core/gpu/mod.ts";
export type { GpuCounters, GpuLimits } from "./core/gpu/mod.ts";

// --- tensors, ops and autograd --------------------------------------------------------------------------
export {
  // elementwise
  abs,
  add,
  addInPlace,
  addScalar,
  // linear algebra, convolution, attention
  applyRope,
  // reductions
  argmax,
  argmin,
  type AttentionOptions,
  // autograd and precision
  autocast,
  type AutocastOptions,
  // norms, pooling, resampling
  avgPool3d,
  backward,
  type BackwardOptions,
  // shape
  cast,
  clamp,
  // creation
  clone,
  concat,
  conv3d,
  convTranspose3d,
  // losses and similarities
  cosineSimilarity,
  crossEntropy,
  div,
  // activations and regularisation
  dropout,
  dropPath,
  // tensors and memory
  type DType,
  empty,
  eq,
  exp,
  expand,
  fillInPlace,
  full,
  gatherRows,
  ge,
  gelu,
  // randomness
  Generator,
  type GeneratorState,
  globalAvgPool,
  groupNorm,
  groupNormAct,
  gt,
  instanceNorm,
  instanceNormAct,
  interpolate,
  isAutocastEnabled,
  isGradEnabled,
  keep,
  l1Loss,
  l2Normalize,
  layerNorm,
  layerNormChannelsFirst,
  le,
  leakyRelu,
  lerp,
  log,
  logSoftmax,
  logSumExp,
  lt,
  maskedInstanceNorm,
  type MaskedNormOptions,
  matmul,
  max,
  maximum,
  maxPool3d,
  mean,
  min,
  minimum,
  mseLoss,
  mul,
  mulScalar,
  ne,
  neg,
  noGrad,
  type NormActOptions,
  ones,
  onesLike,
  pad,
  permute,
  pow,
  powScalar,
  relu,
  reshape,
  ropeSinCos,
  ropeSinCosAt,
  rsqrt,
  scaledDotProductAttention,
  scatterRows,
  scope,
  type Shape,
  sigmoid,
  sign,
  silu,
  slice,
  softDiceLoss,
  softmax,
  sqrt,
  sub,
  sum,
  swiglu,
  tanh,
  Tensor,
  tensor,
  type TensorOwner,
  transpose,
  where,
  zeros,
  zerosLike,
} from "./core/tensor/mod.ts";
export { OWNED_TENSORS } from "./core/tensor/mod.ts";
export { checkpoint, type CheckpointOptions } from "./core/tensor/mod.ts";
export type {
  Arena,
  ArenaLayout,
  Conv3dOptions,
  ConvTranspose3dOptions,
  CreateOptions,
  CrossEntropyOptions,
  HostArray,
  InterpolateOptions,
  MaskedLossOptions,
  MatmulOptions,
  RopeTableOptions,
  Size3,
  SoftDiceOptions,
} from "./core/tensor/mod.ts";

// --- layers and weights ---------------------------------------------------------------------------------
export {
  Conv3d,
  type ConvInit,
  type ConvOptions,
  ConvTranspose3d,
  decodeSafetensors,
  encodeSafetensors,
  fanIn,
  type HostTensor,
  InstanceNorm3d,
  kaimingNormal,
  LayerNorm,
  LayerNormChannelsFirst,
  Linear,
  type LinearOptions,
  type LoadReport,
  loadSafetensors,
  loadStateDict,
  Module,
  normal,
  saveSafetensors,
  stateDict,
  truncNormal,
} from "./core/nn/mod.ts";
export type { ConvLayer, ParameterGroup, SafetensorsDtype } from "./core/nn/mod.ts";
export { type ActivationCheckpointing, checkpointedSegments } from "./core/nn/mod.ts";

// --- optimisation ---------------------------------------------------------------------------------------
export { learningRate, Optimizer, type OptimizerConfig, type Schedule } from "./core/optim/mod.ts";
export type { LossScaleConfig, OptimizerOptions, OptimizerState, StepStatus } from "./core/optim/mod.ts";

// --- plugin contracts -----------------------------------------------------------------------------------
export {
  type AdaptationPlan,
  type ArchitectureFamily,
  type ArchitecturePlugin,
  type ArchitectureRequest,
  type AugmentationPresetName,
  definePlugin,
  type EpochEvent,
  type ForwardOptions,
  type GpuBatch,
  type LayerHooks,
  type LayerSite,
  loadPlugin,
  loadReferenceStateDict,
  type LossOutput,
  type MaskTokenInput,
  type MethodInstance,
  type MethodRequest,
  type Network,
  type NetworkNeeds,
  type NetworkShape,
  type NormCall,
  noWeightDecayGroups,
  type ParameterGroupChoice,
  type Plugin,
  type PluginBase,
  PluginError,
  type Reconstruction,
  referenceStateDict,
  type SslMethodPlugin,
  type StepContext,
  type StepEvent,
  type TokenEncodeOptions,
  type TokenHooks,
  type TrainingDefaults,
  validatePlugin,
  type Vec3,
} from "./core/plugin/mod.ts";
export type { ConfigFunction } from "./core/plugin/mod.ts";

// --- a method's data side (runs in the loader's workers) ------------------------------------------------
export {
  addGaussianNoise,
  adjustContrast,
  adjustGamma,
  type Augmentation,
  type AugmentationInput,
  createRng,
  type Crop,
  type CropOptions,
  DataFileError,
  gaussianBlur,
  type MaskName,
  mirrorInPlace,
  type PatchOptions,
  resolveAugmentation,
  type Rng,
  rot90,
  type SampleArray,
  sampleArray,
  type SampleContext,
  type SampleData,
  type SampleDType,
  type SampleHook,
  type SampleOutput,
  type SampleVolume,
  scaleBrightness,
  simulateLowResolution,
} from "./core/data/mod.ts";
export type {
  AugmentationPreset,
  AugmentPlan,
  AugmentTarget,
  RawCrop,
  RawSample,
  RawView,
  RngKey,
  Shape3,
  SpatialParams,
} from "./core/data/mod.ts";

// --- data for scripts -----------------------------------------------------------------------------------
export {
  buildFolderIndex,
  createPatchLoader,
  generatePhantom,
  mergePreprocessSummaries,
  type PatchBatch,
  type PatchLoader,
  type PatchLoaderOptions,
  preprocessDataset,
  readNifti,
  writeNifti,
  writeSyntheticDataset,
} from "./core/data/mod.ts";
export type {
  Affine,
  CacheEntry,
  CacheManifest,
  CacheSource,
  DataSplit,
  FolderIndexOptions,
  FramePolicy,
  ImageFilter,
  ImageRecord,
  IndexBuildOptions,
  IndexBuildResult,
  IndexCheck,
  IndexDataset,
  IndexImageEntry,
  IndexInfo,
  IndexMasks,
  IndexSession,
  IndexSource,
  IndexSubject,
  LoaderStats,
  NiftiDatatype,
  NiftiHeader,
  NiftiLimits,
  NiftiVolume,
  NiftiWriteInput,
  PatchSourceInput,
  Phantom,
  PhantomModality,
  PhantomOptions,
  PreprocessDatasetOptions,
  PreprocessParameters,
  PreprocessSummary,
  PretrainIndex,
  ReadNiftiOptions,
  ReadTimings,
  SampleTimings,
  SkippedFile,
  SpacingMode,
  SyntheticDataset,
  SyntheticDatasetOptions,
  SyntheticFile,
  SyntheticSource,
  Volume,
  VolumeCacheOptions,
  VoxelArray,
  VoxsslImageInfo,
  WriteNiftiOptions,
} from "./core/data/mod.ts";

// --- training runs --------------------------------------------------------------------------------------
export {
  type BatchSource,
  type Checkpoint,
  type CheckpointMeta,
  closeRun,
  type DistributedRole,
  finishRun,
  type HostBatch,
  loadCheckpoint,
  logInterval,
  type MetricsRecord,
  openBatchSources,
  openRun,
  readMetrics,
  type ResolvedRunConfig,
  resolveRunConfig,
  type Run,
  type RunConfig,
  type RunConfigInput,
  RunConfigSchema,
  runPretraining,
  type RunSummary,
  saveRunCheckpoint,
  type TrainerOptions,
  trainStep,
  validate,
} from "./core/train/mod.ts";
export { CHECKPOINT_FORMAT } from "./core/train/mod.ts";
export type {
  AccumulatorState,
  CheckpointKind,
  DataWaitClock,
  RunObserver,
  TfEventsWriter,
} from "./core/train/mod.ts";
export type {
  FrozenModules,
  GpuAugmentOptions,
  HealthSettings,
  MetricAccumulator,
  NamedGroup,
  OpenSourcesOptions,
  RawBatch,
  RawViewBatch,
  RunModel,
  RunSources,
} from "./core/train/mod.ts";

// --- profiling: GPU time, kernels, bytes and memory per op family (docs/profiling.md) -------------------
export {
  formatProfileTable,
  type ProfileReport,
  profileSvg,
  type RunProfileOptions,
  StepProfiler,
  writeProfile,
} from "./core/train/mod.ts";
export type { FamilyRow } from "./core/train/mod.ts";
export { currentOpFamily, OP_FAMILIES, type OpFamily, opFamily } from "./core/gpu/mod.ts";
export type { FamilyFigures, GpuTimeSource, MemoryOwner, MemoryTimeline } from "./core/gpu/mod.ts";

// --- downstream: nnU-Net datasets, inference, metrics (docs/downstream.md) ------------------------------
export {
  argmaxClasses,
  classMetrics,
  confusion,
  DatasetProblemsError,
  DOWNSTREAM_FORMAT,
  DOWNSTREAM_MANIFEST,
  downstreamParameters,
  EMPTY_CLASS_RULE,
  evaluateFolders,
  evaluationCsv,
  evaluationJson,
  gaussianImportance,
  hausdorff95,
  listCaseFolder,
  medianSpacingOf,
  nanMean,
  networkFromCheckpoint,
  networkPredictor,
  nnunetTargetSpacing,
  openDownstreamCase,
  predictCase,
  preprocessCase,
  preprocessNnunetDataset,
  probabilitiesToOriginal,
  readDownstreamManifest,
  readNnunetDataset,
  resampleLabels,
  slidingWindowPredict,
  slidingWindowSteps,
  softmaxClasses,
  squaredDistanceTransform,
  undoReorientation,
  writeEvaluation,
  writePrediction,
} from "./core/eval/mod.ts";
export type {
  CaseEvaluation,
  CaseGeometry,
  CasePrediction,
  CasePreprocessOptions,
  ClassMetrics,
  ClassMetricsOptions,
  ClassSummary,
  DownstreamCase,
  DownstreamCaseEntry,
  DownstreamCaseProperties,
  DownstreamManifest,
  DownstreamParameters,
  DownstreamPreprocessOptions,
  DownstreamPreprocessSummary,
  EvaluateOptions,
  EvaluationSummary,
  GridGeometry,
  InferenceShape,
  NnunetCase,
  NnunetDataset,
  PatchPredictor,
  PredictCaseOptions,
  PreprocessedCase,
  SlidingWindowOptions,
} from "./core/eval/mod.ts";
// --- multi-process training (MPI) -----------------------------------------------------------------------
export {
  agreeOnStop,
  allGatherJson,
  allGatherRows,
  averageOverRanks,
  broadcastText,
  dataParallel,
  GradientSync,
  initDistributed,
  launchInfo,
  Mpi,
  MPI_LIBRARY_CANDIDATES,
  MPICH,
  MpiError,
  MpiRequest,
  openMpi,
  shareOfBatch,
  SINGLE_PROCESS,
  STOP_REASONS,
} from "./core/dist/mod.ts";
export type {
  BatchShare,
  DataParallel,
  Distributed,
  GradientSyncOptions,
  GradientSyncTimings,
  InitDistributedOptions,
  LaunchInfo,
  MpiBuffer,
  MpiOp,
} from "./core/dist/mod.ts";
// --- weight interop: PyTorch checkpoints in and out (docs/interop.md) ------------------------------------
export {
  type ArchitectureChoice,
  architectureFromNnsslPlan,
  type ExportFormat,
  type ExportRequest,
  exportWeights,
  type ImportedNetwork,
  importTorchCheckpoint,
  loadInitialWeights,
  type NetworkFileMeta,
  nnsslAdaptationPlan,
  nnsslArchitecturePlans,
  readVoxsslWeights,
  type TorchImportRequest,
  writeImportedNetwork,
} from "./core/train/mod.ts";
export {
  evaMaeTokenOrder,
  mapTorchStateDict,
  permuteTokens,
  tokenGrid,
  type TokenOrder,
  type TorchImport,
  type TorchImportOptions,
} from "./core/plugin/mod.ts";
export {
  encodePth,
  type Json,
  openPth,
  type PickleValue,
  PthError,
  type PthFile,
  PyOrderedDict,
  PyTuple,
  type PyValue,
  readPth,
  readTorchCheckpoint,
  type StorageRef,
  TensorRef,
  toHostTensor,
  type TorchCheckpoint,
  type TorchDtype,
  type TorchTensor,
  type ZipWriteOptions,
} from "./core/nn/mod.ts";

// --- segmentation fine-tuning (docs/finetune.md) -----------------------------------------------------------
export {
  adaptPretrainedWeights,
  cutSegmentationPatch,
  diceCeLoss,
  FinetuneConfigError,
  finetuneRates,
  FinetuneScheduleSchema,
  finetuneSegmentation,
  forcedForeground,
  labelFraction,
  loadDownstreamDataset,
  loadPretrainedEncoder,
  readFinetunedCheckpoint,
  readPretrainedWeights,
  readSplitFile,
  repeatInputChannels,
  resizePositionTable,
  scoreCases,
  seededSplit,
  segmentationBatches,
  SegmentationConfigSchema,
  segmentationMethod,
} from "./core/eval/mod.ts";
export type {
  AdaptReport,
  CaseSplit,
  DiceCeOptions,
  DiceCeTerms,
  FinetunedModel,
  FinetuneOptions,
  FinetuneResult,
  FinetuneSchedule,
  PretrainedWeights,
  SegmentationCase,
  SegmentationConfig,
  SegmentationDataset,
  SegmentationPatchSpec,
  StepRates,
  TestScore,
} from "./core/eval/mod.ts";

// --- classification fine-tuning (docs/finetune.md) ---------------------------------------------------------
export {
  accuracy,
  auroc,
  balancedAccuracy,
  binaryAuroc,
  centreCrop,
  classificationBatches,
  ClassificationConfigSchema,
  ClassificationHead,
  classificationLogits,
  classificationMethod,
  finetuneClassification,
  finetuneLoop,
  labelSmoothingCrossEntropy,
  loadClassificationData,
  parseClassificationCsv,
  poolFeatures,
  predictionsCsv,
  readClassificationCsv,
  scoreClassifier,
  smoothedTargets,
  softTargetCrossEntropy,
  stratifiedLabelFraction,
  stratifiedSplit,
  summarisePredictions,
  writeClassificationScores,
} from "./core/eval/mod.ts";
export type {
  AurocResult,
  ClassificationBatchSpec,
  ClassificationCase,
  ClassificationConfig,
  ClassificationCsvOptions,
  ClassificationData,
  ClassificationDataOptions,
  ClassificationDataset,
  ClassificationFinetuneOptions,
  ClassificationFinetuneResult,
  ClassificationScores,
  ClassificationVolume,
  ClassifiedCase,
  LabelledId,
} from "./core/eval/mod.ts";
