export { dropout, Embedding, gelu, LayerNorm, Linear, type LinearLike, normalInit } from './nn/layers.js';
export { Module, ModuleDict, ModuleList } from './nn/module.js';
