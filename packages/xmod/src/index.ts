export { Module, ModuleList, ModuleDict } from './nn/module.js';
export { Linear, Embedding, LayerNorm, dropout, gelu, normalInit, type LinearLike } from './nn/layers.js';
