// Gradients of every op, needed for LoRA/router training, are registered by @xlt/xmod (which
// imports the full @tensorflow/tfjs bundle once): tfjs-core's Node build registers none.
import '@xlt/xmod';

export { formatParameterTable, type ParameterRow, parameterTable } from './accounting.js';
export {
  type ApplyLoraOptions,
  applyLora,
  findTargets,
  isLoraParameter,
  kaimingUniformA,
  LoraEmbedding,
  LoraLinear,
  type LoraOptions,
  LoraProjection,
  loraLayers,
  loraScaling,
  type Mergeable,
  markOnlyLoraTrainable,
  mergeLora,
  type TargetModules,
  targetMatches,
  unmergeLora,
} from './lora.js';
export {
  type ApplyMixtureOptions,
  addLanguageExpert,
  applyLoraMixture,
  LoraExpert,
  LoraMixtureLinear,
  loadBalancingLoss,
  loadLanguageExpert,
  type MixtureOptions,
  mixtureLayers,
  type RoutingContext,
  type RoutingMode,
  routedForward,
  saveLanguageExpert,
  setRouterTrainable,
  setRoutingContext,
} from './mixture.js';
export {
  loadLoraTensors,
  loadPeftAdapter,
  loraStateDict,
  type PeftLoraConfig,
  readPeftConfig,
  savePeftAdapter,
} from './peft.js';
