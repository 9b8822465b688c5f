/**
 * Reverse-mode autodiff over traced ONNX graphs: write a forward pass once with the op vocabulary,
 * trace it with static shapes, and derive its backward from one gradient rule per op.
 */

/** Number of labels of a classification head (from `@xlt/core`, where the config lives). */
export { labelCount } from '@xlt/core';
export { backward, backwardWithRows, type RowGradient } from './backward.js';
export { allStatic, type Dim, dimDiv, dimMul, dimProduct, isStatic, SymDim, symbol } from './dims.js';
export { type EncoderInputs, type EncoderOptions, XmodEncoder } from './encoder.js';
export { DIFFERENTIABLE_OPS, GRADIENT_RULES, type GradientRule } from './gradients.js';
export {
  type HeadLabels,
  headLogits,
  headLoss,
  klDivergence,
  type ObjectiveOptions,
} from './heads.js';
export { buildInferenceGraph, type InferenceGraphOptions } from './inference-graph.js';
export { attention, crossEntropy, embedding, gelu, linear } from './layers.js';
export {
  add,
  broadcastShapes,
  cast,
  concat,
  div,
  erf,
  exp,
  expand,
  gather,
  gemmT,
  layerNorm,
  log,
  logSoftmax,
  matmul,
  mul,
  neg,
  type Operand,
  pow,
  raw,
  reduceMean,
  reduceSum,
  relu,
  reshape,
  sigmoid,
  slice,
  softmax,
  sqrt,
  squeeze,
  sub,
  sumTo,
  tanh,
  transpose,
  unsqueeze,
  where,
  zeros,
} from './ops.js';
export {
  type AdamWUpdate,
  appendAdamW,
  clipByGlobalNorm,
  globalNorm,
  type ParamGrad,
  type TracedAdamWSettings,
} from './optimizer.js';
export { Parameters } from './parameters.js';
export { type DType, type Emit, RECOMPUTE, type TracedNode, Tracer, Value } from './tracer.js';
export {
  buildApplyGraph,
  buildChunkUpdateGraph,
  buildTracedTrainGraph,
  buildTrainGraph,
  CHUNK_UPDATE_NORM,
  encoderInputs,
  type TracedTrainGraphOptions,
} from './train-graph.js';
